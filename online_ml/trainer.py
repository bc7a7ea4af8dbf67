"""The training loop of the job, without Flink: decode, predict-then-learn, count, back up.

stream.py wraps a :class:`Trainer` in a PyFlink UDF and maps :meth:`Trainer.gauges` onto Flink
metrics. Keeping the loop here means it is tested with plain pytest against a real Redis, and the
job stays a thin adapter.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Callable

from online_ml.config import Settings
from online_ml.learner import OnlineLearner, make_model
from online_ml.model_store import ModelFormatError, ModelStore, dumps
from online_ml.schema import BadRecord, decode_record, encode_prediction

log = logging.getLogger(__name__)

MAX_BACKUP_BACKOFF_SECONDS = 60.0
RECENT_FEEDBACK_IDS = 100


class Trainer:
    """Owns the learner, its backups and the counters the job exposes as metrics."""

    def __init__(self, settings: Settings, store: ModelStore | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.clock = clock
        self.store = store if store is not None else ModelStore(
            settings.redis_client(), settings.model_key, keep=settings.model_versions_kept)
        self.learner = self._load_or_create()
        self.model_version = self._loaded_version
        self.records_rejected = 0
        self.backups_succeeded = 0
        self.backups_failed = 0
        self.last_train_us = 0
        # feedback from the drawing board: the page waits for a model that includes its record
        try:
            self.feedback_seen = max(0, int(self._loaded_meta.get("feedback_seen") or 0))
        except (TypeError, ValueError):
            self.feedback_seen = 0
        recent = self._loaded_meta.get("recent_feedback_ids")
        # ids of the last feedback records trained on: a page waits until its id is in a model
        self.recent_feedback_ids: deque[str] = deque(
            (i for i in recent if isinstance(i, str)) if isinstance(recent, list) else (),
            maxlen=RECENT_FEEDBACK_IDS)
        self._dirty = False
        self._last_backup_at = self.clock()
        self._last_backup_ok_at = self._last_backup_at
        self._next_backup_at = self._last_backup_at + settings.backup_interval_seconds
        self._failures_in_row = 0
        # learning and serialising the model must not interleave: the backup thread takes a copy
        # of the model's bytes under this lock, then talks to Redis without it
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start_background_backups(self) -> None:
        """Back up on a timer too, so a model is saved even when records stop arriving."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._backup_loop, name="model-backup",
                                            daemon=True)
            self._thread.start()

    def _backup_loop(self) -> None:
        while not self._stop.wait(min(1.0, self.settings.backup_interval_seconds / 4)):
            self.maybe_backup()

    # -- start ---------------------------------------------------------------------------------
    def _load_or_create(self) -> OnlineLearner:
        """The newest backup when there is a usable one, else a fresh model (logged either way)."""
        self._loaded_version = 0
        self._loaded_meta: dict = {}
        try:
            stored = self.store.load()
        except ModelFormatError as exc:
            log.error("stored model is unusable, starting a new one: %s", exc)
            stored = None
        except Exception as exc:  # Redis down: train in memory, back up when it is back
            log.error("could not reach Redis to load the model (%s); starting a new one", exc)
            stored = None
        if stored is None:
            log.info("no model in Redis under %r: creating a new one", self.settings.model_key)
            return OnlineLearner(make_model())
        self._loaded_version = stored.version
        self._loaded_meta = stored.meta
        log.info("loaded model version %s (%s samples seen)", stored.version,
                 stored.meta.get("samples_seen"))
        return OnlineLearner.from_stored(stored.model, stored.meta)

    # -- per record ----------------------------------------------------------------------------
    def process(self, value: str | bytes | None) -> tuple[str | None, int | None, int | None]:
        """Handle one raw Kafka value.

        Returns ``(sink_json, actual_y, predict_y)``; ``sink_json`` is None for a rejected record,
        which is counted and not trained on.
        """
        try:
            record = decode_record(value if value is not None else b"")
        except BadRecord as exc:
            self.records_rejected += 1
            log.warning("rejected record (%s): %s", exc.reason, exc)
            return None, None, None
        started = time.perf_counter()
        with self._lock:
            predicted = self.learner.learn_one(record.x, record.actual_y)
            self._note_feedback(record)
            self._dirty = True
        self.last_train_us = int((time.perf_counter() - started) * 1e6)
        if self._thread is None:
            self.maybe_backup()
        return encode_prediction(record, predicted), record.actual_y, predicted

    def _note_feedback(self, record) -> None:
        if record.source == "feedback":
            self.feedback_seen += 1
            if record.id is not None:
                self.recent_feedback_ids.append(record.id)

    def snapshot(self) -> dict:
        """The learner's snapshot plus what the job adds (feedback), stored as model metadata."""
        snap = self.learner.snapshot()
        snap["feedback_seen"] = self.feedback_seen
        snap["recent_feedback_ids"] = list(self.recent_feedback_ids)
        return snap

    def predict_chunk(self) -> int:
        """How many records batch mode predicts before learning them.

        A fresh model improves with every record, so early predictions should use the newest
        model (small chunks, close to row mode); a trained one changes slowly, so large chunks
        cost little accuracy and save most of scikit-learn's per-call overhead.
        """
        return int(min(self.settings.max_predict_chunk, max(8, self.learner.samples_seen // 16)))

    def process_many(self, values) -> tuple[list[str | None], list[int], int]:
        """Batch mode: handle many raw values in order.

        Returns ``(outputs, labels_trained, n_correct)``; ``outputs[i]`` is the sink JSON for
        ``values[i]`` or None when that record was rejected.
        """
        outputs: list[str | None] = [None] * len(values)
        good: list[tuple[int, object]] = []
        for i, value in enumerate(values):
            try:
                good.append((i, decode_record(value if value is not None else b"")))
            except BadRecord as exc:
                self.records_rejected += 1
                log.warning("rejected record (%s): %s", exc.reason, exc)
        labels = [record.actual_y for _, record in good]
        correct = 0
        started = time.perf_counter()
        pos = 0
        while pos < len(good):
            chunk = good[pos:pos + self.predict_chunk()]
            with self._lock:
                predicted = self.learner.learn_many([r.x for _, r in chunk],
                                                    [r.actual_y for _, r in chunk])
                for _, record in chunk:
                    self._note_feedback(record)
                self._dirty = True
            for (i, record), pred in zip(chunk, predicted):
                outputs[i] = encode_prediction(record, pred)
                correct += pred == record.actual_y
            pos += len(chunk)
        if good:
            self.last_train_us = int((time.perf_counter() - started) * 1e6 / len(good))
        if self._thread is None:
            self.maybe_backup()
        return outputs, labels, correct

    # -- backups -------------------------------------------------------------------------------
    def maybe_backup(self, force: bool = False) -> bool:
        """Back up when the interval has passed (and the model changed since the last backup).

        Failures never raise: they are counted, logged and retried with exponential backoff,
        so a Redis outage does not stop training.
        """
        now = self.clock()
        if not self._dirty or (not force and now < self._next_backup_at):
            return False
        with self._lock:
            blob = dumps(self.learner.model)
            snapshot = self.snapshot()
            self._dirty = False
        try:
            meta = self.store.save_blob(blob, snapshot, snapshot=snapshot)
        except Exception as exc:
            self._dirty = True
            self.backups_failed += 1
            self._failures_in_row += 1
            delay = min(self.settings.backup_interval_seconds * 2 ** (self._failures_in_row - 1),
                        MAX_BACKUP_BACKOFF_SECONDS)
            self._next_backup_at = now + delay
            log.error("model backup failed (%s); retrying in %.0f s", exc, delay)
            return False
        self.backups_succeeded += 1
        self._failures_in_row = 0
        self.model_version = int(meta["version"])
        self._last_backup_ok_at = now
        self._next_backup_at = now + self.settings.backup_interval_seconds
        log.info("backed up model version %s (%s samples)", self.model_version,
                 self.learner.samples_seen)
        return True

    def close(self) -> None:
        """Last backup on a clean stop, so a cancelled job loses nothing it learned."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.maybe_backup(force=True)

    # -- what the job exposes --------------------------------------------------------------------
    def gauges(self) -> dict[str, Callable[[], int]]:
        """Integer gauges (PyFlink gauges are ints): accuracies in per mille, times in s / us."""
        return {
            "accuracy_permille": lambda: int(round(self.learner.accuracy * 1000)),
            "rolling_accuracy_permille": lambda: int(round(self.learner.rolling_accuracy * 1000)),
            "model_version": lambda: int(self.model_version),
            "backups_succeeded": lambda: int(self.backups_succeeded),
            "backups_failed": lambda: int(self.backups_failed),
            "records_rejected": lambda: int(self.records_rejected),
            "seconds_since_backup": lambda: int(self.clock() - self._last_backup_ok_at),
            "train_time_us": lambda: int(self.last_train_us),  # per record
        }
