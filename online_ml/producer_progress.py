"""The producer's pacing and what its user sees: ``Pacer`` (when each record is sent) and
``Progress`` (counts, rates, stalls, the summary). Pure, so that tests drive them with a fake
clock; online_ml/producer.py wires them to a real ``KafkaProducer``.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


def reason(exc: BaseException) -> str:
    """An exception in one line: its type and message."""
    text, name = str(exc), type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}" if text else name


# -- when it is sent ---------------------------------------------------------------------------
class Pacer:
    """Releases one send every ``1/rate`` seconds on a fixed schedule, so sleeps don't add drift.

    ``rate <= 0`` means as fast as possible. After a stall longer than ``max_lag`` seconds (e.g. a
    blocked send) the schedule restarts instead of bursting to catch up.
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, max_lag: float = 1.0):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.clock, self.sleep, self.max_lag = clock, sleep, max_lag
        self._next: float | None = None

    def wait(self) -> None:
        if not self.interval:
            return
        now = self.clock()
        if self._next is None or now - self._next > self.max_lag:
            self._next = now
        delay = self._next - now
        if delay > 0:
            self.sleep(delay)
        self._next += self.interval


# -- what the user sees ------------------------------------------------------------------------
@dataclass
class Progress:
    """Counts of sent / acknowledged / failed records; updated from Kafka's I/O thread too."""

    started: float = field(default_factory=time.monotonic)
    finished: float | None = None  # when the last record was handed to Kafka
    sent: int = 0
    acked: int = 0
    failed: int = 0
    first_error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _last_time: float | None = field(default=None, repr=False)
    _last_sent: int = field(default=0, repr=False)
    _last_done: int = field(default=0, repr=False)
    _last_done_time: float = field(default_factory=time.monotonic, repr=False)

    def on_ack(self, _metadata=None) -> None:
        with self._lock:
            self.acked += 1

    def on_error(self, exc: BaseException) -> None:
        with self._lock:
            self.failed += 1
            if self.first_error is None:
                self.first_error = reason(exc)

    def line(self, now: float | None = None) -> str:
        """``sent 120 | 10.0 rec/s | acked 118 | failed 0`` (rate since the previous line)."""
        now = time.monotonic() if now is None else now
        since, base = (self._last_time, self._last_sent) if self._last_time is not None else (
            self.started, 0)
        elapsed = now - since
        rate = (self.sent - base) / elapsed if elapsed > 0 else 0.0
        self._last_time, self._last_sent = now, self.sent
        return (f"sent {self.sent} | {rate:.1f} rec/s | acked {self.acked} | "
                f"failed {self.failed}")

    def stalled_for(self, now: float) -> float:
        """Seconds since the last acknowledgement or failure while records are pending, else 0.

        kafka-python keeps buffering while the broker is down, so without this the user would
        see a happily growing "sent" count and nothing else.
        """
        done = self.acked + self.failed
        if done != self._last_done or self.sent == done:
            self._last_done, self._last_done_time = done, now
            return 0.0
        return now - self._last_done_time

    def summary(self, now: float | None = None) -> str:
        """Totals; the rate covers the sending time, not the final wait for acknowledgements."""
        if now is None:
            now = self.finished if self.finished is not None else time.monotonic()
        elapsed = max(now - self.started, 1e-9)
        text = (f"sent {self.sent} records in {elapsed:.1f} s ({self.sent / elapsed:.1f} rec/s); "
                f"acknowledged {self.acked}, failed {self.failed}")
        if self.sent > self.acked + self.failed:
            text += f", unconfirmed {self.sent - self.acked - self.failed}"
        if self.first_error:
            text += f"; first error: {self.first_error}"
        return text
