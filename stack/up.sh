#!/usr/bin/env bash
# Start the local services: `stack/up.sh [redis] [kafka] [flink] [watcher] [zookeeper]` (default:
# redis, kafka, flink; `flink` also starts the job watcher, which brings the training job back
# after a JobManager crash). `zookeeper` (ZOOKEEPER_PORT) is not part of `make up`: only
# bench/jobmanager_ha.py starts it, with FLINK_HA_ZOOKEEPER_QUORUM set, to measure Flink's own
# ZooKeeper high availability against the watcher (README "Recovery without loss").
# Idempotent: a running service is left alone, and only the missing part of one is started (e.g.
# a TaskManager whose JobManager still runs). Each start waits until the service answers.
# Every process runs under supervisord (online_ml/supervision.py; `make status` shows them), which
# starts it again when it dies unexpectedly (with backoff when it keeps dying at start).
# A failed start names the service, the reason and its log, and stops what it half-started.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
mkdir -p "$LOGS" "$RUN"
services=("$@"); [ ${#services[@]} -gt 0 ] || services=(redis kafka flink)
[ -x "$PY" ] || { fail "no venv at $VENV: run 'make install' first"; exit 1; }

port_busy_by_other() {  # port in use, but not by the process we started
  port_open "$2" && ! pid_alive "$1"
}

# can_start NAME WHAT PORT SETTING JARS: PORT is not taken by a process this stack did not start,
# and the service's jars (JARS/<JARS>, from `make install`) are there; says what is wrong if not.
can_start() {
  if port_busy_by_other "$1" "$3"; then
    fail "$2: port $3 is in use by a process this stack did not start (stop it or set $4)"; return 1
  fi
  [ -d "$JARS/$5" ] || { fail "$2: jars missing in $JARS/$5: run 'make install'"; return 1; }
}

# running_or_recovering NAME WHAT READY_CMD...: true when supervisord runs NAME and the
# service answers, waiting up to 90 s while supervisord restarts it. False: start it.
running_or_recovering() {
  local name="$1" what="$2"; shift 2
  pid_alive "$name" || return 1
  "$@" >/dev/null 2>&1 && return 0
  say "$what is restarting under supervisord; waiting for it"
  wait_until 90 "$what" "$@" && return 0
  fail "$what: supervised but not answering after 90 s; stopping it to start it again"
  stop_pid "$name"
  return 1
}

# --- Redis ------------------------------------------------------------------------------------
# the password travels in the environment (REDISCLI_AUTH), never on a command line `ps` shows
redis_ping() { REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping | grep -q PONG; }
up_redis() {
  if running_or_recovering redis Redis redis_ping; then ok "Redis already running on 127.0.0.1:$REDIS_PORT"; return; fi
  if port_busy_by_other redis "$REDIS_PORT"; then
    fail "Redis: port $REDIS_PORT is in use by a process this stack did not start (stop it or set REDIS_PORT)"; return 1
  fi
  say "Starting Redis on 127.0.0.1:$REDIS_PORT (password required, append-only file in $STATE/redis)"
  mkdir -p "$STATE/redis"
  local log="$LOGS/redis.log" conf="$STATE/redis/redis.conf"
  # the password goes in a 0600 config file, not on the command line where `ps` shows it
  ( umask 077; cat > "$conf" <<CONF
bind 127.0.0.1
protected-mode yes
port $REDIS_PORT
requirepass $REDIS_PASSWORD
dir $STATE/redis
appendonly yes
appendfsync everysec
save ""
daemonize no
CONF
  )
  start_supervised redis "$log" redis-server "$conf"
  if ! wait_until 20 "redis ping" redis_ping; then
    stop_pid redis; die_with_log Redis "no PONG on 127.0.0.1:$REDIS_PORT within 20 s" "$log"; return 1
  fi
  ok "Redis is up (127.0.0.1:$REDIS_PORT)"
}

# --- Kafka (KRaft, one broker + controller) ----------------------------------------------------
kafka_ready() { "$PY" "$ROOT/stack/kafka_topics.py" --check; }
up_kafka() {
  if running_or_recovering kafka Kafka kafka_ready; then ok "Kafka already running on $KAFKA_BOOTSTRAP_SERVERS"; return; fi
  can_start kafka Kafka "$KAFKA_PORT" KAFKA_BOOTSTRAP_SERVERS kafka || return 1
  say "Starting Kafka $KAFKA_VERSION (KRaft) on $KAFKA_BOOTSTRAP_SERVERS"
  local dir="$STATE/kafka" log="$LOGS/kafka.log"
  mkdir -p "$dir/data" "$LOGS/kafka"
  sed -e "s#@DATA@#$dir/data#" -e "s#@PORT@#$KAFKA_PORT#g" -e "s#@CPORT@#$KAFKA_CONTROLLER_PORT#g" \
    "$ROOT/stack/kafka/server.properties" > "$dir/server.properties"
  sed -e "s#@LOGDIR@#$LOGS/kafka#g" "$ROOT/stack/kafka/log4j2.yaml" > "$dir/log4j2.yaml"
  local java=(java -Xms256m -Xmx768m -cp "$JARS/kafka/*" "-Dlog4j2.configurationFile=$dir/log4j2.yaml")
  if [ ! -f "$dir/data/meta.properties" ]; then
    local cluster_id
    cluster_id=$("${java[@]}" kafka.tools.StorageTool random-uuid 2>>"$log")
    if ! "${java[@]}" kafka.tools.StorageTool format --standalone -t "$cluster_id" \
         -c "$dir/server.properties" >>"$log" 2>&1; then
      die_with_log Kafka "formatting the KRaft storage failed" "$log"; return 1
    fi
  fi
  start_supervised kafka "$log" "${java[@]}" kafka.Kafka "$dir/server.properties"
  if ! wait_until 60 "kafka metadata" kafka_ready; then
    stop_pid kafka; die_with_log Kafka "no metadata answer on $KAFKA_BOOTSTRAP_SERVERS within 60 s" "$log"; return 1
  fi
  if ! "$PY" "$ROOT/stack/kafka_topics.py" --create >>"$log" 2>&1; then
    die_with_log Kafka "could not create the topics" "$log"; return 1
  fi
  ok "Kafka is up ($KAFKA_BOOTSTRAP_SERVERS), topics: $("$PY" "$ROOT/stack/kafka_topics.py" --list)"
}

# --- Flink standalone cluster from the apache-flink wheel ----------------------------------------
flink_ready() { "$PY" -m online_ml.flink_rest ready --taskmanagers "$TASKMANAGERS"; }
# taskmanager_names: flink-taskmanager, flink-taskmanager-2, ... (TASKMANAGERS of them)
taskmanager_names() {
  local i; echo taskmanager
  for ((i = 2; i <= TASKMANAGERS; i++)); do echo "taskmanager-$i"; done
}
# loopback_shim: path of the built loopback_bind.so (built with gcc when missing or older than
# its source); prints nothing and fails when it cannot be built.
loopback_shim() {
  local src="$ROOT/stack/loopback/loopback_bind.c" so="$STATE/lib/loopback_bind.so"
  if [ ! -f "$so" ] || [ "$src" -nt "$so" ]; then
    mkdir -p "$STATE/lib" "$LOGS"
    if ! gcc -shared -fPIC -O2 -o "$so.tmp" "$src" -ldl >>"$LOGS/loopback_bind.log" 2>&1; then
      fail "could not build $so (gcc; see $LOGS/loopback_bind.log): the TaskManagers' Python worker endpoints will listen on ALL interfaces" >&2
      return 1
    fi
    mv "$so.tmp" "$so"
  fi
  echo "$so"
}
up_flink() {
  local conf="$STATE/flink/conf" flink_home
  flink_home=$("$PY" -c 'import os, pyflink; print(os.path.dirname(os.path.abspath(pyflink.__file__)))')
  [[ "$TASKMANAGERS" =~ ^[1-9][0-9]*$ ]] || { fail "TASKMANAGERS must be a number >= 1"; return 1; }
  local -a missing=() tms
  mapfile -t tms < <(taskmanager_names)
  pid_alive flink-jobmanager || missing+=(jobmanager)
  local tm
  for tm in "${tms[@]}"; do pid_alive "flink-$tm" || missing+=("$tm"); done
  if [ ${#missing[@]} -eq 0 ] && running_or_recovering flink-jobmanager "Flink" flink_ready; then
    ok "Flink already running ($FLINK_REST_URL, $TASKMANAGERS TaskManager(s))"; return
  fi
  if [[ " ${missing[*]} " == *" jobmanager "* ]]; then
    for port in "$FLINK_REST_PORT" "$FLINK_RPC_PORT"; do
      if port_open "$port"; then
        fail "Flink: port $port is in use by a process this stack did not start (stop it or set FLINK_REST_PORT / FLINK_RPC_PORT)"
        return 1
      fi
    done
  fi
  say "Starting Flink $FLINK_VERSION standalone cluster: ${missing[*]} (WebUI $FLINK_REST_URL, RPC $FLINK_RPC_PORT)"
  mkdir -p "$conf" "$STATE/flink/checkpoints" "$LOGS/flink"
  cp "$flink_home"/conf/log4j*.properties "$flink_home"/conf/logback*.xml "$conf/"
  echo "localhost:$FLINK_REST_PORT" > "$conf/masters"; echo localhost > "$conf/workers"
  sed -e "s#@PYTHON@#$PY#g" -e "s#@STATE@#$STATE#g" -e "s#@REST_PORT@#$FLINK_REST_PORT#g" \
    -e "s#@RPC_PORT@#$FLINK_RPC_PORT#g" -e "s#@ROOT@#$ROOT#g" "$ROOT/stack/flink/config.yaml" > "$conf/config.yaml"
  if [ -n "${FLINK_HA_ZOOKEEPER_QUORUM:-}" ]; then
    # Opt-in (bench/jobmanager_ha.py): Flink's ZooKeeper HA services. Job graphs, checkpoint
    # pointers and blobs go to storageDir; a restarted JobManager recovers the jobs from there.
    cat >> "$conf/config.yaml" <<HA
high-availability:
  type: zookeeper
  storageDir: file://$STATE/flink/ha
  cluster-id: ${FLINK_HA_CLUSTER_ID:-/online-ml}
  zookeeper:
    quorum: $FLINK_HA_ZOOKEEPER_QUORUM
HA
    if [ -n "${FLINK_HA_ZOOKEEPER_SESSION_TIMEOUT:-}" ]; then
      printf '    client:\n      session-timeout: %s\n' "$FLINK_HA_ZOOKEEPER_SESSION_TIMEOUT" >> "$conf/config.yaml"
    fi
    say "Flink high availability: ZooKeeper $FLINK_HA_ZOOKEEPER_QUORUM, storage $STATE/flink/ha"
  fi
  if [ "${FLINK_PROMETHEUS:-0}" = 1 ]; then
    # Opt-in: Flink's Prometheus reporter (plugins/metrics-prometheus in the wheel) has no host
    # option and listens on ALL interfaces (checked in the 2.2.1 jar), so it is off by default.
    cat >> "$conf/config.yaml" <<PROM
metrics:
  reporter:
    prom:
      factory:
        class: org.apache.flink.metrics.prometheus.PrometheusReporterFactory
      port: ${FLINK_PROMETHEUS_PORTS:-9249-9250}
PROM
    say "Flink Prometheus reporter on ports ${FLINK_PROMETHEUS_PORTS:-9249-9250} (all interfaces!)"
  fi
  local -a fenv=(env FLINK_CONF_DIR="$conf" FLINK_LOG_DIR="$LOGS/flink" PATH="$VENV/bin:$PATH")
  # TaskManagers: the Python worker's gRPC endpoints (Apache Beam's, no address setting) would
  # listen on all interfaces; stack/loopback/loopback_bind.c turns those binds into loopback ones
  local shim
  shim=$(loopback_shim) || true
  # start-foreground execs the JVM: the supervisor's child is the JVM itself
  # each TaskManager: its own log/pid names (FLINK_IDENT_STRING); ports are picked at random
  local m
  for m in "${missing[@]}"; do
    local -a preload=()
    if [ "$m" != jobmanager ] && [ -n "$shim" ]; then preload=(LD_PRELOAD="$shim"); fi
    start_supervised "flink-$m" "$LOGS/flink/$m.out" "${fenv[@]}" "${preload[@]}" \
      FLINK_IDENT_STRING="online-ml-$m" "$flink_home/bin/${m%%-*}.sh" start-foreground
  done
  if ! wait_until 90 "flink overview" flink_ready; then
    for m in "${missing[@]}"; do stop_pid "flink-$m"; done
    die_with_log Flink "REST API $FLINK_REST_URL did not report $TASKMANAGERS TaskManager(s) within 90 s" "$LOGS/flink/jobmanager.out"
    return 1
  fi
  ok "Flink is up: WebUI $FLINK_REST_URL"
}

# --- ZooKeeper, standalone (opt-in, for bench/jobmanager_ha.py) ------------------------------------
# One server bound to 127.0.0.1:ZOOKEEPER_PORT, its data in STATE/zookeeper, no admin server.
zookeeper_ready() (  # a subshell: a refused connection must not end the script
  # `srvr` (not `ruok`, which says imok before the database is loaded) names a Mode once serving
  exec 3<>"/dev/tcp/127.0.0.1/$ZOOKEEPER_PORT" || exit 1
  printf srvr >&3
  timeout 3 grep -q '^Mode: ' <&3
)
up_zookeeper() {
  if running_or_recovering zookeeper ZooKeeper zookeeper_ready; then ok "ZooKeeper already running on 127.0.0.1:$ZOOKEEPER_PORT"; return; fi
  can_start zookeeper ZooKeeper "$ZOOKEEPER_PORT" ZOOKEEPER_PORT zookeeper || return 1
  say "Starting ZooKeeper (standalone) on 127.0.0.1:$ZOOKEEPER_PORT, data in $STATE/zookeeper"
  local dir="$STATE/zookeeper" log="$LOGS/zookeeper.log"
  mkdir -p "$dir/data"
  cat > "$dir/zoo.cfg" <<CFG
tickTime=2000
dataDir=$dir/data
clientPort=$ZOOKEEPER_PORT
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=srvr
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
CFG
  start_supervised zookeeper "$log" java -Xms64m -Xmx256m -cp "$JARS/zookeeper/*" \
    -Dzookeeper.jmx.log4j.disable=true org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg"
  if ! wait_until 60 "zookeeper ruok" zookeeper_ready; then
    stop_pid zookeeper; die_with_log ZooKeeper "not serving on 127.0.0.1:$ZOOKEEPER_PORT within 60 s" "$log"; return 1
  fi
  ok "ZooKeeper is up (127.0.0.1:$ZOOKEEPER_PORT)"
}

# --- the job watcher (online_ml/watcher.py) ------------------------------------------------------
# Every WATCH_INTERVAL_SECONDS it asks Flink for the training job (JOB_NAME); a job it saw running
# that vanished (a JobManager restarted without it) or FAILED is submitted again with `flink run`,
# with this environment; it writes the training state the server shows to Redis. It needs
# Redis for its memory: until Redis answers it only watches.
watcher_reporting() { "$PY" -m online_ml.watcher status; }
up_watcher() {
  if pid_alive watcher; then ok "job watcher already running (log $LOGS/watcher.log)"; return; fi
  say "Starting the job watcher: python -m online_ml.watcher (training job '${JOB_NAME:-Classifier Model Train}')"
  # the venv's `flink` (on PATH) with this instance's configuration, for its resubmissions
  start_supervised watcher "$LOGS/watcher.log" env FLINK_CONF_DIR="$STATE/flink/conf" \
    FLINK_LOG_DIR="$LOGS/flink" PATH="$VENV/bin:$PATH" "$PY" -u -m online_ml.watcher
  if redis_ping >/dev/null 2>&1 && wait_until 60 "watcher" watcher_reporting; then
    ok "$(watcher_reporting 2>&1)"
  elif pid_alive watcher; then
    ok "job watcher started; not reporting yet (Redis not up?): see $LOGS/watcher.log"
  else
    die_with_log "job watcher" "exited at start" "$LOGS/watcher.log"; return 1
  fi
}

for s in "${services[@]}"; do
  case "$s" in
    redis) up_redis ;;
    kafka) up_kafka ;;
    flink) up_flink; up_watcher ;;
    watcher) up_watcher ;;
    zookeeper) up_zookeeper ;;
    *) fail "unknown service '$s' (redis, kafka, flink, watcher, zookeeper)"; exit 2 ;;
  esac
done
