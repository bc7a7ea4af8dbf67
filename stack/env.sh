# Shared settings for the local stack. Sourced by the other stack scripts (and usable by hand:
# `source stack/env.sh`). Every value can be overridden from the environment; the names are the
# same as in online_ml/config.py and docker-compose.yml.
ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
STATE="${ONLINE_ML_STATE:-$ROOT/.state}"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

export REDIS_HOST="${REDIS_HOST:-127.0.0.1}"
export REDIS_PORT="${REDIS_PORT:-6379}"
export REDIS_PASSWORD="${REDIS_PASSWORD:-redis_password}"
export KAFKA_BOOTSTRAP_SERVERS="${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}"
KAFKA_PORT="${KAFKA_BOOTSTRAP_SERVERS##*:}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
export SOURCE_TOPIC="${SOURCE_TOPIC:-handwritten_digit}"
export SINK_TOPIC="${SINK_TOPIC:-digit_predict}"
# REST port: FLINK_REST_PORT, else the port of FLINK_REST_URL, else 8081
if [ -z "${FLINK_REST_PORT:-}" ] && [[ "${FLINK_REST_URL:-}" =~ :([0-9]+)/?$ ]]; then
  FLINK_REST_PORT="${BASH_REMATCH[1]}"
fi
FLINK_REST_PORT="${FLINK_REST_PORT:-8081}"
export FLINK_REST_URL="${FLINK_REST_URL:-http://localhost:$FLINK_REST_PORT}"
FLINK_RPC_PORT="${FLINK_RPC_PORT:-6123}"   # JobManager RPC (the TaskManager registers there)
ZOOKEEPER_PORT="${ZOOKEEPER_PORT:-2181}"   # only bench/jobmanager_ha.py starts ZooKeeper
export SERVER_PORT="${SERVER_PORT:-8066}"
# TaskManager processes of the local cluster, each with its own Python workers: standing in for
# several machines when the job runs at PARALLELISM > 1 (README "Parallel learners")
TASKMANAGERS="${TASKMANAGERS:-1}"

# Versions that must match: the apache-flink wheel and the Kafka SQL connector built for it.
# stack/check_versions.sh compares these with requirements.txt and stack/pom.xml.
FLINK_VERSION=2.2.1
FLINK_KAFKA_CONNECTOR_VERSION=5.0.0-2.2
KAFKA_VERSION=4.1.1

JARS="$STATE/jars"
LOGS="$STATE/logs"
RUN="$STATE/run"
