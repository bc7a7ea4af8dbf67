#!/usr/bin/env bash
# What of ours is running.
source "$(dirname "$0")/lib.sh"
for n in redis kafka flink-jobmanager flink-taskmanager producer server; do
  if pid_alive "$n"; then printf '  %-18s running (pid %s)\n' "$n" "$(cat "$RUN/$n.pid")"
  else printf '  %-18s stopped\n' "$n"; fi
done
