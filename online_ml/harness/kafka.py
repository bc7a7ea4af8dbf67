"""Kafka for tests and benchmarks: topics that clean up after themselves, records in and out.

Why: every job a test or benchmark submits reads and writes topics of its own (so it never sees
the demo's records nor another run's), and those must be gone again afterwards, also on errors.
kafka-python is imported when used: most of the harness does not need it.
"""
from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import time
from collections.abc import Iterable
from typing import Any

from online_ml.config import Settings
from online_ml.harness.paths import PY, ROOT

log = logging.getLogger(__name__)


class Topics(contextlib.AbstractContextManager):
    """Creates single-partition topics on demand; on exit deletes them and the consumer groups
    named with :meth:`group` (the jobs commit their offsets under those)."""

    def __init__(self, settings: Settings):
        from kafka import KafkaAdminClient

        self.settings = settings
        self.admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
        self.names: list[str] = []
        self.groups: list[str] = []

    def group(self, name: str) -> str:
        self.groups.append(name)
        return name

    def create(self, name: str, partitions: int = 1) -> str:
        from kafka.admin import NewTopic

        self.admin.create_topics([NewTopic(name, partitions, 1)])
        self.names.append(name)
        return name

    def __exit__(self, *exc: object) -> None:
        try:
            if self.names:
                self.admin.delete_topics(self.names)
        except Exception as e:  # never hide the caller's own error behind this one
            log.warning("could not delete topics %s: %s", self.names, e)
        try:
            if self.groups:
                existing = {g["group_id"] if isinstance(g, dict) else g[0]
                            for g in self.admin.list_groups()}
                mine = [g for g in self.groups if g in existing]
                if mine:  # kafka-python 3 calls it delete_groups (2.x: delete_consumer_groups)
                    delete = (getattr(self.admin, "delete_groups", None)
                              or self.admin.delete_consumer_groups)
                    delete(mine)
        except Exception as e:  # a group without committed offsets is "not found": fine
            log.info("could not delete consumer groups %s: %s", self.groups, e)
        finally:
            self.admin.close()


def produce(bootstrap: str, topic: str, values: Iterable[str | bytes | None]) -> None:
    """Send ``values`` in order and wait until the broker has them; ``None`` is a tombstone."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    try:
        for v in values:
            if v is None:  # a tombstone (kafka-python needs a key for it)
                producer.send(topic, key=b"tombstone", value=None)
            else:
                producer.send(topic, v.encode() if isinstance(v, str) else v)
        producer.flush()
    finally:
        producer.close()


def consume_json(bootstrap: str, topic: str, expected: int, timeout: float) -> list[Any]:
    """Every record of ``topic`` from the start, decoded, once ``expected`` arrived (or at the
    deadline); then a moment more, since anything beyond ``expected`` is a finding too."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=1000)
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            out += [json.loads(m.value) for m in consumer]
        out += [json.loads(m.value) for m in consumer]
    finally:
        consumer.close()
    return out


class TopicReader:
    """Reads single records of a one-partition topic by offset: cheap even for huge topics."""

    def __init__(self, settings: Settings, topic: str):
        from kafka import KafkaConsumer, TopicPartition

        self.tp = TopicPartition(topic, 0)
        self.consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers,
                                      enable_auto_commit=False, group_id=None)
        self.consumer.assign([self.tp])

    def end_offset(self) -> int:
        return int(self.consumer.end_offsets([self.tp])[self.tp])

    def read(self, start: int, count: int, timeout: float = 30.0) -> list:
        """Records ``start .. start+count-1`` (ConsumerRecord: offset, timestamp ms, value)."""
        out: list = []
        if count <= 0:
            return out
        self.consumer.seek(self.tp, start)
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            batch = self.consumer.poll(timeout_ms=1000, max_records=min(count - len(out), 5000))
            for records in batch.values():
                out.extend(r for r in records if r.offset < start + count)
        return out[:count]

    def at(self, offset: int):
        got = self.read(offset, 1)
        if not got:
            raise TimeoutError(f"could not read offset {offset} of {self.tp.topic}")
        return got[0]

    def close(self) -> None:
        self.consumer.close()


def producer_command(settings: Settings, topic: str, rate: float = 0, count: int | None = None,
                     seed: int | None = None, ids: str | None = None) -> list[str]:
    """``python kafka_producer.py ...``: the project's producer, as a user runs it."""
    return [PY, str(ROOT / "kafka_producer.py"), "--rate", f"{rate:g}", "--topic", topic,
            "--quiet", "--bootstrap-servers", settings.kafka_bootstrap_servers,
            *(["--count", str(count)] if count is not None else []),
            *(["--seed", str(seed)] if seed is not None else []),
            *(["--ids", ids] if ids is not None else [])]


def preload(settings: Settings, topic: str, count: int, seed: int, procs: int = 1,
            head: int = 20_000, ids: str | None = None) -> dict:
    """Fill ``topic`` with ``count`` records with the project's producer, as fast as it goes.

    The first ``head`` records come from one producer (one clean shuffled sequence: what the
    accuracy columns look at); the rest from ``procs`` producers in parallel (seeds ``seed+1``,
    ...), because one kafka-python producer manages only ~10-15k records/s. ``ids``: the first
    producer's records carry the ids ``<ids>-<n>`` (``kafka_producer.py --ids``).
    """
    started = time.monotonic()
    first = min(count, head) if procs > 1 else count
    stages = [[(first, seed)]]
    rest = count - first
    if rest > 0:
        stages.append([(rest // procs + (i < rest % procs), seed + 1 + i) for i in range(procs)])
    for stage in stages:
        running = [subprocess.Popen(producer_command(settings, topic, count=n, seed=s,
                                                     ids=ids if s == seed else None), cwd=ROOT,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for n, s in stage if n > 0]
        try:
            for proc in running:
                out, err = proc.communicate(timeout=max(300, count / 1000))
                if proc.returncode != 0:
                    raise RuntimeError(f"producer failed ({proc.returncode}): {out}\n{err}")
        finally:
            for proc in running:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    elapsed = time.monotonic() - started
    return {"records": count, "producers": max(len(s) for s in stages),
            "seconds": round(elapsed, 1), "records_per_s": round(count / elapsed, 1)}
