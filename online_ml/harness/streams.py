"""Watching a running job from outside while a test breaks something: what went in, what came
out, and what the model store saw.

Why: a fault test asserts at-least-once delivery (every record the broker acknowledged gets a
prediction), that the model never goes backwards, and how long the stream stopped. Three
background threads record that evidence while the test kills processes:

* :class:`PacedProducer` -- records with unique ids at a steady rate; remembers acknowledged ids;
* :class:`SinkTally` -- predictions per id in the sink topic, and when each arrived;
* :class:`StoreTrail` -- every (version, samples_seen) of the stored model, in order.

Each is a context manager that starts on entry and stops on exit, also when the test fails.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

from online_ml.producer import load_dataset
from online_ml.schema import encode_record


class _Background(threading.Thread):
    """A daemon thread with a halt event; ``with`` starts it and stops it."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.halt = threading.Event()
        self.lock = threading.Lock()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.halt.set()
        if self.is_alive():
            self.join(timeout=180)


class PacedProducer(_Background):
    """Sends ``digits`` records with ids ``<prefix>-<n>`` at ``rate`` per second (``acks=all``)."""

    def __init__(self, bootstrap: str, topic: str, rate: float = 10.0):
        super().__init__()
        from kafka import KafkaProducer

        self.topic, self.rate = topic, rate
        self.prefix = uuid.uuid4().hex[:6]
        self.sent = 0
        self.acked: set[str] = set()
        self.failures: list[str] = []
        # generous timeouts: a record sent while a broker is away is retried, not dropped
        self.kafka = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                   max_block_ms=120_000, delivery_timeout_ms=180_000,
                                   request_timeout_ms=10_000)

    def run(self) -> None:
        X, y = load_dataset()
        t0 = time.monotonic()
        while not self.halt.is_set():
            n = self.sent
            rid = f"{self.prefix}-{n}"
            future = self.kafka.send(self.topic, encode_record(X[n % len(X)], y[n % len(y)], id=rid))
            future.add_callback(lambda _meta, rid=rid: self._note(self.acked.add, rid))
            future.add_errback(lambda exc: self._note(self.failures.append, repr(exc)))
            self.sent = n + 1
            self.halt.wait(max(0.0, t0 + self.sent / self.rate - time.monotonic()))
        self.kafka.flush(timeout=120)
        self.kafka.close(timeout=10)

    def _note(self, add, value) -> None:
        with self.lock:
            add(value)

    def acknowledged(self) -> set[str]:
        with self.lock:
            return set(self.acked)


class SinkTally(_Background):
    """Reads the sink topic from its start: how often each id was predicted, and arrival times."""

    def __init__(self, bootstrap: str, topic: str):
        super().__init__()
        from kafka import KafkaConsumer

        self.counts: dict[str, int] = {}
        self.arrivals: list[float] = []  # time.monotonic() of each prediction read
        self.kafka = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                   enable_auto_commit=False, group_id=None)

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                try:
                    batches = self.kafka.poll(timeout_ms=300)
                except Exception:  # a broker restarting: ask again
                    self.halt.wait(0.5)
                    continue
                now = time.monotonic()
                with self.lock:
                    for records in batches.values():
                        for record in records:
                            rid = json.loads(record.value).get("id")
                            self.arrivals.append(now)
                            if rid is not None:
                                self.counts[rid] = self.counts.get(rid, 0) + 1
        finally:
            self.kafka.close()

    def ids(self) -> set[str]:
        with self.lock:
            return set(self.counts)

    def total(self) -> int:
        with self.lock:
            return len(self.arrivals)

    def first_after(self, moment: float) -> float | None:
        """Monotonic time of the first prediction read after ``moment``."""
        with self.lock:
            return next((t for t in self.arrivals if t > moment), None)

    def longest_gap(self, start: float) -> float:
        """The longest time without a prediction since ``start`` (to the last one read)."""
        with self.lock:
            times = [start] + [t for t in self.arrivals if t > start]
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)

    def resumed_after(self, start: float) -> float | None:
        """Monotonic time of the prediction that ended the longest gap since ``start``: when
        the stream came back after an outage that began then (None: nothing read since)."""
        with self.lock:
            times = [start] + [t for t in self.arrivals if t > start]
        gaps = [(b - a, b) for a, b in zip(times, times[1:])]
        return max(gaps)[1] if gaps else None

    def duplicates(self) -> int:
        with self.lock:
            return sum(n - 1 for n in self.counts.values())


class StoreTrail(_Background):
    """Polls the model's metadata; keeps each new (version, samples_seen) in order."""

    def __init__(self, store: Any, every: float = 0.2):
        super().__init__()
        self.store, self.every = store, every
        self.trail: list[tuple[int, int]] = []

    def run(self) -> None:
        while not self.halt.wait(self.every):
            try:
                meta = self.store.load_meta()
            except Exception:
                continue
            if not meta:
                continue
            point = (int(meta["version"]), int(meta.get("samples_seen") or 0))
            with self.lock:
                if not self.trail or self.trail[-1] != point:
                    self.trail.append(point)

    def latest(self) -> tuple[int, int]:
        with self.lock:
            return self.trail[-1] if self.trail else (0, 0)

    def backwards(self) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """Steps where the version did not increase or samples_seen went down (should be none)."""
        with self.lock:
            pairs = list(zip(self.trail, self.trail[1:]))
        return [(a, b) for a, b in pairs if b[0] <= a[0] or b[1] < a[1]]
