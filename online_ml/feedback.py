"""Feedback from the drawing board back into the training stream, and Kafka reachability.

Why: the page's user knows the right answer for the digit they drew. Sending it to the job's
source topic as an ordinary labelled record (``source: "feedback"``, with an ``id``) lets the
running job train on it like any other record; the job keeps the ids of the last feedback records
it trained on in the model metadata (``recent_feedback_ids``), so the page can tell its user when
a model that includes their example is live.

The record is only acknowledged to the user after Kafka acknowledged it (``acks='all'``, waited
for with a deadline): a 200 means the example is stored in the topic, not merely buffered in this
process.
"""
from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable
from typing import Any

from .schema import encode_record

log = logging.getLogger(__name__)

FEEDBACK_SOURCE = "feedback"


class KafkaUnavailable(Exception):
    """Kafka did not take the record in time; the message says what happened (HTTP 503)."""


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    name = exc.__class__.__name__
    return f"{name}: {text}" if text and not text.startswith(name) else (text or name)


class FeedbackSender:
    """Sends labelled feedback records to the source topic through one shared KafkaProducer.

    The producer is created on first use (so the page works without Kafka until someone sends
    feedback) and dropped after a failure, so the next attempt reconnects instead of waiting on a
    producer whose buffer holds records Kafka never took. Thread-safe.
    """

    def __init__(self, bootstrap_servers: str, topic: str, timeout: float = 5.0):
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.timeout = float(timeout)
        self._producer = None
        self._lock = threading.Lock()

    def _get_producer(self):
        with self._lock:
            if self._producer is None:
                from kafka import KafkaProducer

                timeout_ms = max(100, int(self.timeout * 1000))
                self._producer = KafkaProducer(
                    bootstrap_servers=self.bootstrap_servers,
                    client_id="online_ml_feedback",
                    acks="all",
                    linger_ms=0,
                    retries=3,
                    bootstrap_timeout_ms=min(timeout_ms, 3000),
                    max_block_ms=timeout_ms,  # send() waits this long for topic metadata
                    request_timeout_ms=timeout_ms,
                    delivery_timeout_ms=timeout_ms + 1000,  # > linger_ms + request_timeout_ms
                )
            return self._producer

    def _drop(self, producer) -> None:
        with self._lock:
            if self._producer is producer:
                self._producer = None
        try:
            producer.close(timeout=0)  # do not deliver late what the user was told failed
        except Exception:  # closing a broken producer may fail too; nothing to keep
            log.debug("closing the feedback producer failed", exc_info=True)

    def send(self, x: Iterable[Any], label: Any, record_id: str | None = None) -> str:
        """Validate and send one feedback record; return its id once Kafka acknowledged it.

        Raises :class:`online_ml.schema.BadRecord` for an invalid ``x`` or ``label`` (nothing is
        sent) and :class:`KafkaUnavailable` when Kafka does not acknowledge in time.
        """
        record_id = record_id or str(uuid.uuid4())
        value = encode_record(x, label, source=FEEDBACK_SOURCE, id=record_id)
        try:
            producer = self._get_producer()
        except Exception as exc:
            log.warning("Kafka %s is unreachable: %s", self.bootstrap_servers, _reason(exc))
            raise KafkaUnavailable(f"Kafka ({self.bootstrap_servers}) is unreachable: "
                                   f"{_reason(exc)}") from None
        try:
            metadata = producer.send(self.topic, value=value,
                                     key=record_id.encode()).get(timeout=self.timeout + 1)
        except Exception as exc:
            self._drop(producer)
            log.warning("feedback %s not acknowledged by Kafka: %s", record_id, _reason(exc))
            raise KafkaUnavailable(
                f"Kafka did not acknowledge the feedback on topic {self.topic!r} within "
                f"{self.timeout:g} s ({_reason(exc)})") from None
        log.info("feedback %s (label %s) stored in %s[%s]@%s", record_id, label, metadata.topic,
                 metadata.partition, metadata.offset)
        return record_id

    def close(self) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=2)
            except Exception:
                log.debug("closing the feedback producer failed", exc_info=True)


def kafka_status(bootstrap_servers: str, timeout: float = 2.0) -> tuple[bool, str]:
    """(reachable, detail): asks the cluster for its metadata with a fresh admin client.

    A fresh client each time, because a long-lived one answers from cached metadata after the
    broker went away. Costs ~25 ms against a local broker; callers cache the answer.
    """
    try:
        from kafka import KafkaAdminClient

        timeout_ms = max(100, int(timeout * 1000))
        admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers,
                                 client_id="online_ml_health", bootstrap_timeout_ms=timeout_ms,
                                 request_timeout_ms=timeout_ms)
    except Exception as exc:
        return False, f"Kafka ({bootstrap_servers}) is unreachable: {_reason(exc)}"
    try:
        cluster = admin.describe_cluster()
        brokers = len(cluster.get("brokers") or [])
        return True, f"{brokers} broker(s)"
    except Exception as exc:
        return False, f"Kafka ({bootstrap_servers}) did not answer: {_reason(exc)}"
    finally:
        try:
            admin.close()
        except Exception:
            pass
