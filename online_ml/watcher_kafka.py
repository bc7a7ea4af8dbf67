"""The job watcher's Kafka side: is the source topic growing, and the training alerts.

Why apart from the watcher's loop: Kafka can be away while Flink is not, and the watch of the job
must not wait for it. Every call has short timeouts, and after a failure Kafka is left alone for
``KAFKA_RETRY_SECONDS``; alerts wait in the watcher's memory (in Redis) until Kafka took them, so
none is lost when the watcher restarts.

Alert records (topic ``ALERT_TOPIC``, next to the job's ``accuracy_drop``/``recovered``)::

    {"kind": "training_stopped", "job_name": "Classifier Model Train", "state": "absent",
     "previous_state": "running", "job_id": null, "ts": "2024-01-01 14:02:00",
     "model_key": "online_ml_model"}
    {"kind": "training_resumed", ..., "state": "running", "down_seconds": 41.3}
"""
from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from online_ml.config import Settings

if TYPE_CHECKING:
    from online_ml.watcher_rules import Memory

log = logging.getLogger("online_ml.watcher")

KAFKA_RETRY_SECONDS = 10.0


class KafkaSide:
    """The source topic's end offsets (are records arriving?) and the alert records."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.consumer: Any = None
        self.producer: Any = None
        self.retry_at = 0.0

    def tick(self, m: Memory, now: float) -> None:
        """Note the source topic's growth in ``m``; send ``m``'s pending alerts, oldest first."""
        if now < self.retry_at:
            return
        try:
            offsets = self._end_offsets()
            if offsets is not None:
                if m.source_offsets is not None and offsets > m.source_offsets:
                    m.records_at = now
                m.source_offsets = offsets
            while m.pending_alerts:
                record = dict(m.pending_alerts[0], model_key=self.settings.model_key)
                self._send(record)
                m.pending_alerts.pop(0)
                log.info("alert written to %s: %s", self.settings.alert_topic, record)
        except Exception as exc:
            log.warning("Kafka (%s): %s; trying again in %.0f s",
                        self.settings.kafka_bootstrap_servers, exc, KAFKA_RETRY_SECONDS)
            self.retry_at = now + KAFKA_RETRY_SECONDS
            self.close()

    def _end_offsets(self) -> int | None:
        from kafka import KafkaConsumer, TopicPartition

        if self.consumer is None:
            self.consumer = KafkaConsumer(
                bootstrap_servers=self.settings.kafka_bootstrap_servers, group_id=None,
                enable_auto_commit=False, request_timeout_ms=3000, bootstrap_timeout_ms=2000)
        topic = self.settings.source_topic
        partitions = self.consumer.partitions_for_topic(topic)
        if not partitions:
            return None
        ends = self.consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return int(sum(ends.values()))

    def _send(self, record: dict) -> None:
        from kafka import KafkaProducer

        if self.producer is None:
            self.producer = KafkaProducer(
                bootstrap_servers=self.settings.kafka_bootstrap_servers, acks="all",
                bootstrap_timeout_ms=2000, max_block_ms=3000, request_timeout_ms=3000,
                delivery_timeout_ms=4000, linger_ms=0)
        value = json.dumps(record, separators=(",", ":")).encode()
        self.producer.send(self.settings.alert_topic, value).get(timeout=5)

    def close(self) -> None:
        try:
            if self.producer is not None:
                self.producer.close(timeout=1)
            if self.consumer is not None:
                self.consumer.close()
        except Exception:
            pass
        self.consumer = self.producer = None
