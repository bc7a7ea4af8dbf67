#!/usr/bin/env bash
# Stop what stack/up.sh and `make demo` started (only processes with our pid files), newest first.
# Harmless when nothing runs. `stack/down.sh [name ...]` stops only those (redis, kafka, flink,
# flink-jobmanager, flink-taskmanager, producer, server). Supervised services are stopped through
# their supervisor, which then does not restart them.
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
  if [ "$a" = flink ]; then names+=("${taskmanagers[@]}" flink-jobmanager); else names+=("$a"); fi
done
[ ${#names[@]} -gt 0 ] || names=(server producer "${taskmanagers[@]}" flink-jobmanager kafka redis)
# Cancel running jobs first: the UDF's close() then writes a last model backup to Redis.
if [[ " ${names[*]} " == *" flink-jobmanager "* ]] && pid_alive flink-jobmanager && [ -x "$PY" ]; then
  "$PY" -m online_ml.flink_rest cancel-all --timeout 20 || true
fi
for n in "${names[@]}"; do
  if pid_alive "$n"; then
    say "Stopping $n (pid $(cat "$RUN/$n.pid"))"
    stop_pid "$n" 30
  else
    rm -f "$RUN/$n.pid"
  fi
done
ok "stopped"
