#!/usr/bin/env bash
# Stop what stack/up.sh and `make demo` started, newest first. Harmless when nothing runs.
# `stack/down.sh [name ...]` stops only those (redis, kafka, flink, flink-jobmanager,
# flink-taskmanager, watcher, producer, server, zookeeper). Services run under supervisord
# (online_ml/supervision.py), which stops each with its process group and does not restart it;
# when nothing is left, supervisord stops too. If supervisord itself died, the services it left
# running are found by the mark in their environment (never by a pid file) and stopped.
# The job watcher is stopped first whenever the JobManager is stopped, and is told that the
# training job is stopped on purpose, so that it does not bring the job back when the cluster
# comes up again.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
[ -x "$PY" ] || { ok "nothing to stop (no venv)"; exit 0; }
names=()
# every TaskManager we run (flink-taskmanager, flink-taskmanager-2, ...), whatever TASKMANAGERS is now
mapfile -t taskmanagers < <(sv status | awk '$1 ~ /^flink-taskmanager/ {print $1}')
[ ${#taskmanagers[@]} -gt 0 ] || taskmanagers=(flink-taskmanager)
for a in "$@"; do  # `flink` means all of its processes, TaskManagers first
  if [ "$a" = flink ]; then names+=(watcher "${taskmanagers[@]}" flink-jobmanager); else names+=("$a"); fi
done
everything=0
if [ ${#names[@]} -eq 0 ]; then
  everything=1
  names=(server producer watcher "${taskmanagers[@]}" flink-jobmanager zookeeper kafka redis)
fi
stopping_jobmanager=0
[[ " ${names[*]} " == *" flink-jobmanager "* ]] && stopping_jobmanager=1
# The watcher first, so that it does not resubmit the job that is about to be cancelled.
if [[ " ${names[*]} " == *" watcher "* ]] || [ "$stopping_jobmanager" = 1 ]; then
  if pid_alive watcher; then say "Stopping watcher (pid $(pid_of watcher))"; fi
  stop_pid watcher
fi
# Cancel running jobs first: the UDF's close() then writes a last model backup to Redis.
if [ "$stopping_jobmanager" = 1 ] && pid_alive flink-jobmanager; then
  "$PY" -m online_ml.flink_rest cancel-all --timeout 20 || true
  # the training job is stopped on purpose: a watcher started later must not bring it back
  "$PY" -m online_ml.watcher mark-stopped >/dev/null 2>&1 || true
fi
for n in "${names[@]}"; do
  [ "$n" != watcher ] || continue  # stopped above
  if pid_alive "$n"; then say "Stopping $n (pid $(pid_of "$n" || echo -))"; fi
  stop_pid "$n"
done
# supervisord itself once it supervises nothing; or what a crashed one left behind
if [ "$everything" = 1 ]; then sv down --all
elif [ -z "$(sv status)" ]; then sv down; fi
ok "stopped"
