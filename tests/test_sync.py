"""Parallel learners, one model (online_ml/sync.py, online_ml/sync_protocol.py).

Merge rules are plain unit tests; the protocol runs several real Trainers in one process against
the real Redis (db 1, a model key of their own), each standing in for one subtask of the job.
"""
from __future__ import annotations

import dataclasses
import io
import itertools
import json
import struct
import subprocess
import threading
import time

import numpy as np
import pytest
from sklearn.datasets import load_digits

from online_ml import sync
from online_ml.harness.paths import PY, ROOT
from online_ml.learner import make_model
from online_ml.model_store import FencedOut, ModelStore, dumps
from online_ml.producer import iter_records, make_message
from online_ml.trainer import Trainer

RECORDS = [make_message(x, y, ts="2024-01-01 12:00:00").decode()
           for x, y in itertools.islice(iter_records(seed=11), 1200)]


# -- merge rules -----------------------------------------------------------------------------------
def _fit(name: str, X, y):
    model = make_model(name)
    model.partial_fit(X, y, classes=list(range(10)))
    return model


def test_naive_bayes_merges_exactly():
    """Counts add up: two learners merged are one learner that saw both halves."""
    X, y = load_digits(return_X_y=True)
    a, b, both = _fit("nb", X[:300], y[:300]), _fit("nb", X[300:600], y[300:600]), \
        _fit("nb", X[:600], y[:600])
    rules = sync.rules_of(a)
    merged = sync.merge_states(None, [(sync.state_of(a), 300), (sync.state_of(b), 300)], rules)
    sync.set_state(a, merged)
    assert np.array_equal(a.feature_count_, both.feature_count_)
    assert (a.predict(X) == both.predict(X)).all()


def test_averaging_is_weighted_by_samples_and_alone_changes_nothing():
    X, y = load_digits(return_X_y=True)
    a = _fit("sgd", X[:100], y[:100])
    rules = sync.rules_of(a)
    state = sync.state_of(a)
    alone = sync.merge_states(None, [(state, 100)], rules)
    assert all(np.array_equal(alone[k], state[k]) for k in state)
    b = _fit("sgd", X[100:400], y[100:400])
    merged = sync.merge_states(None, [(state, 100), (sync.state_of(b), 300)], rules)
    expected = 0.25 * state["coef_"] + 0.75 * sync.state_of(b)["coef_"]
    assert np.allclose(merged["coef_"], expected)
    # the step counter is merged like the weights: the merged model made one step per round
    # of everybody's samples, so its learning rate decays with its own steps (no global yet:
    # the first merge is a plain average, see the √K test below)
    assert np.isclose(merged["t_"], 0.25 * state["t_"] + 0.75 * sync.state_of(b)["t_"])


def test_k_linear_deltas_take_a_sqrt_k_step_from_the_global():
    """SGD's arrays merge as ``global + √K·(weighted mean of the K deltas)``: one contribution
    alone is applied as it is, four take twice their mean, and the first merge (no global yet,
    or a fresh model's state) is the plain weighted mean (there is no step to lengthen)."""
    X, y = load_digits(return_X_y=True)
    g = _fit("sgd", X[:100], y[:100])
    rules = sync.rules_of(g)
    assert set(rules.values()) == {sync.STEP} and "t_" in rules
    glob = sync.state_of(g)
    deltas = []
    for i in range(4):
        m = _fit("sgd", X[:100], y[:100])
        m.partial_fit(X[100 + 10 * i:110 + 10 * i], y[100 + 10 * i:110 + 10 * i])
        deltas.append((sync.subtract(sync.state_of(m), glob), 10))
    mean = {k: sum(d[k] for d, _ in deltas) / 4 for k in glob}
    merged = sync.merge_states(glob, deltas, rules)
    assert all(np.allclose(merged[k], glob[k] + 2 * mean[k]) for k in glob)
    alone = sync.merge_states(glob, deltas[:1], rules)
    assert all(np.allclose(alone[k], glob[k] + deltas[0][0][k]) for k in glob)
    fresh = sync.fresh_state(g, glob)
    first = sync.merge_states(fresh, deltas, rules, first=True)
    assert all(np.allclose(first[k], fresh[k] + mean[k]) for k in glob)
    # the others keep the plain average: the step is measured for SGD and softmax only, and
    # softmax's AdaGrad accumulators and step counter keep it too
    for name in ("mlp", "perceptron", "pa"):
        assert sync.STEP not in sync.rules_of(_fit(name, X[:100], y[:100])).values(), name
    soft = sync.rules_of(_fit("softmax", X[:100], y[:100]))
    assert {k for k, r in soft.items() if r == sync.STEP} == set(sync.SOFTMAX_STEPPED)


def test_contribution_round_trip_and_garbage():
    delta = {"coef_": np.arange(6.0).reshape(2, 3), "t_": np.array(4.0)}
    c = sync.Contribution("l1", 4, delta, {"samples_seen": 4}, ["fb-1"], 7, 1.5)
    back = sync.Contribution.decode(c.encode())
    assert back.learner == "l1" and back.samples == 4 and back.feedback_ids == ["fb-1"]
    assert np.array_equal(back.delta["coef_"], delta["coef_"])
    blob = c.encode()
    for junk in (b"", b"OMLSYNC1", b"OMLSYNC1\x00\x00\x00\x05{}" + b"x" * 20, b"pickle...",
                 b"OMLSYNC2", blob[:-8], blob + b"\x00" * 8, blob.replace(b"[2, 3]", b"[3, 3]"),
                 blob.replace(b'"arrays"', b'"arrayz"'), blob.replace(b"[2, 3]", b"[-2, 3]")):
        with pytest.raises(ValueError):
            sync.Contribution.decode(junk)
    # one written before the raw format (header + .npz) may be pending across an upgrade
    buf = io.BytesIO()
    np.savez(buf, **delta)
    header = json.dumps({"learner": "l0", "samples": 4, "counters": {}, "feedback_ids": [],
                         "base_round": 7, "created_at": 1.0}).encode()
    old = sync.Contribution.decode(b"OMLSYNC1" + struct.pack(">I", len(header)) + header
                                   + buf.getvalue())
    assert old.learner == "l0" and np.array_equal(old.delta["coef_"], delta["coef_"])
    state = sync.decode_state(sync.encode_state(delta))
    assert np.array_equal(state["coef_"], delta["coef_"]) and float(state["t_"]) == 4.0
    state["coef_"] += 1  # writable: a learner steps its weights in place


def test_unmergeable_model_is_refused_with_a_clear_error():
    from sklearn.naive_bayes import GaussianNB

    with pytest.raises(sync.NotMergeable, match="sgd, perceptron, pa"):
        sync.check_mergeable(GaussianNB())


# -- the protocol against the real Redis -------------------------------------------------------------
@pytest.fixture
def sync_settings(settings):
    return dataclasses.replace(settings, sync_every_records=25, sync_interval_seconds=0.2,
                               backup_interval_seconds=0.5, learner_timeout_seconds=3.0)


def _run(trainers: list[Trainer], records: list[str]) -> None:
    """Deal records round-robin, like Kafka partitions to subtasks."""
    for i, value in enumerate(records):
        trainers[i % len(trainers)].process(value)



def _merged_pair(settings, store: ModelStore) -> tuple[Trainer, Trainer, Trainer, Trainer]:
    """Two learners that learned 200 records, all merged: (a, b, the merger, the other)."""
    a, b = Trainer(settings), Trainer(settings)
    _run([a, b], RECORDS[:200])
    for t in (a, b, a, b, a):
        t.maybe_backup(force=True)
    merger, other = (a, b) if a.sync.is_publisher else (b, a)
    assert merger.sync.is_publisher and not other.sync.is_publisher
    merger.maybe_backup(force=True)  # nothing of the other's is pending now
    assert store.load_meta()["samples_seen"] == 200
    return a, b, merger, other


@pytest.mark.integration
def test_two_learners_publish_one_model_that_counts_every_record(sync_settings, redis_client):
    store = ModelStore(redis_client, sync_settings.model_key)
    a, b = Trainer(sync_settings), Trainer(sync_settings)
    versions = []
    for start in range(0, len(RECORDS), 100):
        _run([a, b], RECORDS[start:start + 100])
        time.sleep(0.05)  # lets the learners' wall-clock sync interval pass now and then
        for t in (a, b):
            t.maybe_backup()
        meta = store.load_meta()
        if meta:
            versions.append(meta["version"])
    # a cancelled job closes its subtasks at the same time
    closing = [threading.Thread(target=t.close) for t in (a, b)]
    for thread in closing:
        thread.start()
    for thread in closing:
        thread.join(60)
    meta = store.load_meta()
    assert versions == sorted(versions), "served versions went backwards"
    # close() merges what is left: the served model has seen every record of both learners
    assert meta["samples_seen"] == len(RECORDS)
    assert meta["learners"] >= 1 and meta["contributors"] >= 1
    assert a.sync.merges + b.sync.merges >= 5
    assert a.sync.contributions_sent + b.sync.contributions_sent >= 5
    X, y = load_digits(return_X_y=True)
    served = store.load().model
    assert (served.predict(X) == y).mean() > 0.85  # one learner on the same 1,200: ~0.93


@pytest.mark.integration
def test_a_stalled_merger_loses_no_contribution(sync_settings, redis_client):
    """The merger stalls for longer than the learner timeout after the other learner handed over
    its contribution (a loaded machine, a long pause): once both go on, the contribution is merged
    (a clean-clone CI run lost 93 of 1,200 records when contributions expired with the timeout)."""
    store = ModelStore(redis_client, sync_settings.model_key)
    a, b, merger, other = _merged_pair(sync_settings, store)
    sent = other.sync.contributions_sent
    _run([other], RECORDS[200:260])
    other.maybe_backup(force=True)
    pending = store.contribution_key(other.sync.id)
    assert other.sync.contributions_sent > sent and redis_client.exists(pending)
    time.sleep(sync_settings.learner_timeout_seconds + 1)  # both stall: no tick, no heartbeat
    other.sync.look_around(force=True)  # the contributor goes on
    merger.maybe_backup(force=True)
    assert merger.sync.is_publisher and not redis_client.exists(pending)
    assert store.load_meta()["samples_seen"] > 200, "the pending contribution was not merged"
    for t in (a, b):
        t.close()
    assert store.load_meta()["samples_seen"] == 260


@pytest.mark.integration
def test_feedback_learned_while_a_contribution_is_pending_reaches_the_served_model(
        sync_settings, redis_client):
    """A learner whose last contribution is not merged yet learns a feedback record and ticks:
    its id must wait for the next contribution (it was taken, the contribution refused by SET NX,
    and the id lost: bench/scaleout.py's probe never reached a served model at N=4)."""
    from online_ml.schema import encode_record

    store = ModelStore(redis_client, sync_settings.model_key)
    a, b, merger, other = _merged_pair(sync_settings, store)
    _run([other], RECORDS[200:230])
    other.maybe_backup(force=True)  # hands over; not merged yet
    assert redis_client.exists(store.contribution_key(other.sync.id))
    x, y = next(iter_records(seed=3))
    other.process(encode_record(x, y, source="feedback", id="fb-pending"))
    other.maybe_backup(force=True)  # its contribution is still pending: nothing more goes out
    for t in (merger, other, merger):
        t.maybe_backup(force=True)
    meta = store.load_meta()
    assert meta["samples_seen"] == 231
    assert "fb-pending" in meta["recent_feedback_ids"], meta["recent_feedback_ids"]
    for t in (a, b):
        t.close()


@pytest.mark.integration
def test_alone_the_served_model_is_the_learners_model(sync_settings, redis_client):
    store = ModelStore(redis_client, sync_settings.model_key)
    t = Trainer(sync_settings)
    _run([t], RECORDS[:300])
    t.close()
    stored = store.load()
    X, _ = load_digits(return_X_y=True)
    assert (stored.model.predict(X) == t.learner.model.predict(X)).all()
    assert np.array_equal(stored.model.coef_, t.learner.model.coef_)
    assert stored.meta["samples_seen"] == 300 and stored.meta["contributors"] == 1


@pytest.mark.integration
def test_a_dead_learner_does_not_block_the_others(sync_settings, redis_client):
    """Learner b contributes and dies without closing: its lease and heartbeat expire, a takes
    over publishing and goes on; b's last contribution is merged or expires (one interval)."""
    store = ModelStore(redis_client, sync_settings.model_key)
    a, b = Trainer(sync_settings), Trainer(sync_settings)
    _run([b, a], RECORDS[:200])
    b.maybe_backup(force=True)
    a.maybe_backup(force=True)
    # b is gone (no close): a keeps learning alone
    deadline = time.monotonic() + 20
    i = 200
    while time.monotonic() < deadline and not (a.sync.is_publisher and a.sync.live == 1):
        _run([a], RECORDS[i:i + 20])
        i += 20
        a.maybe_backup(force=True)
        time.sleep(0.2)
    assert a.sync.is_publisher and a.sync.live == 1
    a.close()
    meta = store.load_meta()
    assert meta["samples_seen"] >= i - 100  # at most b's last interval is missing


def _open_two_learners(settings) -> list[Trainer]:
    """A job at parallelism 2 opening: the second learner 1 s after the first. The first must
    wait for it (not learn alone, nor meet someone else), then both open together."""
    opened: dict[str, float] = {}
    trainers: dict[str, Trainer] = {}

    def open_learner(name: str) -> None:
        trainers[name] = Trainer(settings, learners=2)
        opened[name] = time.monotonic()

    started = time.monotonic()
    first = threading.Thread(target=open_learner, args=("first",))
    first.start()
    time.sleep(1.0)
    assert "first" not in opened, "the first learner did not wait for the second"
    open_learner("second")
    first.join(10)
    assert opened["first"] - started >= 1.0 and abs(opened["first"] - opened["second"]) < 0.5
    return list(trainers.values())


@pytest.mark.integration
def test_learners_that_died_without_leaving_stop_counting_within_seconds(sync_settings,
                                                                         redis_client):
    """A TaskManager killed at parallelism 2: its learner never leaves. With nothing of it
    pending, the survivor counts it live for SILENT_SECONDS, not the whole learner timeout (it
    scales a correction's share and is the served model's ``learners``); and the learners of
    the restarted job wait for each other, not for a dead one's recent heartbeat (both failed
    before: 30 s, and the first learner started at once)."""
    from online_ml.sync_protocol import SILENT_SECONDS

    settings = dataclasses.replace(sync_settings, learner_timeout_seconds=30.0)
    store = ModelStore(redis_client, settings.model_key)
    a, b, survivor, dead = _merged_pair(settings, store)
    assert survivor.sync.live == 2
    killed = time.monotonic()  # `dead` is never driven again: no tick, no close
    i = 200
    while survivor.sync.live > 1 and time.monotonic() - killed < 15:
        _run([survivor], RECORDS[i:i + 10])
        i += 10
        survivor.maybe_backup(force=True)
        time.sleep(0.2)
    assert survivor.sync.live == 1
    assert time.monotonic() - killed < SILENT_SECONDS + 2 < settings.learner_timeout_seconds

    # the job restarts at parallelism 2 while the survivor's heartbeat is fresh: it died too
    trainers = _open_two_learners(settings)
    deadline = time.monotonic() + SILENT_SECONDS + 3
    while time.monotonic() < deadline and {t.sync.live for t in trainers} != {2}:
        for t in trainers:
            t.sync.look_around(force=True)
        time.sleep(0.2)
    assert {t.sync.live for t in trainers} == {2}
    for t in (*trainers, survivor):
        t.close()


@pytest.mark.integration
def test_learners_go_on_through_a_redis_outage_and_merge_when_it_is_back(sync_settings):
    """Redis goes away under two learners (a redis-server of the test's own, stopped and
    started again with its data): both go on learning, their ticks fail and are counted, and
    once it is back they merge again; the served model counts every record both learned."""
    from online_ml.harness.redis_server import PrivateRedis

    redis = PrivateRedis().start()
    trainers: list[Trainer] = []
    try:
        settings = dataclasses.replace(sync_settings, redis_port=redis.port,
                                       redis_password=redis.password, redis_db=1)
        store = ModelStore(redis.client(), settings.model_key)
        trainers = [Trainer(settings), Trainer(settings)]
        _run(trainers, RECORDS[:200])
        for t in (*trainers, *trainers):
            t.maybe_backup(force=True)
        assert store.load_meta()["samples_seen"] > 0

        redis.stop()
        failed = sum(t.backups_failed for t in trainers)
        _run(trainers, RECORDS[200:600])  # learning goes on, locally
        for t in trainers:
            t.maybe_backup(force=True)
        assert sum(t.backups_failed for t in trainers) > failed
        assert sum(t.sync.pending_records for t in trainers) > 0

        redis.start()
        _run(trainers, RECORDS[600:700])
        closing = [threading.Thread(target=t.close) for t in trainers]
        for thread in closing:
            thread.start()
        for thread in closing:
            thread.join(60)
        assert store.load_meta()["samples_seen"] == 700
    finally:
        for t in trainers:
            t.close()
        redis.close()


@pytest.mark.integration
def test_a_stale_publisher_is_fenced_out(sync_settings, redis_client):
    store = ModelStore(redis_client, sync_settings.model_key)
    store.save(make_model(), {"samples_seen": 1})
    lease_key = store.sync_key("lease")
    redis_client.set(lease_key, "someone-else:7")
    with pytest.raises(FencedOut):
        store.save_blob(dumps(make_model()), {"samples_seen": 2}, fence=(lease_key, "me:3"))
    assert store.load_meta()["samples_seen"] == 1


@pytest.mark.integration
def test_learners_of_one_job_wait_for_each_other_before_they_learn(sync_settings, redis_client):
    """A job at parallelism 2: the first learner to open waits until the second is live, so
    neither learns alone, and both start from the same stored model; a peer that never comes
    costs one learner timeout, once."""
    store = ModelStore(redis_client, sync_settings.model_key)
    store.save(make_model(), {"samples_seen": 7})
    trainers = _open_two_learners(sync_settings)
    # both saw each other live, both start from the stored model
    assert {(t.sync.live, t.learner.samples_seen) for t in trainers} == {(2, 7)}
    for t in trainers:
        t.close()

    timeout = sync_settings.learner_timeout_seconds
    started = time.monotonic()
    alone = Trainer(sync_settings, learners=3)  # two peers that never come
    assert alone.sync.live < 3 and timeout <= time.monotonic() - started < timeout + 2
    alone.close()


@pytest.mark.integration
def test_the_protocol_benchmark_runs_and_reports(redis_service, tmp_path):
    """bench/sync_live.py (the job's protocol in one process, the figures the default
    SYNC_EVERY_RECORDS comes from) in miniature: it runs and writes its rows, targets and
    verdicts; no number is checked."""
    done = subprocess.run([PY, "bench/sync_live.py", "--smoke", "--quiet", "--out",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads((tmp_path / "sync_live.json").read_text())
    variants = [r["variant"] for r in doc["results"]["rows"]]
    assert variants == ["1 learner", "N=4 k=10"], variants
    for r in doc["results"]["rows"]:
        assert len(r["per_pass"]) == 2 and 0 <= r["served_accuracy"] <= 1, r
    assert r["merges"] > 0 and len(doc["targets"]) == 2
    assert {"recommended_sync_every_records", "configured_sync_every_records"} <= \
        doc["verdicts"].keys()
