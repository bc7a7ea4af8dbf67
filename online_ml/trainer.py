"""The training loop of the job, without Flink: decode, predict-then-learn, count, alert, back up.

stream.py wraps a :class:`Trainer` in a PyFlink UDF and maps :meth:`Trainer.gauges` onto Flink
metrics. Keeping the loop here means it is tested with plain pytest against a real Redis, and the
job stays a thin adapter.

What the job must survive, and how:

* **Bad records** never raise: each is counted (in total and per reason), not trained on, and
  turned into a dead-letter output for ``DEAD_LETTER_TOPIC`` (online_ml/side_outputs.py).
* **Redis down while running**: training goes on in memory; backups fail, are counted and retried
  with exponential backoff; the first one after Redis is back succeeds with the next version.
* **Redis down when the job starts**: loading is retried for ``REDIS_LOAD_RETRY_SECONDS``; then a
  new model is trained, but the store's state is *unknown*: before its first backup the trainer
  looks at what is stored, and if that model has seen more samples it adopts it instead of
  overwriting it (a few minutes of blind training must not replace days of learning).
* **Corrupt stored model**: reported, and a new model is trained (later backups supersede it; the
  kept older versions stay available for ``redis_clear.py --rollback``).
"""
from __future__ import annotations

import gc
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from online_ml.alerts import AccuracyAlarm, AlertEvent
from online_ml.backups import Backups, meta_count
from online_ml.batch_codec import Batch, decode_many, encode_predictions, hits
from online_ml.blas import limit_threads as limit_blas_threads
from online_ml.config import Settings
from online_ml.learner import OnlineLearner, make_model, predict_chunk
from online_ml.model_store import ModelFormatError, ModelStore, StoredModel
from online_ml.schema import BadRecord, Record, decode_record, encode_prediction
from online_ml.side_outputs import dead_letter
from online_ml.sync import counters_as_meta, feedback_share, iter_counters
from online_ml.sync_protocol import Synchronizer

log = logging.getLogger(__name__)

RECENT_FEEDBACK_IDS = 100

Output = tuple[str, str]  # (topic, value)


@contextmanager
def paused_gc() -> Iterator[None]:
    """No garbage collection inside: a batch allocates tens of thousands of small objects that
    live until it ends and form no cycles, and the collections they trigger walk every object of
    the worker again and again (``python bench/batch_cost.py`` times batch mode's path with the
    collector on and paused)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Trainer(Backups):
    """Owns the learner, its backups, the alarm and the counters the job exposes as metrics."""

    def __init__(self, settings: Settings, store: ModelStore | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, learners: int = 1):
        """``learners``: how many learners the job runs (its parallelism); with more than one,
        this one first waits for the others (:meth:`Synchronizer.meet`, at most
        ``LEARNER_TIMEOUT_SECONDS``), so all start together from the same stored model."""
        self.settings = settings
        limit_blas_threads(settings.blas_threads)  # online_ml/blas.py: halves a batch's CPU
        self.clock = clock
        self._sleep = sleep
        self.store = store if store is not None else ModelStore(
            settings.redis_client(), settings.model_key, keep=settings.model_versions_kept)
        self.alarm = AccuracyAlarm(settings.alert_threshold, settings.alert_window,
                                   settings.alert_warmup, settings.alert_hysteresis)
        self.backups_succeeded = 0
        self.backups_failed = 0
        self.models_adopted = 0
        self.last_train_us = 0
        # learning and serialising the model must not interleave: the backup thread takes a copy
        # of the model's bytes under this lock, then talks to Redis without it
        self._lock = threading.Lock()
        self._backup_lock = threading.Lock()  # one backup at a time (timer thread vs close())
        # parallel learners meet in Redis (online_ml/sync_protocol.py); alone, a sync round is
        # just the backup: the merged model is ours
        self.sync = Synchronizer(self.store, settings.sync_every_records,
                                 settings.sync_interval_seconds, settings.learner_timeout_seconds,
                                 solo_interval=settings.backup_interval_seconds, clock=clock,
                                 merge_step=settings.sync_merge_step)
        self._new_feedback_ids: deque[str] = deque(maxlen=RECENT_FEEDBACK_IDS)
        self._published_round = 0
        if learners > 1 and settings.sync != "off":
            self.sync.meet(learners, settings.learner_timeout_seconds, sleep)
        stored, self._store_known = self._load_stored()
        self._use(stored)
        self.sync.start_from(self.learner.model, self.counters(), self._loaded_round)
        self._dirty = False
        self._last_backup_at = self.clock()
        self._last_backup_ok_at = self._last_backup_at
        self._next_backup_at = self._last_backup_at + settings.backup_interval_seconds
        self._failures_in_row = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- start ---------------------------------------------------------------------------------
    def _load_stored(self) -> tuple[StoredModel | None, bool]:
        """``(newest stored model or None, whether the store's state is known)``.

        Unreachable Redis is retried for ``redis_load_retry_seconds``; after that the state is
        unknown and the first backup checks what is stored before writing (see the module doc).
        """
        deadline = self.clock() + max(0.0, self.settings.redis_load_retry_seconds)
        delay = 0.5
        self._loaded_round = 0
        while True:
            try:
                merged = self.sync.remote.load_global()  # newer than the served model
                if merged is not None:
                    model, meta, self._loaded_round = merged
                    served = self.store.load_meta() or {}
                    restored = dict(counters_as_meta(meta.get("counters", {})),
                                    recent_feedback_ids=meta.get("recent_feedback_ids", []),
                                    alerts_fired=served.get("alerts_fired", 0),
                                    alert_active=served.get("alert_active", False),
                                    version=served.get("version", 0))
                    return StoredModel(model, restored), True
                return self.store.load(), True
            except ModelFormatError as exc:
                log.error("stored model under %r is unusable, starting a new one: %s",
                          self.settings.model_key, exc)
                return None, True
            except Exception as exc:  # Redis down, wrong password, timeouts, ...
                remaining = deadline - self.clock()
                if remaining <= 0:
                    log.error("could not load the model from Redis (%s); training a new one in "
                              "memory. It will not overwrite a stored model that has seen more "
                              "samples: that one is adopted once Redis answers", exc)
                    return None, False
                log.warning("could not reach Redis to load the model (%s); retrying for %.0f s",
                            exc, remaining)
                self._sleep(min(delay, remaining))
                delay = min(delay * 2, 5.0)

    def _new_learner(self) -> OnlineLearner:
        return OnlineLearner(make_model(self.settings.learner, **self.settings.learner_kwargs()))

    def _use(self, stored: StoredModel | None) -> None:
        """Take over a stored model (or a new one) with the counters its metadata carries."""
        meta = stored.meta if stored is not None else {}
        if stored is None:
            log.info("no usable model in Redis under %r: creating a new one",
                     self.settings.model_key)
            self.learner = self._new_learner()
        else:
            log.info("loaded model version %s (%s samples seen)", stored.version,
                     meta.get("samples_seen"))
            self.learner = OnlineLearner.from_stored(stored.model, meta)
        self.model_version = stored.version if stored is not None else 0
        # feedback from the drawing board: the page waits for a model that includes its record
        self.feedback_seen = meta_count(meta, "feedback_seen")
        recent = meta.get("recent_feedback_ids")
        self.recent_feedback_ids: deque[str] = deque(
            (i for i in recent if isinstance(i, str)) if isinstance(recent, list) else (),
            maxlen=RECENT_FEEDBACK_IDS)
        # counters that continue from the backup, like sample_count
        self.records_rejected = meta_count(meta, "records_rejected")
        by_reason = meta.get("rejected_by_reason")
        self.rejected_by_reason: Counter[str] = Counter(
            {str(k): meta_count(by_reason, k) for k in by_reason} if isinstance(by_reason, dict)
            else {})
        self.alarm.fired = max(self.alarm.fired, meta_count(meta, "alerts_fired"))
        # an incident open when the model was backed up is still open: a restart in the middle
        # of it must not raise a second accuracy_drop (it ends with one "recovered")
        self.alarm.active = self.alarm.active or meta.get("alert_active") is True

    # -- what the synchroniser sees of us (online_ml.sync_protocol.Local) ----------------------
    def locked(self) -> threading.Lock:
        return self._lock

    def current_model(self):
        return self.learner.model

    def classes(self) -> list[int]:
        return [int(c) for c in self.learner.classes]

    def counters(self) -> dict[str, int]:
        """The additive counters (samples, correct, labels, rejected, feedback), flat."""
        return dict(iter_counters({
            "samples_seen": self.learner.samples_seen, "correct": self.learner.correct,
            "evaluated": self.learner.accuracy_metric.n, "feedback_seen": self.feedback_seen,
            "records_rejected": self.records_rejected,
            "label_distribution": self.learner.labels.get(),
            "rejected_by_reason": self.rejected_by_reason}))

    def set_counters(self, counters: dict[str, int]) -> None:
        meta = counters_as_meta(counters)
        self.learner.set_counts(meta.get("samples_seen", 0), meta.get("evaluated", 0),
                                meta.get("correct", 0),
                                {int(k): v for k, v in meta["label_distribution"].items()})
        self.feedback_seen = int(meta.get("feedback_seen", 0))
        self.records_rejected = int(meta.get("records_rejected", 0))
        self.rejected_by_reason = Counter(meta["rejected_by_reason"])

    def take_feedback_ids(self) -> list[str]:
        with self._lock:  # the UDF's thread appends while the backup thread takes
            ids = list(self._new_feedback_ids)
            self._new_feedback_ids.clear()
        return ids

    def give_back_feedback_ids(self, ids: list[str]) -> None:
        """Ids taken for a contribution that was refused: they go with the next one."""
        with self._lock:
            self._new_feedback_ids = deque([*ids, *self._new_feedback_ids],
                                           maxlen=RECENT_FEEDBACK_IDS)

    def recent_feedback(self) -> list[str]:
        return list(self.recent_feedback_ids)

    def set_recent_feedback(self, ids: list[str]) -> None:
        mine = [i for i in self._new_feedback_ids if i not in ids]
        self.recent_feedback_ids = deque([*ids, *mine], maxlen=RECENT_FEEDBACK_IDS)

    def adopt_model(self, model) -> None:
        self.learner.model = model

    # -- per record ----------------------------------------------------------------------------
    def _reject(self, value, exc: BadRecord) -> Output:
        self.records_rejected += 1
        self.rejected_by_reason[exc.reason] += 1
        n = self.rejected_by_reason[exc.reason]
        if n <= 10 or n % 1000 == 0:  # a flood of garbage must not flood the log too
            log.warning("rejected record #%d of kind %s: %s", n, exc.reason, exc)
        return self.settings.dead_letter_topic, dead_letter(value, exc)

    def _alert(self, event: AlertEvent) -> str:
        (log.warning if event.kind == "accuracy_drop" else log.info)("%s", event.message())
        return event.to_json(model_key=self.settings.model_key)

    def _decode(self, value: str | bytes | None) -> Record | Output:
        """The record, or (a bad one) its dead letter."""
        try:
            return decode_record(value if value is not None else b"")
        except BadRecord as exc:
            return self._reject(value, exc)

    def _learned(self, record: Record, predicted: int | None, seen: int,
                 outputs: list[Output]) -> bool:
        """The step after learning one record in row mode (under the lock; batch mode's is
        :meth:`_learned_many`): its feedback id, its prediction for ``SINK_TOPIC``, the alarm
        (``seen``: samples after it) and the alert it may raise. Returns whether the prediction
        was right."""
        if record.source == "feedback":
            self._note_feedback(record.id)
        outputs.append((self.settings.sink_topic, encode_prediction(record, predicted)))
        hit = predicted == record.actual_y
        event = self.alarm.update(hit, seen)
        if event is not None:
            outputs.append((self.settings.alert_topic, self._alert(event)))
        return hit

    def _after_learning(self, records: int, started: float) -> None:
        """Count what was learned (under the lock; :meth:`_maybe_sync` follows outside it)."""
        self._dirty = True
        self.sync.learned(records)
        self.last_train_us = int((time.perf_counter() - started) * 1e6 / max(1, records))

    def _maybe_sync(self) -> None:
        """Back up or sync when due; with other learners, tick so the heartbeat stays fresh."""
        if self._thread is None or self.sync.due() or self.sync.live > 1:
            self.maybe_backup()

    def process(self, value: str | bytes | None) -> tuple[list[Output], int | None, int | None]:
        """Handle one raw Kafka value (row mode).

        Returns ``(outputs, actual_y, predict_y)``. ``outputs`` holds ``(topic, value)`` pairs:
        the prediction for ``SINK_TOPIC`` (or, for a bad record, its dead letter for
        ``DEAD_LETTER_TOPIC``, and then ``actual_y`` is None), followed by an alert for
        ``ALERT_TOPIC`` when this record starts or ends an incident.
        """
        record = self._decode(value)
        if not isinstance(record, Record):
            return [record], None, None
        outputs: list[Output] = []
        started = time.perf_counter()
        with self._lock:
            predicted = self.learner.learn_one(
                record.x, record.actual_y,
                served=self._feedback_share() if record.source == "feedback" else 0.0)
            self._learned(record, predicted, self.learner.samples_seen, outputs)
            self._after_learning(1, started)
        self._maybe_sync()
        return outputs, record.actual_y, predicted

    def _note_feedback(self, feedback_id: str | None) -> None:
        """A record from the board's feedback (``source`` "feedback") was learned."""
        self.feedback_seen += 1
        if feedback_id is not None:
            self.recent_feedback_ids.append(feedback_id)
            self._new_feedback_ids.append(feedback_id)

    def snapshot(self) -> dict:
        """The learner's snapshot plus what the job adds, stored as model metadata."""
        snap = self.learner.snapshot()
        snap["feedback_seen"] = self.feedback_seen
        snap["recent_feedback_ids"] = list(self.recent_feedback_ids)
        snap["records_rejected"] = self.records_rejected
        snap["rejected_by_reason"] = dict(sorted(self.rejected_by_reason.items()))
        snap["alerts_fired"] = self.alarm.fired
        snap["alert_active"] = self.alarm.active
        return snap

    def predict_chunk(self) -> int:
        """How many records batch mode predicts before learning them (learner.predict_chunk);
        with other learners live, at most SYNC_EVERY_RECORDS: a chunk is the unit of a sync
        round, and ``samples_seen`` counts everybody's records, so the chunks of N learners
        grew N times faster (up to MAX_PREDICT_CHUNK records learned apart between merges)."""
        n = predict_chunk(self.learner.samples_seen, self.settings.max_predict_chunk)
        if self.sync.live > 1 and self.settings.sync != "off":
            n = min(n, self.settings.sync_every_records)
        return n

    def process_many(self, values: Iterable) -> tuple[list[list[Output]], list[int], int]:
        """Batch mode: handle many raw values in order, learning them in chunks
        (:meth:`predict_chunk`: each chunk is predicted with one model, then learned).

        Returns ``(outputs, labels_trained, n_correct)``; ``outputs[i]`` are the ``(topic,
        value)`` pairs for ``values[i]``, as :meth:`process` returns them. The values are decoded
        and checked as one array (``batch_codec.decode_many``), and the metrics and the alarm are
        updated once per chunk: the same outputs as :meth:`process` on the same model.
        """
        with paused_gc():
            return self._process_many(list(values))

    def _process_many(self, values: list) -> tuple[list[list[Output]], list[int], int]:
        batch = decode_many(values)
        outputs: list[list[Output]] = [[] for _ in values]
        for i, exc in batch.rejected:
            outputs[i].append(self._reject(values[i], exc))
        correct = 0
        pos = 0
        while pos < len(batch):
            end = min(len(batch), pos + self.predict_chunk())
            started = time.perf_counter()
            with self._lock:
                predicted = self.learner.learn_many(batch.X[pos:end], batch.y[pos:end],
                                                    served=self._served_steps(batch, pos, end))
                first_seen = self.learner.samples_seen - (end - pos) + 1
                correct += self._learned_many(batch, pos, end, predicted, first_seen, outputs)
                self._after_learning(end - pos, started)
            pos = end
            # with others, a chunk is the unit of a sync round: merging once per Arrow batch
            # (up to BATCH_SIZE records per learner) left the learners apart (issue 11)
            if pos < len(batch) and self.settings.sync != "off":
                try:
                    self.sync.look_around(force=True)
                except Exception as exc:  # Redis down: the backup counts it
                    log.debug("heartbeat failed: %s", exc)
            if self.sync.live > 1 or pos >= len(batch):
                self._maybe_sync()
        if not len(batch):
            self._maybe_sync()
        return outputs, batch.y.tolist(), correct

    def _feedback_share(self) -> float:
        """The share of a feedback record's step that goes straight into the averaged weights:
        FEEDBACK_STEP_SHARE, scaled up with other live learners so that this share of it
        reaches the merged, served model (``sync.feedback_share``)."""
        share = self.settings.feedback_step_share
        if self.settings.sync == "off" or self.sync.live <= 1:
            return share
        return feedback_share(share, self.sync.live, self.settings.sync_merge_step)

    def _served_steps(self, batch: Batch, start: int, end: int) -> list[float] | None:
        """The share of each record's step of ``start:end`` that goes straight into the served
        weights: ``_feedback_share`` for feedback, 0 for the rest; None when all are 0."""
        if not self.settings.feedback_step_share or "feedback" not in batch.source[start:end]:
            return None
        share = self._feedback_share()
        return [share if source == "feedback" else 0.0 for source in batch.source[start:end]]

    def _learned_many(self, batch: Batch, start: int, end: int, predicted: list[int | None],
                      first_seen: int, outputs: list[list[Output]]) -> int:
        """:meth:`_learned` for the good records ``start:end`` of ``batch`` (under the lock);
        ``first_seen``: samples after the first of them. Returns how many predictions were
        right."""
        sink = self.settings.sink_topic
        index = batch.index
        for j, text in zip(range(start, end), encode_predictions(batch, start, end, predicted)):
            outputs[index[j]].append((sink, text))
        for j in range(start, end):
            if batch.source[j] == "feedback":
                self._note_feedback(batch.id[j])
        right = hits(batch.y[start:end], predicted)
        for at, event in self.alarm.update_many(right, first_seen):
            outputs[index[start + at]].append((self.settings.alert_topic, self._alert(event)))
        return int(right.sum())

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
            "alert_active": lambda: int(self.alarm.active),
            "alerts_fired": lambda: int(self.alarm.fired),
            **self.sync.gauges(),
        }
