"""Check the broker answers and create the project's topics (used by stack/up.sh).

    kafka_topics.py --check     exit 0 when the broker answers a metadata request
    kafka_topics.py --create    create the topics that do not exist yet
    kafka_topics.py --list      print the topics
"""
import argparse
import logging
import os
import sys

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
TOPICS = [
    os.environ.get("SOURCE_TOPIC", "handwritten_digit"),
    os.environ.get("SINK_TOPIC", "digit_predict"),
    os.environ.get("DEAD_LETTER_TOPIC", "digit_dead_letter"),
    os.environ.get("ALERT_TOPIC", "model_alerts"),
]


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
            for name in TOPICS:
                if name in existing:
                    continue
                try:
                    admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
                    print(f"created topic {name}")
                except TopicAlreadyExistsError:
                    pass
        elif args.list:
            print(" ".join(sorted(t for t in admin.list_topics() if not t.startswith("__"))))
        return 0
    finally:
        admin.close()


if __name__ == "__main__":
    sys.exit(main())
