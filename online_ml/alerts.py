"""Accuracy alerts: one alert when the model's recent accuracy drops, one record when it recovers.

Pure logic, no Kafka or Flink: the trainer feeds every scored prediction to an
:class:`AccuracyAlarm` and writes what it returns to the ``model_alerts`` topic.

Rules, chosen so that an operator gets one message per incident and no noise:

* nothing is judged before a warm-up (``warmup`` records learned, counting those of a restored
  model) *and* before the window holds ``window`` predictions, so a fresh model's first,
  naturally poor, predictions and a restarted job's still-empty window never raise an alert;
* an alert (``accuracy_drop``) is raised when the accuracy over the last ``window`` predictions
  falls below ``threshold``; while it is active nothing else is raised, however long it lasts;
* it is cleared (``recovered``) only when the accuracy reaches ``threshold + hysteresis``, so an
  accuracy hovering around the threshold does not flap between the two.

>>> alarm = AccuracyAlarm(threshold=0.5, window=4, warmup=4, hysteresis=0.25)
>>> [alarm.update(True, n) for n in range(1, 5)]          # warm-up: a full, good window
[None, None, None, None]
>>> [e and e.kind for e in (alarm.update(False, n) for n in range(5, 8))]
[None, None, 'accuracy_drop']
>>> alarm.active, alarm.fired
(True, 1)
>>> [e and e.kind for e in (alarm.update(True, n) for n in range(8, 12))]  # 0.5 is not enough
[None, None, 'recovered', None]
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from online_ml.learner import RollingAccuracy

__all__ = ["AccuracyAlarm", "AlertEvent", "DROP", "RECOVERED"]

DROP = "accuracy_drop"
RECOVERED = "recovered"


@dataclass(frozen=True)
class AlertEvent:
    """One alert record (``kind`` is ``accuracy_drop`` or ``recovered``)."""

    kind: str
    rolling_accuracy: float
    threshold: float
    samples_seen: int
    window: int
    ts: str

    def to_json(self, **extra) -> str:
        """The record written to the alert topic (``extra`` fields, e.g. the model key, appended)."""
        out = {
            "kind": self.kind,
            "rolling_accuracy": round(self.rolling_accuracy, 4),
            "threshold": self.threshold,
            "samples_seen": self.samples_seen,
            "window": self.window,
            "ts": self.ts,
        }
        out.update(extra)
        return json.dumps(out, separators=(",", ":"))

    def message(self) -> str:
        """A log line for people."""
        if self.kind == DROP:
            return (f"model accuracy alert: {self.rolling_accuracy:.1%} over the last "
                    f"{self.window} records is below the threshold {self.threshold:.1%} "
                    f"({self.samples_seen} samples seen)")
        return (f"model accuracy recovered: {self.rolling_accuracy:.1%} over the last "
                f"{self.window} records ({self.samples_seen} samples seen)")


class AccuracyAlarm:
    """Watches prequential hits and misses; raises one event per incident, with hysteresis."""

    def __init__(self, threshold: float = 0.8, window: int = 500, warmup: int = 1000,
                 hysteresis: float = 0.05):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if warmup < 0 or hysteresis < 0:
            raise ValueError(f"warmup and hysteresis must be >= 0, got {warmup}, {hysteresis}")
        self.threshold = float(threshold)
        self.window = int(window)
        self.warmup = int(warmup)
        self.hysteresis = float(hysteresis)
        self.recent = RollingAccuracy(self.window)
        self.active = False
        self.fired = 0  # accuracy_drop events raised so far

    @property
    def rolling_accuracy(self) -> float:
        return self.recent.get()

    def update(self, correct: bool, samples_seen: int, ts: str | None = None) -> AlertEvent | None:
        """Score one prediction; return the event it triggers, if any.

        ``samples_seen`` is the learner's count after this record (it continues across restarts).
        """
        self.recent.add(correct)
        if samples_seen < self.warmup or self.recent.n < self.window:
            return None
        accuracy = self.recent.get()
        if not self.active and accuracy < self.threshold:
            self.active = True
            self.fired += 1
            return self._event(DROP, accuracy, samples_seen, ts)
        if self.active and accuracy >= self.threshold + self.hysteresis:
            self.active = False
            return self._event(RECOVERED, accuracy, samples_seen, ts)
        return None

    def update_many(self, hits: Sequence[bool] | np.ndarray,
                    first_seen: int) -> list[tuple[int, AlertEvent]]:
        """``update`` over many predictions in order (batch mode), the window's accuracy after
        each one computed as one array: the events ``update`` would return, with the position of
        the record that raised each. ``first_seen`` is ``samples_seen`` after the first record.

        >>> one, many = AccuracyAlarm(0.5, window=4, warmup=0), AccuracyAlarm(0.5, 4, 0)
        >>> hits = [1, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0]
        >>> [i for i, h in enumerate(hits) if one.update(bool(h), i + 1)]
        [4, 7, 11]
        >>> [(i, event.kind) for i, event in many.update_many(hits, 1)]
        [(4, 'accuracy_drop'), (7, 'recovered'), (11, 'accuracy_drop')]
        """
        new = np.asarray(hits, dtype=bool).reshape(-1)
        old = np.array(self.recent.hits, dtype=bool)
        right = np.concatenate(([0], np.cumsum(np.concatenate((old, new)), dtype=np.int64)))
        end = len(old) + 1 + np.arange(len(new))  # records up to and including each new one
        n = np.minimum(self.window, end)
        accuracy = (right[end] - right[end - n]) / n  # the same division as RollingAccuracy.get
        watched = (first_seen + np.arange(len(new)) >= self.warmup) & (n >= self.window)
        events = []
        at = 0
        while at < len(new):
            flips = watched[at:] & (accuracy[at:] >= self.threshold + self.hysteresis
                                    if self.active else accuracy[at:] < self.threshold)
            if not flips.any():
                break
            at += int(flips.argmax())
            self.active = not self.active
            self.fired += self.active
            events.append((at, self._event(DROP if self.active else RECOVERED,
                                           float(accuracy[at]), first_seen + at, None)))
            at += 1
        self.recent.add_many(new.tolist())
        return events

    def _event(self, kind: str, accuracy: float, samples_seen: int, ts: str | None) -> AlertEvent:
        if ts is None:
            from online_ml.schema import now_ts

            ts = now_ts()
        return AlertEvent(kind=kind, rolling_accuracy=accuracy, threshold=self.threshold,
                          samples_seen=int(samples_seen), window=self.window, ts=ts)
