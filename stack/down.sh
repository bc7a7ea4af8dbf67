#!/usr/bin/env bash
# Stop what stack/up.sh and `make demo` started (only processes with our pid files), newest first.
# Harmless when nothing runs. `stack/down.sh [name ...]` stops only those (redis, kafka, flink,
# flink-jobmanager, flink-taskmanager, producer, server). Supervised services are stopped through
# their supervisor, which then does not restart them.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
names=()
for a in "$@"; do  # `flink` means both of its processes, TaskManager first
  if [ "$a" = flink ]; then names+=(flink-taskmanager flink-jobmanager); else names+=("$a"); fi
done
[ ${#names[@]} -gt 0 ] || names=(server producer flink-taskmanager flink-jobmanager kafka redis)
# Cancel running jobs first: the UDF's close() then writes a last model backup to Redis.
if [[ " ${names[*]} " == *" flink-jobmanager "* ]] && pid_alive flink-jobmanager && [ -x "$PY" ]; then
  "$PY" - "$FLINK_REST_URL" <<'PYCODE' || true
import json, sys, time, urllib.request
base = sys.argv[1]
def jobs():
    with urllib.request.urlopen(base + "/jobs/overview", timeout=3) as r:
        return [j for j in json.load(r)["jobs"] if j["state"] not in ("FINISHED", "CANCELED", "FAILED")]
try:
    running = jobs()
    for j in running:
        print(f"==> Cancelling Flink job '{j['name']}' ({j['jid']})")
        urllib.request.urlopen(urllib.request.Request(f"{base}/jobs/{j['jid']}?mode=cancel", method="PATCH"), timeout=5)
    deadline = time.time() + 20
    while running and jobs() and time.time() < deadline:
        time.sleep(0.5)
except OSError:
    pass
PYCODE
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
