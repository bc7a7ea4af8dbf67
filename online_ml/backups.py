"""The trainer's backups: when the model goes to Redis, what a failure costs, and the clean stop.

A mixin of :class:`online_ml.trainer.Trainer` (which owns the state it uses, declared below), kept
apart so the per-record loop and the backup policy each fit in one screen:

* every ``BACKUP_INTERVAL_SECONDS`` (from the records' thread or the timer thread) a changed model
  is backed up; with other learners the backup is a sync round (online_ml/sync_protocol.py) and
  only the lease holder publishes the served version, fenced by the lease;
* a failed backup never raises: it is counted, logged and retried with exponential backoff
  (at most ``MAX_BACKUP_BACKOFF_SECONDS``), so a Redis outage does not stop training;
* after a blind start (Redis unreachable when the job started) the first backup looks at what is
  stored and adopts it if it has seen more samples;
* on a clean stop the last backup is forced, and a learner hands over what it learned.
"""
from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import cast

from online_ml.config import Settings
from online_ml.learner import OnlineLearner
from online_ml.model_store import ModelFormatError, ModelStore, StoredModel, dumps
from online_ml.sync import counters_as_meta
from online_ml.sync_protocol import Local, Synchronizer

log = logging.getLogger("online_ml.trainer")

MAX_BACKUP_BACKOFF_SECONDS = 60.0
BACKOFF_CAP_INTERVALS = 6  # a failing backup is retried at least every 6 intervals (max 60 s)


def meta_count(meta: dict, key: str) -> int:
    """A counter from model metadata: a non-negative int, 0 when missing or garbage."""
    try:
        return max(0, int(meta.get(key) or 0))
    except (TypeError, ValueError):
        return 0


class Backups:
    """Backup policy of a Trainer (see the module doc)."""

    # the Trainer's state this uses (set in Trainer.__init__)
    settings: Settings
    store: ModelStore
    sync: Synchronizer
    learner: OnlineLearner
    clock: Callable[[], float]
    _lock: threading.Lock
    _backup_lock: threading.Lock
    _stop: threading.Event
    _thread: threading.Thread | None
    _dirty: bool
    _store_known: bool
    _failures_in_row: int
    _next_backup_at: float
    _last_backup_ok_at: float
    _published_round: int
    backups_succeeded: int
    backups_failed: int
    models_adopted: int
    model_version: int
    records_rejected: int
    rejected_by_reason: Counter[str]

    def snapshot(self) -> dict:
        raise NotImplementedError  # Trainer's

    def _use(self, stored: StoredModel | None) -> None:
        raise NotImplementedError  # Trainer's

    def start_background_backups(self) -> None:
        """Back up on a timer too, so a model is saved even when records stop arriving."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._backup_loop, name="model-backup",
                                            daemon=True)
            self._thread.start()

    def _backup_loop(self) -> None:
        while not self._stop.wait(min(1.0, self.settings.backup_interval_seconds / 4)):
            try:
                self.maybe_backup()
            except Exception:  # never let the timer die: the next tick tries again
                log.exception("unexpected error in the backup thread")

    def _defer_to_stored(self) -> bool:
        """After a blind start: adopt the stored model if it has seen more samples than ours.

        Returns True when it was adopted (then there is nothing new to back up). Raises when
        Redis is still unreachable, which counts as a failed backup.
        """
        meta = self.store.load_meta()
        stored_seen = meta_count(meta or {}, "samples_seen")
        if meta is None or stored_seen <= self.learner.samples_seen:
            self._store_known = True
            return False
        try:
            stored = self.store.load()
        except ModelFormatError as exc:
            log.error("stored model is unusable (%s); backing up ours over it", exc)
            self._store_known = True
            return False
        if stored is None:
            self._store_known = True
            return False
        with self._lock:
            ours = self.learner.samples_seen
            rejected, by_reason = self.records_rejected, self.rejected_by_reason
            self._use(stored)
            # what was rejected while Redis was down was rejected all the same: keep counting
            self.records_rejected += rejected
            self.rejected_by_reason.update(by_reason)
            self._dirty = False
        self._store_known = True
        self.models_adopted += 1
        log.warning("Redis is back: the stored model version %s has seen %s samples, more than the "
                    "%s this job learned while Redis was unreachable; continuing from it instead "
                    "of overwriting it", stored.version, stored_seen, ours)
        return True

    def maybe_backup(self, force: bool = False) -> bool:
        """Back up when the interval has passed (and the model changed since the last backup).

        Failures never raise: they are counted, logged and retried with exponential backoff,
        so a Redis outage does not stop training.
        """
        now = self.clock()
        try:
            if self.settings.sync != "off":
                self.sync.look_around()
        except Exception as exc:  # Redis down: the backup below fails and counts it
            log.debug("heartbeat failed: %s", exc)
        # forced with other learners around: a sync round now (merge what they handed over)
        sync_due = self.sync.due() or (force and self.settings.sync != "off"
                                       and self.sync.live > 1)
        if not sync_due and (not self._dirty or (not force and now < self._next_backup_at)):
            return False
        if not (self._backup_lock.acquire(timeout=10) if force
                else self._backup_lock.acquire(blocking=False)):
            return False
        try:
            return self._backup(now, force)
        finally:
            self._backup_lock.release()

    def _backup(self, now: float, force: bool = False) -> bool:
        interval = self.settings.backup_interval_seconds
        try:
            if not self._store_known and self._defer_to_stored():
                self._failures_in_row = 0
                self._next_backup_at = now + interval
                return False
            self._dirty = False
            if self.settings.sync == "off":
                meta, snapshot = self._publish_own()
                return self._backed_up(now, meta, snapshot)
            self.sync.tick(cast(Local, self))
            if self.sync.pending_records > 0:
                # learning not handed over (our last contribution is still pending, or the merge
                # was not committed): tick again later even if nothing new is learned by then
                self._dirty = True
            merged = self.sync.last_merge
            lease = self.sync.lease
            if (lease is None or merged is None or merged.round <= self._published_round
                    or (now < self._next_backup_at and not force)):
                if now >= self._next_backup_at:
                    self._next_backup_at = now + interval
                self._failures_in_row = 0
                return False  # merged (or contributed) only; the publisher publishes
            with self._lock:
                snapshot = self.snapshot()
            snapshot.update(counters_as_meta(merged.meta["counters"]),
                            recent_feedback_ids=merged.meta["recent_feedback_ids"],
                            learners=merged.meta["learners"],
                            contributors=merged.meta["contributors"], sync_round=merged.round)
            snapshot["accuracy"] = (snapshot["correct"] / snapshot["evaluated"]
                                    if snapshot.get("evaluated") else 0.0)
            meta = self.store.save_blob(merged.blob, snapshot, snapshot=snapshot,
                                        fence=(self.sync.remote.k_lease, lease))
            self._published_round = merged.round
            return self._backed_up(now, meta, snapshot)
        except Exception as exc:
            self._dirty = True
            self.backups_failed += 1
            self._failures_in_row += 1
            delay = min(interval * 2 ** min(self._failures_in_row - 1, 30),
                        max(interval, min(MAX_BACKUP_BACKOFF_SECONDS,
                                          interval * BACKOFF_CAP_INTERVALS)))
            self._next_backup_at = now + delay
            log.error("model backup failed (%s: %s); retrying in %.0f s (%d failed in a row)",
                      type(exc).__name__, exc, delay, self._failures_in_row)
            return False

    def _publish_own(self) -> tuple[dict, dict]:
        """SYNC=off: back up this learner's own model, as each of N independent learners would
        (the benchmarks' baseline that shows what goes wrong without merging)."""
        with self._lock:
            blob = dumps(self.learner.model)
            snapshot = self.snapshot()
        return self.store.save_blob(blob, snapshot, snapshot=snapshot), snapshot

    def _backed_up(self, now: float, meta: dict, snapshot: dict) -> bool:
        interval = self.settings.backup_interval_seconds
        if self._failures_in_row:
            log.warning("model backups work again after %d failures", self._failures_in_row)
        self.backups_succeeded += 1
        self._failures_in_row = 0
        self.model_version = int(meta["version"])
        self._last_backup_ok_at = now
        self._next_backup_at = now + interval
        log.info("backed up model version %s (%s samples)", self.model_version,
                 snapshot.get("samples_seen"))
        return True

    def close(self) -> None:
        """Last backup on a clean stop, so a cancelled job loses nothing it learned."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.settings.sync != "off":
            self._dirty = True  # tick once more whatever the timers say: hand over or merge
        self.maybe_backup(force=True)
        if self.settings.sync != "off" and not self.sync.is_publisher:
            # the learners of a cancelled job stop together: each hands over what it learned
            # and waits until it is merged, by the publisher or, once that one has left, by
            # itself (the last one takes the lease and publishes the final model)
            try:
                self.sync.flush(cast(Local, self))
            except Exception as exc:  # Redis down: what was not merged is lost, say so
                log.error("could not hand over the last contributions: %s", exc)
            if self.sync.is_publisher:
                self._dirty = True
                self.maybe_backup(force=True)
        self.sync.leave()
