#!/usr/bin/env bash
# apache-flink (requirements.txt), the connector (stack/pom.xml) and stack/env.sh must agree:
# a connector built for another Flink fails at job submission with a ClassNotFound/NoSuchMethod.
set -euo pipefail
source "$(dirname "$0")/env.sh"
req=$(sed -n 's/^apache-flink==\(.*\)$/\1/p' "$ROOT/requirements.txt")
pom_flink=$(sed -n 's:.*<flink.version>\(.*\)</flink.version>.*:\1:p' "$ROOT/stack/pom.xml")
pom_conn=$(sed -n 's:.*<flink.kafka.connector.version>\(.*\)</flink.kafka.connector.version>.*:\1:p' "$ROOT/stack/pom.xml")
pom_kafka=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/stack/pom.xml")
errors=0
check() { if [ "$2" != "$3" ]; then echo "version mismatch: $1: '$2' != '$3'" >&2; errors=1; fi; }
check "apache-flink in requirements.txt vs stack/env.sh" "$req" "$FLINK_VERSION"
check "flink.version in stack/pom.xml vs stack/env.sh" "$pom_flink" "$FLINK_VERSION"
check "connector in stack/pom.xml vs stack/env.sh" "$pom_conn" "$FLINK_KAFKA_CONNECTOR_VERSION"
check "kafka.version in stack/pom.xml vs stack/env.sh" "$pom_kafka" "$KAFKA_VERSION"
# the connector's suffix is the Flink minor it was built for (5.0.0-2.2 -> 2.2)
check "connector built for Flink ${pom_conn##*-} vs apache-flink $req" "${pom_conn##*-}" "$(echo "$req" | cut -d. -f1,2)"
if [ -x "$PY" ]; then
  installed=$("$PY" -c 'from importlib.metadata import version; print(version("apache-flink"))' 2>/dev/null || echo none)
  check "installed apache-flink vs requirements.txt" "$installed" "$req"
fi
exit $errors
