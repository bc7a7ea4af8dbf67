#!/usr/bin/env bash
# Stop what stack/up.sh and `make demo` started (only processes with our pid files), newest first.
# Harmless when nothing runs. `stack/down.sh [name ...]` stops only those.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(server producer flink-taskmanager flink-jobmanager kafka redis)
for n in "${names[@]}"; do
  if pid_alive "$n"; then
    say "Stopping $n (pid $(cat "$RUN/$n.pid"))"
    stop_pid "$n" 30
  else
    rm -f "$RUN/$n.pid"
  fi
done
ok "stopped"
