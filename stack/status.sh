#!/usr/bin/env bash
# What of ours is running: supervisord's view of each service (state and pid).
source "$(dirname "$0")/lib.sh"
[ -x "$PY" ] || { echo "  no venv: nothing runs"; exit 0; }
out=$(sv status)
if [ -n "$out" ]; then echo "$out"; else echo "  nothing of ours is running (no supervisord for $STATE)"; fi
