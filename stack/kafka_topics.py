"""Check the broker answers and create the project's topics (used by stack/up.sh).

    kafka_topics.py --check     exit 0 when the broker answers a metadata request
    kafka_topics.py --create    create the topics that do not exist yet; the source topic gets
                                SOURCE_PARTITIONS partitions (an existing one is grown to that)
    kafka_topics.py --list      print the topics

Names and partitions come from online_ml.config.Settings (the same env vars as everywhere).
"""
import argparse
import logging
import sys

from kafka import KafkaAdminClient
from kafka.admin import NewPartitions, NewTopic
from kafka.errors import TopicAlreadyExistsError

from online_ml.config import Settings

SETTINGS = Settings.from_env()
BOOTSTRAP = SETTINGS.kafka_bootstrap_servers
# the source topic is read by up to SOURCE_PARTITIONS parallel learners; the others are written
# by the job's one sink and read in order by the tools, so one partition each
PARTITIONS = {SETTINGS.source_topic: SETTINGS.source_partitions, SETTINGS.sink_topic: 1,
              SETTINGS.dead_letter_topic: 1, SETTINGS.alert_topic: 1}


def grow(admin: KafkaAdminClient, name: str, partitions: int) -> None:
    """A topic made before SOURCE_PARTITIONS was raised gets the missing partitions (Kafka can
    add partitions, never remove them)."""
    described = admin.describe_topics([name])
    have = len(described[0].get("partitions", [])) if described else 0
    if 0 < have < partitions:
        admin.create_partitions({name: NewPartitions(total_count=partitions)})
        print(f"topic {name}: {have} -> {partitions} partitions")


def main() -> int:
    logging.basicConfig(level=logging.CRITICAL)
    p = argparse.ArgumentParser()
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--check", action="store_true")
    g.add_argument("--create", action="store_true")
    g.add_argument("--list", action="store_true")
    args = p.parse_args()
    try:
        admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP, request_timeout_ms=5000,
                                 client_id="online-ml-stack")
    except Exception as exc:
        print(f"Kafka at {BOOTSTRAP} does not answer: {exc}", file=sys.stderr)
        return 1
    try:
        existing = set(admin.list_topics())
        if args.create:
            for name, partitions in PARTITIONS.items():
                if name in existing:
                    grow(admin, name, partitions)
                    continue
                try:
                    admin.create_topics([NewTopic(name, num_partitions=partitions,
                                                  replication_factor=1)])
                    print(f"created topic {name} ({partitions} partitions)")
                except TopicAlreadyExistsError:
                    pass
        elif args.list:
            print(" ".join(sorted(t for t in admin.list_topics() if not t.startswith("__"))))
        return 0
    finally:
        admin.close()


if __name__ == "__main__":
    sys.exit(main())
