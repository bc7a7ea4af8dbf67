#!/usr/bin/env bash
# Stop what stack/up.sh and `make demo` started (only processes with our pid files), newest first.
# Harmless when nothing runs. `stack/down.sh [name ...]` stops only those (redis, kafka, flink,
# flink-jobmanager, flink-taskmanager, watcher, producer, server, zookeeper). Supervised services are stopped
# through their supervisor, which then does not restart them. The job watcher is stopped first
# whenever the JobManager is stopped, and is told that the training job is stopped on purpose,
# so that it does not bring the job back when the cluster comes up again.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
names=()
# every TaskManager we started (flink-taskmanager, flink-taskmanager-2, ...), whatever TASKMANAGERS is now
taskmanagers=()
for f in "$RUN"/flink-taskmanager*.pid; do
  [ -e "$f" ] || continue
  n=$(basename "$f" .pid); [[ "$n" == *.child ]] || taskmanagers+=("$n")
done
[ ${#taskmanagers[@]} -gt 0 ] || taskmanagers=(flink-taskmanager)
for a in "$@"; do  # `flink` means all of its processes, TaskManagers first
  if [ "$a" = flink ]; then names+=(watcher "${taskmanagers[@]}" flink-jobmanager); else names+=("$a"); fi
done
[ ${#names[@]} -gt 0 ] || names=(server producer watcher "${taskmanagers[@]}" flink-jobmanager zookeeper kafka redis)
stopping_jobmanager=0
[[ " ${names[*]} " == *" flink-jobmanager "* ]] && stopping_jobmanager=1
# The watcher first, so that it does not resubmit the job that is about to be cancelled.
if [[ " ${names[*]} " == *" watcher "* ]] || [ "$stopping_jobmanager" = 1 ]; then
  if pid_alive watcher; then say "Stopping watcher (pid $(pid_of watcher))"; stop_pid watcher 30; fi
  rm -f "$RUN/watcher.pid"
fi
# Cancel running jobs first: the UDF's close() then writes a last model backup to Redis.
if [ "$stopping_jobmanager" = 1 ] && pid_alive flink-jobmanager && [ -x "$PY" ]; then
  "$PY" -m online_ml.flink_rest cancel-all --timeout 20 || true
  # the training job is stopped on purpose: a watcher started later must not bring it back
  "$PY" -m online_ml.watcher mark-stopped >/dev/null 2>&1 || true
fi
for n in "${names[@]}"; do
  [ "$n" != watcher ] || continue  # stopped above
  if pid_alive "$n"; then
    say "Stopping $n (pid $(pid_of "$n"))"
    stop_pid "$n" 30
  else
    rm -f "$RUN/$n.pid"
  fi
done
ok "stopped"
