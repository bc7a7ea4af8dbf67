#!/usr/bin/env bash
# stack/supervise.sh NAME CHILD_PID_FILE CMD...: run CMD and start it again whenever it dies
# without being asked to, with exponential backoff. Started by stack/up.sh through start_bg, so
# this script's pid is the one in RUN/NAME.pid and it leads a process group that holds the child
# (and the child's children, e.g. the TaskManager's Python workers).
#
# Why: a standalone Flink cluster does not replace a dead TaskManager, and then a job with a
# restart strategy waits for slots forever. With the TaskManager supervised, `kill -9` of its JVM
# is followed by a new TaskManager, and Flink's restart strategy brings the job back on it.
#
# TERM/INT/HUP (what stack/down.sh sends to the whole group) stop the child and then the
# supervisor, without a restart. Each start and restart is logged to stdout, i.e. the service's
# log file. The child's pid is written to CHILD_PID_FILE (for tests that kill it, and for status).
set -uo pipefail
name="$1" child_pid_file="$2"; shift 2

MIN_BACKOFF=1 MAX_BACKOFF=30 STABLE_AFTER=60   # seconds; a child up for STABLE_AFTER resets it
child=0 stopping=0 restarts=0 backoff=$MIN_BACKOFF

note() { printf '%s [supervise] %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "$*"; }

on_stop() {
  stopping=1
  if [ "$child" -gt 0 ]; then kill -TERM "$child" 2>/dev/null || true; fi
}
trap on_stop TERM INT HUP

# kill_leftovers: KILL the processes of our group that outlived the child, e.g. the Python workers
# of a TaskManager JVM killed with -9 (they are re-parented to init and would go on running: a
# stale UDF that backs up a stale model after the job restarted elsewhere). Bash builtins only,
# so no helper process of ours is in the group while we look.
kill_leftovers() {
  local stat pid line n=0
  for stat in /proc/[0-9]*/stat; do
    pid=${stat#/proc/}; pid=${pid%/stat}
    [ "$pid" = "$$" ] && continue
    read -r line < "$stat" 2>/dev/null || continue
    line=${line##*) }                     # after "pid (comm) ": state ppid pgrp ...
    read -r _ _ pgrp _ <<< "$line"
    if [ "$pgrp" = "$$" ]; then kill -KILL "$pid" 2>/dev/null && n=$((n + 1)); fi
  done
  if [ "$n" -gt 0 ]; then note "killed $n leftover process(es) of the dead $name"; fi
}

# describe RC: exit status in words
describe() {  # bash reports death by signal n as 128+n; codes above 128+64 are real exit codes
  if [ "$1" -gt 128 ] && [ "$1" -le 192 ]; then echo "killed by signal $(kill -l $(($1 - 128)) 2>/dev/null || echo $(($1 - 128)))"
  else echo "exit code $1"; fi
}

while :; do
  started=$SECONDS
  "$@" </dev/null &
  child=$!
  echo "$child" > "$child_pid_file"
  note "$name started (pid $child)"
  # wait returns early (status > 128) when a trapped signal arrives: wait again until the child
  # is really gone, so we never leave it behind
  while :; do
    wait "$child"; rc=$?
    if [ "$rc" -gt 128 ] && kill -0 "$child" 2>/dev/null; then continue; fi
    break
  done
  if [ "$stopping" -eq 1 ]; then
    note "$name stopped ($(describe "$rc"))"
    rm -f "$child_pid_file"
    exit 0
  fi
  kill_leftovers
  ran=$((SECONDS - started))
  if [ "$ran" -ge "$STABLE_AFTER" ]; then backoff=$MIN_BACKOFF; fi
  restarts=$((restarts + 1))
  note "$name died unexpectedly ($(describe "$rc")) after ${ran} s; restart #$restarts in ${backoff} s"
  sleep "$backoff" &
  sleeper=$!
  wait "$sleeper" 2>/dev/null
  if [ "$stopping" -eq 1 ]; then
    kill "$sleeper" 2>/dev/null || true
    note "$name stopped while waiting to restart"
    rm -f "$child_pid_file"
    exit 0
  fi
  backoff=$((backoff * 2)); [ "$backoff" -le "$MAX_BACKOFF" ] || backoff=$MAX_BACKOFF
done
