#!/usr/bin/env bash
# `make demo`: install what is missing, start the services, submit the training job, start the
# producer and the prediction server in the background, and say where everything is.
# Safe to run again: what already runs is left alone.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
started=$SECONDS
cd "$ROOT"
bash "$ROOT/stack/install.sh"
bash "$ROOT/stack/up.sh"
source "$VENV/bin/activate"

# the training job (named by JOB_NAME, Settings.job_name) is on the cluster and not stopped
if found=$("$PY" -m online_ml.flink_rest job-running 2>&1); then
  ok "$found"
else
  say "Submitting the training job: flink run -m localhost:$FLINK_REST_PORT -d -py stream.py"
  if ! (cd "$ROOT" && flink run -m "localhost:$FLINK_REST_PORT" -d -py stream.py) >"$LOGS/submit.log" 2>&1; then
    fail "job submission failed; see $LOGS/submit.log"; tail -n 20 "$LOGS/submit.log" >&2; exit 1
  fi
  ok "$(grep -o "submitted.*" "$LOGS/submit.log" | tail -n 1)"
fi

if pid_alive producer; then
  ok "producer already running"
else
  say "Starting the producer: python kafka_producer.py (10 records/s)"
  start_supervised producer "$LOGS/producer.log" "$PY" "$ROOT/kafka_producer.py"
  # the producer itself, not only supervisord's record of it (a producer that dies at start is
  # started again): the same process still runs 3 s after it started
  wait_until 10 "producer" child_pid producer || true
  first=$(child_pid producer || true); sleep 3
  if [ -z "$first" ] || [ "$(child_pid producer || true)" != "$first" ]; then
    stop_pid producer; die_with_log producer "exited at start" "$LOGS/producer.log"; exit 1
  fi
fi

server_ready() { "$PY" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$SERVER_PORT/healthz', timeout=2)"; }
if pid_alive server; then
  # ours already: wait for it (it may be restarting) rather than start a second supervisor
  wait_until 30 "server" server_ready || { die_with_log "prediction server" "running (pid $(pid_of server)) but no answer on :$SERVER_PORT within 30 s" "$LOGS/server.log"; exit 1; }
  ok "prediction server already running"
else
  # the production server (the tutorial's `python model_server.py` is Flask's development
  # server): granian, one worker process per core, one Python thread each, keep-alive in Rust
  # (README, "Benchmarks", serving: against gunicorn's sync workers in the same run; the same
  # command as online_ml/harness/processes.py's granian_command)
  workers="${SERVER_WORKERS:-$(nproc)}"
  say "Starting the prediction server: granian, $workers workers, online_ml.server:create_app()"
  start_supervised server "$LOGS/server.log" "$VENV/bin/granian" --interface wsgi \
    --host 127.0.0.1 --port "$SERVER_PORT" --workers "$workers" --blocking-threads 1 \
    --respawn-failed-workers --respawn-interval 1 --workers-kill-timeout 3 \
    --factory online_ml.server:create_app
  wait_until 30 "server" server_ready || { stop_pid server; die_with_log "prediction server" "no answer on :$SERVER_PORT within 30 s" "$LOGS/server.log"; exit 1; }
fi

cat <<MSG

  Everything is up ($((SECONDS - started)) s).
    Drawing board      http://127.0.0.1:$SERVER_PORT   (a model appears ~10 s after the job starts)
    Flink WebUI        $FLINK_REST_URL   (the training job -> operator -> Metrics: online_ml.*)
    Kafka              $KAFKA_BOOTSTRAP_SERVERS   topics $SOURCE_TOPIC -> $SINK_TOPIC
    Redis              $REDIS_HOST:$REDIS_PORT   model under key online_ml_model
    Job watcher        brings the job back after a JobManager crash: $LOGS/watcher.log
    Logs               $LOGS/  (producer.log, server.log, watcher.log, kafka.log, redis.log, flink/)
    Stop everything    make down
MSG
