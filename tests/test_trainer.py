"""The job's training loop (online_ml/trainer.py) against a real Redis.

Backups, outages and corrupt blobs use the shared Redis (db 1, a model key of their own) or, for
anything that stops Redis, a private redis-server started by the test. Time is a fake clock, so
"every 10 s" and the backoff are checked exactly and instantly.
"""
from __future__ import annotations

import dataclasses
import json
import uuid

import pytest

from online_ml.config import Settings
from online_ml.harness.records import BAD, good_records, shifted
from online_ml.harness.redis_server import PrivateRedis
from online_ml.harness.waiting import wait_for
from online_ml.learner import OnlineLearner, make_model
from online_ml.model_store import ModelStore
from online_ml.schema import REASONS
from online_ml.side_outputs import MAX_RAW_CHARS
from online_ml.trainer import Trainer

pytestmark = pytest.mark.integration

GOOD = list(good_records())


class FakeClock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def run(trainer: Trainer, values, mode: str) -> list[list[tuple[str, str]]]:
    """Outputs per value, through process (row) or process_many in batches of 100 (batch)."""
    if mode == "row":
        return [trainer.process(v)[0] for v in values]
    out = []
    for i in range(0, len(values), 100):
        out += trainer.process_many(values[i:i + 100])[0]
    return out


@pytest.fixture
def private_redis():
    with PrivateRedis() as server:
        yield server


def private_settings(server: PrivateRedis, **overrides) -> Settings:
    return dataclasses.replace(
        Settings(), redis_port=server.port, redis_password=server.password, redis_db=1,
        model_key=f"test_model_{uuid.uuid4().hex[:8]}", **overrides)


def test_predicts_before_learning(settings, redis_client):
    trainer = Trainer(settings)
    outputs, actual, predicted = trainer.process(GOOD[0])
    assert predicted is None  # nothing learned yet: no prediction, and not the label itself
    [(topic, value)] = outputs
    assert topic == settings.sink_topic
    sink = json.loads(value)
    assert sink["predict_y"] is None and sink["actual_y"] == actual
    assert trainer.learner.samples_seen == 1
    # the same image again: now predicted by a model that has learned it once
    _, _, predicted = trainer.process(GOOD[0])
    assert predicted is not None and trainer.learner.samples_seen == 2


def test_the_job_keeps_numpy_blas_to_one_thread(settings, redis_client):
    """The job's Python worker learns with one BLAS thread (BLAS_THREADS, online_ml/blas.py): on
    every core OpenBLAS's spinning threads took 2.4x the CPU a record in batch mode and the JVMs'
    share of the cores (bench/throughput.py, variants batch-blas). 0 leaves BLAS as it is."""
    from threadpoolctl import threadpool_limits

    from online_ml.blas import threads as blas_threads

    with threadpool_limits(limits=2, user_api="blas"):  # and back to what the test found
        Trainer(dataclasses.replace(settings, blas_threads=0)).close()
        assert blas_threads() == {2}
        Trainer(settings).close()
        assert blas_threads() == {1}


@pytest.mark.parametrize("mode", ["row", "batch"])
def test_backups_every_interval_with_increasing_versions(mode, settings, redis_client):
    clock = FakeClock()
    trainer = Trainer(dataclasses.replace(settings, backup_interval_seconds=10), clock=clock)
    store = ModelStore(redis_client, settings.model_key)
    versions = []
    for step in range(3):
        run(trainer, GOOD[step * 100:(step + 1) * 100], mode)
        clock.t += 9.9
        assert trainer.maybe_backup() is False  # not yet
        clock.t += 0.1
        assert trainer.maybe_backup() is True
        versions.append(store.load_meta()["version"])
        assert store.load_meta()["samples_seen"] == (step + 1) * 100
    assert versions == [1, 2, 3] and trainer.model_version == 3
    clock.t += 10
    assert trainer.maybe_backup() is False  # nothing learned since: nothing to save
    assert trainer.backups_succeeded == 3 and trainer.backups_failed == 0
    # a restarted trainer continues from the newest backup
    again = Trainer(settings)
    assert again.learner.samples_seen == 300 and again.model_version == 3


@pytest.mark.parametrize("mode", ["row", "batch"])
@pytest.mark.parametrize("share", [Settings().feedback_step_share, 0.0])
def test_a_correction_from_the_board_shows_in_the_next_answers(mode, share, settings, redis_client):
    """FEEDBACK_STEP_SHARE (the default): after 1,000 records, the first later drawing the
    model reads wrong, sent as feedback with its label, is read right within three corrections
    (part of the step goes straight into the averaged weights the softmax learner predicts
    with); 0, an ordinary step, leaves the weights' answer as it was (README "Teaching it":
    checked without the memory of records, whose remembered correction votes whatever the
    share)."""
    from online_ml.schema import encode_record

    assert Settings().feedback_step_share > 0
    changes: dict = {"feedback_step_share": share}
    if not share:
        changes["learner_params"] = '{"neighbours": 0}'
    trainer = Trainer(dataclasses.replace(settings, **changes))
    run(trainer, GOOD[:1000], mode)
    record = next(r for r in map(json.loads, GOOD[1000:])
                  if trainer.learner.model.predict([r["x"]])[0] != r["actual_y"])
    x = [record["x"]]
    wrong, taught = int(trainer.learner.model.predict(x)[0]), record["actual_y"]
    answers = []
    for k in range(3):
        value = encode_record(record["x"], taught, source="feedback", id=f"fb-{k}")
        run(trainer, [value], mode)
        answers.append(int(trainer.learner.model.predict(x)[0]))
    assert trainer.feedback_seen == 3
    if share:
        assert answers[-1] == taught, answers
    else:
        assert answers == [wrong] * 3, answers


@pytest.mark.parametrize("merge_step, factor", [("sqrt", 2.0), ("mean", 4.0)])
def test_a_correction_is_scaled_up_for_the_merge_with_live_learners(merge_step, factor, settings,
                                                                    redis_client):
    """With 4 live learners the merge passes on 1/2 (sqrt) or 1/4 (mean) of one learner's step,
    so the learner that gets a correction puts 2x or 4x FEEDBACK_STEP_SHARE into its averaged
    weights (bench/teaching.py: then a correction shows as often as with one learner); alone,
    or with SYNC=off, the share as set."""
    share = Settings().feedback_step_share
    trainer = Trainer(dataclasses.replace(settings, sync_merge_step=merge_step))
    assert trainer._feedback_share() == share
    trainer.sync.live = 4
    assert trainer._feedback_share() == pytest.approx(factor * share)
    independent = Trainer(dataclasses.replace(settings, sync="off"))
    independent.sync.live = 4
    assert independent._feedback_share() == share


@pytest.mark.parametrize("mode", ["row", "batch"])
def test_bad_records_are_dead_lettered_not_trained(mode, settings, redis_client):
    trainer = Trainer(settings)
    values = []
    for i, (_, bad) in enumerate(BAD):  # interleaved with good ones
        values += [GOOD[i], bad]
    outputs = run(trainer, values, mode)
    assert trainer.learner.samples_seen == len(BAD)
    assert trainer.records_rejected == len(BAD)
    for (reason, bad), outs in zip(BAD, outputs[1::2]):
        [(topic, value)] = outs
        assert topic == settings.dead_letter_topic
        letter = json.loads(value)
        assert letter["reason"] == reason, (bad, letter)
        assert letter["error"] and letter["ts"]
        raw = bad.decode("utf-8", "replace") if isinstance(bad, bytes) else (bad or "")
        assert letter["raw"] == raw
    for outs in outputs[0::2]:
        assert [t for t, _ in outs] == [settings.sink_topic]
    counts = {}
    for reason, _ in BAD:
        counts[reason] = counts.get(reason, 0) + 1
    assert set(counts) == set(REASONS)  # every kind of bad record is covered
    assert trainer.snapshot()["rejected_by_reason"] == counts
    assert trainer.gauges()["records_rejected"]() == len(BAD)


def test_dead_letter_raw_is_truncated(settings, redis_client):
    trainer = Trainer(settings)
    [(_, value)], _, _ = trainer.process("x" * 100_000)
    letter = json.loads(value)
    assert letter["reason"] == "malformed_json"
    assert len(letter["raw"]) == MAX_RAW_CHARS and letter["raw_length"] == 100_000


def test_rejected_counts_continue_after_restart(settings, redis_client):
    trainer = Trainer(settings)
    run(trainer, [GOOD[0], "nope", "[]"], "row")
    trainer.maybe_backup(force=True)
    again = Trainer(settings)
    assert again.records_rejected == 2
    assert again.snapshot()["rejected_by_reason"] == {"malformed_json": 1, "not_an_object": 1}


@pytest.mark.parametrize("mode", ["row", "batch"])
def test_one_alert_per_accuracy_drop_then_recovery(mode, settings, redis_client):
    trainer = Trainer(dataclasses.replace(settings, alert_threshold=0.5, alert_window=50,
                                          alert_warmup=300, alert_hysteresis=0.1))
    values = GOOD[:600] + [shifted(v) for v in GOOD[600:700]] + GOOD[700:1200]
    outputs = run(trainer, values, mode)
    alerts = [(i, json.loads(v)) for i, outs in enumerate(outputs)
              for t, v in outs if t == settings.alert_topic]
    assert [a["kind"] for _, a in alerts] == ["accuracy_drop", "recovered"], alerts
    (i_drop, drop), (i_up, up) = alerts
    assert 600 <= i_drop < 700 < i_up  # raised during the wrong labels, cleared after
    assert drop["rolling_accuracy"] < 0.5 and drop["threshold"] == 0.5
    assert up["rolling_accuracy"] >= 0.6
    assert drop["samples_seen"] == i_drop + 1 and drop["window"] == 50 and drop["ts"]
    # each alert rides along with the prediction of the record that triggered it
    assert [t for t, _ in outputs[i_drop]] == [settings.sink_topic, settings.alert_topic]
    gauges = trainer.gauges()
    assert gauges["alerts_fired"]() == 1 and gauges["alert_active"]() == 0


@pytest.mark.parametrize("mode", ["row", "batch"])
def test_a_restart_during_an_incident_raises_no_second_alert(mode, settings, redis_client):
    """Backed up while the accuracy alert is active, restarted, still bad: the restarted job
    must not announce the same incident again, and ends it with one "recovered"."""
    alerting = dataclasses.replace(settings, alert_threshold=0.5, alert_window=50,
                                   alert_warmup=300, alert_hysteresis=0.1)
    before = Trainer(alerting)
    first = run(before, GOOD[:600] + [shifted(v) for v in GOOD[600:680]], mode)
    assert [json.loads(v)["kind"] for outs in first for t, v in outs
            if t == settings.alert_topic] == ["accuracy_drop"]
    assert before.alarm.active
    before.maybe_backup(force=True)
    after = Trainer(alerting)  # the job restarted from that backup
    assert after.alarm.active and after.alarm.fired == 1
    outputs = run(after, [shifted(v) for v in GOOD[680:760]] + GOOD[760:1300], mode)
    kinds = [json.loads(v)["kind"] for outs in outputs for t, v in outs
             if t == settings.alert_topic]
    # the incident that was on at the restart is not announced again: the first alert after the
    # restart ends it. A model still relearning the right labels may later dip below the
    # threshold once more (a clean-clone run saw it at 883 samples in batch mode): that is a new
    # incident, raised once and ended once.
    assert kinds[:1] == ["recovered"], kinds
    assert kinds[1:] == ["accuracy_drop", "recovered"] * (len(kinds) // 2), kinds
    assert after.alarm.fired == 1 + kinds.count("accuracy_drop") and not after.alarm.active


def test_no_alert_during_warmup(settings, redis_client):
    # a fresh model is wrong at first; with a warm-up of 300 that must not raise anything
    trainer = Trainer(dataclasses.replace(settings, alert_threshold=0.95, alert_window=50,
                                          alert_warmup=300))
    outputs = run(trainer, GOOD[:299], "row")
    assert not [t for outs in outputs for t, _ in outs if t == settings.alert_topic]
    assert trainer.alarm.fired == 0


def test_redis_outage_training_continues_backups_back_off_then_recover(private_redis):
    clock = FakeClock()
    settings = private_settings(private_redis, backup_interval_seconds=10)
    trainer = Trainer(settings, clock=clock)
    store = ModelStore(private_redis.client(), settings.model_key)
    run(trainer, GOOD[:50], "row")
    clock.t += 10
    assert trainer.maybe_backup() and store.load_meta()["version"] == 1

    private_redis.stop()
    attempts = []
    for step in range(1, 260):  # 259 s of outage, one record per second
        clock.t += 1
        failed = trainer.backups_failed
        outs, _, _ = trainer.process(GOOD[50 + step])  # backs up itself when due (no thread)
        assert outs[0][0] == settings.sink_topic  # predictions keep coming
        if trainer.backups_failed > failed:
            attempts.append(clock.t)
    assert trainer.learner.samples_seen == 50 + 259  # training went on in memory
    assert trainer.backups_succeeded == 1 and trainer.backups_failed == len(attempts) >= 5
    gaps = [b - a for a, b in zip(attempts, attempts[1:])]
    assert gaps[:4] == [10, 20, 40, 60] and set(gaps[4:]) == {60}  # exponential backoff, capped
    assert trainer.gauges()["seconds_since_backup"]() >= 250

    private_redis.start()
    clock.t = attempts[-1] + 60
    assert trainer.maybe_backup() is True
    meta = store.load_meta()
    assert meta["version"] == 2 and meta["samples_seen"] == 309  # nothing learned was lost
    clock.t += 10
    trainer.process(GOOD[400])
    assert trainer.model_version == 3 and trainer.backups_succeeded == 3  # back to the interval


def test_redis_back_during_load_retries_loads_the_stored_model(private_redis):
    settings = private_settings(private_redis, redis_load_retry_seconds=30)
    stored = OnlineLearner(make_model())
    for value in GOOD[:100]:
        obj = json.loads(value)
        stored.learn_one(obj["x"], obj["actual_y"])
    ModelStore(private_redis.client(), settings.model_key).save(stored.model, stored.snapshot())
    private_redis.stop()
    clock = FakeClock()
    sleeps = []

    def sleep(seconds):  # Redis comes back while the trainer waits for it
        sleeps.append(seconds)
        clock.sleep(seconds)
        if len(sleeps) == 3:
            private_redis.start()

    trainer = Trainer(settings, clock=clock, sleep=sleep)
    assert len(sleeps) == 3 and sleeps == sorted(sleeps)  # waited, with growing pauses
    assert trainer.learner.samples_seen == 100 and trainer.model_version == 1


@pytest.mark.parametrize("stored_samples, learned, adopted", [(300, 20, True), (10, 50, False)])
def test_blind_start_does_not_overwrite_a_better_stored_model(private_redis, stored_samples,
                                                              learned, adopted):
    settings = private_settings(private_redis, redis_load_retry_seconds=3)
    stored = OnlineLearner(make_model())
    for value in GOOD[:stored_samples]:
        obj = json.loads(value)
        stored.learn_one(obj["x"], obj["actual_y"])
    store = ModelStore(private_redis.client(), settings.model_key)
    store.save(stored.model, stored.snapshot())
    private_redis.stop()

    clock = FakeClock()
    trainer = Trainer(settings, clock=clock, sleep=clock.sleep)  # Redis down: gives up after 3 s
    assert clock.t >= 1003 and trainer.learner.samples_seen == 0  # a new model, for now
    run(trainer, GOOD[1000:1000 + learned] + ["not json"], "row")
    private_redis.start()
    clock.t += 10
    if adopted:
        # the stored model has seen more: continue from it instead of overwriting it
        assert trainer.maybe_backup() is False
        assert trainer.models_adopted == 1 and trainer.learner.samples_seen == stored_samples
        assert trainer.records_rejected == 1  # counted all the same
        assert store.load_meta()["version"] == 1
        trainer.process(GOOD[1500 - 1])
        clock.t += 10
        assert trainer.maybe_backup() is True
        assert store.load_meta()["samples_seen"] == stored_samples + 1
    else:
        # ours has seen more than what is stored: it is the better model, back it up
        assert trainer.maybe_backup() is True and trainer.models_adopted == 0
        assert store.load_meta()["samples_seen"] == learned
    assert store.load_meta()["version"] == 2


@pytest.mark.parametrize("blob", [b"definitely not a skops file", b"PK\x03\x04broken zip"])
def test_corrupt_stored_model_is_reported_and_replaced(blob, settings, redis_client, caplog):
    store = ModelStore(redis_client, settings.model_key)
    redis_client.set(store.blob_key, blob)
    redis_client.set(store.meta_key, json.dumps({"version": 7, "samples_seen": 999}))
    redis_client.set(store.version_key, 7)
    with caplog.at_level("ERROR", logger="online_ml.trainer"):
        trainer = Trainer(settings)
    assert "unusable" in caplog.text
    assert trainer.learner.samples_seen == 0 and not trainer.learner.fitted
    run(trainer, GOOD[:20], "row")
    assert trainer.maybe_backup(force=True) is True
    assert store.load_meta()["version"] == 8 and store.load().meta["samples_seen"] == 20


def test_backup_thread_survives_redis_outage(private_redis):
    """The real timer thread: failures are counted, the thread keeps going, then succeeds."""
    settings = private_settings(private_redis, backup_interval_seconds=0.2)
    trainer = Trainer(settings)
    trainer.start_background_backups()
    try:
        run(trainer, GOOD[:10], "row")
        wait_for(lambda: trainer.backups_succeeded >= 1, 10, "a first backup")
        private_redis.stop()
        run(trainer, GOOD[10:20], "row")
        wait_for(lambda: trainer.backups_failed >= 2, 10, "failed backups while Redis is down")
        private_redis.start()
        run(trainer, GOOD[20:30], "row")
        before = trainer.backups_succeeded
        wait_for(lambda: trainer.backups_succeeded > before, 10, "a backup after Redis is back")
        assert trainer._thread.is_alive()
    finally:
        trainer.close()
    meta = ModelStore(private_redis.client(), settings.model_key).load_meta()
    assert meta["samples_seen"] == 30 and meta["version"] >= 2
