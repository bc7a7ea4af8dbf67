#!/usr/bin/env bash
# What of ours is running. Supervised services show the supervisor's pid and the process's own.
source "$(dirname "$0")/lib.sh"
tms=(flink-taskmanager)
for f in "$RUN"/flink-taskmanager-*.pid; do
  [ -e "$f" ] || continue; n=$(basename "$f" .pid); [[ "$n" == *.child ]] || tms+=("$n")
done
for n in redis kafka flink-jobmanager "${tms[@]}" watcher producer server; do
  if pid_alive "$n"; then
    child=""
    if [ -f "$RUN/$n.child.pid" ]; then
      c=$(cut -d' ' -f1 "$RUN/$n.child.pid")
      if kill -0 "$c" 2>/dev/null; then child=", process $c"; else child=", restarting"; fi
    fi
    printf '  %-18s running (pid %s%s)\n' "$n" "$(pid_of "$n")" "$child"
  else printf '  %-18s stopped\n' "$n"; fi
done
