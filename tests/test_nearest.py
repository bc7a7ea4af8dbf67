"""The softmax learner's memory of records (``neighbours``; online_ml/nearest.py): a ring of the
last records learned, their votes blended into the scores, predict-then-learn kept, safe to
store, one memory when parallel learners merge, and the records that voted told to the board."""
import doctest

import numpy as np
import pytest

from online_ml import augment, model_store, nearest, sync
from online_ml.learner import OnlineLearner, make_model
from online_ml.softmax import OnlineSoftmax

CLASSES = list(range(10))


def test_doctests():
    assert doctest.testmod(nearest).failed == 0


def test_the_ring_keeps_the_last_records_in_order():
    x, y = np.zeros((4, 2), np.float32), np.zeros(4, np.int16)
    count = 0
    for i in range(6):  # one at a time: rows 4 and 5 overwrite 0 and 1
        count = nearest.append(x, y, count, np.array([[i, i]]), [i])
    kept_x, kept_y = nearest.chronological(x, y, count)
    assert count == 6 and kept_y.tolist() == [2, 3, 4, 5] and kept_x[:, 0].tolist() == [2, 3, 4, 5]
    # more rows than the ring holds in one call: the last ones, as if written one by one
    count = nearest.append(x, y, count, np.arange(20).reshape(10, 2), list(range(10)))
    assert count == 16 and nearest.chronological(x, y, count)[1].tolist() == [6, 7, 8, 9]


def test_votes_are_the_label_shares_of_the_nearest():
    x = np.array([[0, 0], [1, 0], [10, 10], [11, 10]], np.float32)
    y = np.array([0, 0, 1, 1], np.int16)
    shares = nearest.vote_shares(np.array([[0.0, 1.0], [10.0, 11.0]]), x, y, 4, k=3, n_classes=2)
    assert np.allclose(shares, [[2 / 3, 1 / 3], [1 / 3, 2 / 3]])
    # only the rows written count; k larger than the memory takes all of it
    assert np.allclose(nearest.vote_shares(np.array([[10.0, 10.0]]), x, y, 2, k=9, n_classes=2),
                       [[1.0, 0.0]])
    assert not nearest.vote_shares(np.array([[1.0, 1.0]]), x, y, 0, k=3, n_classes=2).any()


def test_rings_searched_with_the_memory_count_each_row_as_its_copies():
    """A lesson (a ring of ``more``) stored once counts as its copies among the nearest, after the
    memory's rows in the order of places; which ring and row each place is."""
    x = np.array([[0, 0], [1, 0], [10, 10], [11, 10]], np.float32)
    y = np.array([0, 0, 1, 1], np.int16)
    lessons = (np.array([[0, 1], [0, 0]], np.float32), np.array([1, 0], np.int16), 1, 3)
    shares = nearest.vote_shares(np.array([[0.0, 1.0]]), x, y, 4, k=3, n_classes=2,
                                 more=[lessons])
    assert np.allclose(shares, [[0.0, 1.0]])  # the lesson at distance 0, three times
    places = nearest.nearest_rows(np.array([0.0, 1.0]), x, 4, 5, more=[lessons])
    assert places.tolist() == [4, 5, 6, 0, 1]
    assert [nearest.ring_place(p, x, 4, [lessons]) for p in places] == \
        [(1, 0), (1, 0), (1, 0), (0, 0), (0, 1)]
    empty = (np.zeros((2, 2), np.float32), np.zeros(2, np.int16), 0, 3)  # nothing taught yet
    assert np.allclose(nearest.vote_shares(np.array([[0.0, 1.0]]), x, y, 4, k=3, n_classes=2,
                                           more=[empty]),
                       nearest.vote_shares(np.array([[0.0, 1.0]]), x, y, 4, k=3, n_classes=2))


def test_a_tie_at_the_last_place_goes_to_the_lower_place_in_the_ring():
    """Four records at the same distance, two voting places: the two first in the ring vote,
    whichever computes it (the server's numpy calls, the job's compiled loop)."""
    x = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], np.float32)
    y = np.array([0, 1, 1, 1], np.int16)
    d = nearest._distances(np.zeros((1, 2)), x)
    assert nearest._nearest_numpy(d, 2).tolist() == [[0, 1]]
    assert np.allclose(nearest.vote_shares(np.zeros((1, 2)), x, y, 4, k=2, n_classes=2),
                       [[0.5, 0.5]])


def test_the_compiled_selection_picks_what_numpy_picks():
    """On distances full of ties (small integers, as the 64 cells' squared distances are), any
    number of rows and places: the same places in the same order."""
    from online_ml.softmax_steps import nearest_indices as compiled
    rng = np.random.default_rng(0)
    for _ in range(300):
        rows, n = int(rng.integers(1, 6)), int(rng.integers(1, 60))
        k = int(rng.integers(1, n + 1))
        d = rng.integers(0, 5, size=(rows, n)).astype(np.float32)
        assert np.array_equal(compiled(d, k), nearest._nearest_numpy(d, k)), (d, k)


def test_a_process_that_learns_votes_compiled_and_the_same(shuffled_digits):
    X, y = shuffled_digits
    model = OnlineSoftmax(memory=500).partial_fit(X[:600], y[:600], classes=CLASSES)
    assert nearest._compiled_nearest is not None
    compiled = model.decision_function(X[600:])
    with nearest.as_the_server():  # which never learns: numpy calls
        assert nearest._compiled_nearest is None
        with_numpy = model.decision_function(X[600:])
    assert nearest._compiled_nearest is not None
    assert np.array_equal(compiled, with_numpy)


def test_the_memory_is_the_default_and_without_neighbours_the_model_is_the_plain_softmax(
        shuffled_digits):
    """The memory changes what is scored, not what the weights learn: the default model (9
    neighbours) and one without (``neighbours=0``, and what a model stored before the memory
    loads as) have the same weights after the same records; the latter's scores are its logits."""
    X, y = shuffled_digits
    remembers = OnlineSoftmax().partial_fit(X[:300], y[:300], classes=CLASSES)
    off = OnlineSoftmax(neighbours=0).partial_fit(X[:300], y[:300], classes=CLASSES)
    ones = int(np.count_nonzero(y[:300] == 1))  # each 1 is remembered mirrored too
    assert remembers.neighbours == 9 and remembers.memory_count_ == 300 + ones
    assert not hasattr(off, "memory_x_")
    assert np.array_equal(remembers.avg_weights_, off.avg_weights_)
    assert np.array_equal(off.decision_function(X), remembers.weight_scores(X))
    assert not np.array_equal(remembers.decision_function(X), off.decision_function(X))


def test_scores_are_log_probabilities_plus_the_votes(shuffled_digits):
    X, y = shuffled_digits
    model = OnlineSoftmax(neighbours=5, memory=300, mirrored=()).partial_fit(
        X[:300], y[:300], classes=CLASSES)
    assert model.memory_count_ == 300
    z = model.weight_scores(X[300:400])
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    shares = model.nearest_shares(X[300:400])
    assert np.allclose(shares.sum(1), 1.0)
    assert np.allclose(model.decision_function(X[300:400]), logp + 2.0 * shares)
    # a record it learned is its own nearest: with enough weight on the votes it is read as
    # the label it was taught, whatever the weights say
    taught = OnlineSoftmax(neighbours=1, votes=100.0, mirrored=()).partial_fit(X[:50], (y[:50] + 1) % 10,
                                                                   classes=CLASSES)
    assert (taught.predict(X[:50]) == (y[:50] + 1) % 10).all()


def test_the_record_being_predicted_is_not_remembered_yet(shuffled_digits):
    """Predict, then learn: the row path (OnlineLearner.learn_one) scores a record before the
    memory holds it, and a row of weight 0 (a merger's initialisation) is never remembered."""
    X, y = shuffled_digits
    learner = OnlineLearner(make_model("softmax", neighbours=1, votes=100.0, mirrored=()))
    for x_, y_ in zip(X[:20], y[:20]):
        learner.learn_one(x_, int(y_))
    wrong = (int(y[0]) + 1) % 10
    before = learner.model.memory_count_
    predicted = learner.learn_one(X[0], wrong)  # X[0] is remembered with its true label
    assert predicted == y[0] and learner.model.memory_count_ == before + 1
    new_wrong = (int(y[30]) + 1) % 10  # a record never seen, taught wrong: scored before it is kept
    assert learner.learn_one(X[30], new_wrong) != new_wrong
    assert learner.model.predict(X[30:31])[0] == new_wrong  # now its own nearest
    learner.model.partial_fit(X[:3], y[:3], sample_weight=[0.0, 1.0, 0.0])
    assert learner.model.memory_count_ == before + 3


def test_many_rows_at_once_remember_what_row_by_row_remembers(shuffled_digits):
    X, y = shuffled_digits
    rows = OnlineSoftmax(neighbours=9, memory=64, mirrored=())
    for i in range(200):
        rows.partial_fit(X[i:i + 1], y[i:i + 1], classes=CLASSES)
    chunk = OnlineSoftmax(neighbours=9, memory=64, mirrored=()).partial_fit(X[:200], y[:200], classes=CLASSES)
    feedback = [0.25 if i % 7 == 0 else 0 for i in range(200)]  # feedback rows: one by one
    shared = OnlineSoftmax(neighbours=9, memory=64, mirrored=(), feedback_copies=1, lessons=0).partial_fit(
        X[:200], y[:200], classes=CLASSES, into_average=feedback)
    for other in (chunk, shared):
        assert other.memory_count_ == rows.memory_count_ == 200
        assert np.array_equal(other.memory_x_, rows.memory_x_)
        assert np.array_equal(other.memory_y_, rows.memory_y_)
    assert np.allclose(chunk.decision_function(X[200:300]), rows.decision_function(X[200:300]))
    # without lessons apart, each feedback row 9 times in the memory, one after another
    kept = OnlineSoftmax(neighbours=9, memory=64, mirrored=(), lessons=0).partial_fit(
        X[:200], y[:200], classes=CLASSES, into_average=feedback)
    assert kept.feedback_copies == 9 and kept.memory_count_ == 200 + 8 * sum(map(bool, feedback))
    last = max(i for i, share in enumerate(feedback) if share)  # 196: then 197..199, once each
    assert (kept.memory_x_[(kept.memory_count_ - 12 + np.arange(9)) % 64] == X[last]).all()
    # as the learner keeps a correction by default: once among its lessons (searched as 9
    # records), the stream's records alone in the memory
    apart = OnlineSoftmax(neighbours=9, memory=64, mirrored=()).partial_fit(
        X[:200], y[:200], classes=CLASSES, into_average=feedback)
    taught = [i for i, share in enumerate(feedback) if share]
    assert apart.lessons == 64 and apart.memory_count_ == 200 - len(taught)
    assert apart.lessons_count_ == len(taught)  # each stored once, searched as 9 records
    lessons, labels = nearest.chronological(apart.lessons_x_, apart.lessons_y_,
                                            apart.lessons_count_)
    assert np.array_equal(lessons[:len(taught)], X[taught])
    assert np.array_equal(apart.classes_[labels[:len(taught)].astype(int)], y[taught])
    memory, _ = nearest.chronological(apart.memory_x_, apart.memory_y_, apart.memory_count_)
    stream = [i for i in range(200) if not feedback[i]]
    assert np.array_equal(memory[:64], X[stream[-64:]])


def test_bad_memory_settings_are_refused(shuffled_digits):
    X, y = shuffled_digits
    for params in ({"neighbours": -1}, {"neighbours": 2.5}, {"memory": 0}, {"votes": -1.0}):
        with pytest.raises(ValueError, match="neighbours"):
            OnlineSoftmax(**params).partial_fit(X[:2], y[:2], classes=CLASSES)


def test_stored_with_its_memory_and_a_model_stored_before_loads_without(shuffled_digits):
    X, y = shuffled_digits
    model = OnlineSoftmax(neighbours=9, memory=128, mirrored=()).partial_fit(
        X[:300], y[:300], classes=CLASSES)
    back = model_store.loads(model_store.dumps(model))
    assert back.memory_x_.dtype == np.float32 and back.memory_count_ == 300
    assert np.array_equal(back.decision_function(X), model.decision_function(X))
    back.partial_fit(X[300:301], y[300:301])
    assert back.memory_count_ == 301
    back.partial_fit(X[301:302], y[301:302], into_average=[0.75])  # a lesson, stored with it
    again = model_store.loads(model_store.dumps(back))
    assert again.lessons_x_.dtype == np.float32 and again.lessons_count_ == 1
    assert np.array_equal(again.decision_function(X), back.decision_function(X))
    old = model_store.loads(model_store.dumps(OnlineSoftmax().partial_fit(X[:30], y[:30],
                                                                           classes=CLASSES)))
    for name in ("neighbours", "memory", "votes"):
        del old.__dict__[name]  # what a model stored by the code before them holds
    assert old.neighbours == 0 and not old._remembers()
    old.partial_fit(X[30:31], y[30:31])


def _memory_rows(model) -> list[list[float]]:
    x, _ = nearest.chronological(model.memory_x_, model.memory_y_, model.memory_count_)
    return x[:nearest.filled(model.memory, model.memory_count_)].tolist()


def test_parallel_learners_merge_their_memories_by_appending(shuffled_digits):
    """The rows each learner remembered since the global are written after the global's, in
    the order the contributions merge, the newest kept; the weights merge as before."""
    X, y = shuffled_digits
    params = {"neighbours": 3, "memory": 64, "mirrored": ()}
    a = OnlineSoftmax(**params).partial_fit(X[:30], y[:30], classes=CLASSES)
    b = OnlineSoftmax(**params).partial_fit(X[30:70], y[30:70], classes=CLASSES)
    sync.check_mergeable(a)
    rules = sync.rules_of(a)
    assert {k for k, r in rules.items() if r == sync.APPEND} == {*sync.MEMORY, *sync.LESSONS}
    start = sync.fresh_state(a, sync.state_of(a))
    base_a = sync.state_of(a)  # what a hands over is its base from then on
    deltas = [(sync.subtract(sync.state_of(m), start), n) for m, n in ((a, 30), (b, 40))]
    assert deltas[1][0]["memory_x_"].shape == (40, 64)  # only what was written since
    assert all(sync.compatible(d, rules, start) for d, _ in deltas)
    merged = sync.merge_states(start, deltas, rules, first=True)
    merger = OnlineSoftmax(**params)
    sync.initialise(merger, merged, CLASSES)
    sync.set_state(merger, merged)
    assert merger.memory_count_ == 70
    assert _memory_rows(merger) == X[6:70].tolist()  # a's then b's; 64 fit: the oldest 6 go
    # a learns 5 more and adopts the global: the global's rows, then its own 5
    a.partial_fit(X[70:75], y[70:75])
    sync.set_state(a, sync.add(merged, sync.subtract(sync.state_of(a), base_a)))
    assert a.memory_count_ == 75 and _memory_rows(a) == X[11:75].tolist()
    # a learner that wrote more than its memory holds since the global hands over what it holds
    c = OnlineSoftmax(**params).partial_fit(X[:200], y[:200], classes=CLASSES)
    over = sync.subtract(sync.state_of(c), start)
    assert over["memory_x_"].shape == (64, 64) and float(over["memory_count_"]) == 200
    wide = dict(over, memory_x_=np.zeros((3, 10)))
    assert not sync.compatible(wide, rules, start)
    # on the wire the rows travel as they are
    back = sync.Contribution.decode(sync.Contribution("c", 200, over).encode())
    assert np.array_equal(back.delta["memory_x_"], over["memory_x_"])


def test_parallel_learners_merge_their_lessons_by_appending(shuffled_digits):
    """A correction one of two learners took is, once merged, among the lessons of the global and
    of the other learner after it adopts it (stored once, searched as feedback_copies records),
    and later ones are written after it."""
    X, y = shuffled_digits
    params = {"neighbours": 3, "memory": 64, "lessons": 2, "feedback_copies": 3, "mirrored": ()}
    a = OnlineSoftmax(**params).partial_fit(X[:30], y[:30], classes=CLASSES)
    b = OnlineSoftmax(**params).partial_fit(X[30:70], y[30:70], classes=CLASSES,
                                            into_average=[0.0] * 39 + [0.75])
    rules = sync.rules_of(a)
    start = sync.fresh_state(a, sync.state_of(a))
    assert start["lessons_x_"].shape == (2, 64)  # 2 lessons, each searched as 3 records
    base_a = sync.state_of(a)
    deltas = [(sync.subtract(sync.state_of(m), start), n) for m, n in ((a, 30), (b, 40))]
    assert deltas[0][0]["lessons_x_"].shape == (0, 64) and deltas[1][0]["lessons_x_"].shape == (1, 64)
    merged = sync.merge_states(start, deltas, rules, first=True)
    assert float(merged["memory_count_"]) == 69 and float(merged["lessons_count_"]) == 1
    sync.set_state(a, sync.add(merged, sync.subtract(sync.state_of(a), base_a)))
    assert a.lessons_count_ == 1 and (a.lessons_x_[0] == X[69]).all()
    assert a.nearest_shares(X[69:70])[0][y[69]] == 1.0  # its 3 nearest: the lesson
    # two more corrections on a: the ring holds two lessons, the oldest goes
    a.partial_fit(X[70:72], y[70:72], into_average=[0.75, 0.75])
    kept, _ = nearest.chronological(a.lessons_x_, a.lessons_y_, a.lessons_count_)
    assert a.lessons_count_ == 3 and np.array_equal(kept, X[70:72])


def test_a_lesson_outlasts_the_memory_of_records(shuffled_digits):
    """A correction is still the nearest voters of its drawing after the stream has written over
    the whole memory of records many times (with ``lessons=0`` it is gone); a correction of the
    correction (the same drawing taught again) is what votes then."""
    X, y = shuffled_digits
    wrong = (int(y[5]) + 1) % 10
    for lessons, kept in ((64, True), (0, False)):
        model = OnlineSoftmax(neighbours=9, memory=256, lessons=lessons).partial_fit(
            X[:300], y[:300], classes=CLASSES)
        model.partial_fit(X[5:6], [wrong], into_average=[0.75])
        for start in range(300, len(X), 300):
            model.partial_fit(X[start:start + 300], y[start:start + 300])
        voters = model.nearest_records(X[5])
        assert bool(voters[0][1] == wrong and voters[0][2]) is kept, voters[0][1:]
        assert (sum(lesson for _, _, lesson in voters) == 9) is kept
    # the same drawing taught again, right: the newer lesson outvotes the older, equally near
    model = OnlineSoftmax(neighbours=9, memory=256, lessons=4).partial_fit(
        X[:300], y[:300], classes=CLASSES)
    for label in (wrong, int(y[5])):
        model.partial_fit(X[5:6], [label], into_average=[0.75])
        voters = model.nearest_records(X[5])
        assert [v[1] for v in voters] == [label] * 9 and all(v[2] for v in voters)
        assert model.nearest_shares(X[5:6])[0][label] == 1.0


@pytest.mark.integration
def test_two_learners_serve_one_memory_of_every_record(settings, redis_client):
    """Two real Trainers (two subtasks of a job at parallelism 2) against the real Redis, with
    LEARNER_PARAMS neighbours and a memory that holds the whole run: the served model remembers
    every record either of them learned, each once (a 1 with a faint base under its stem: the
    learner's ``record_base``), and each 1 once more mirrored (with a base under its stem: the
    learner's ``mirror_base``)."""
    import dataclasses
    import itertools
    import json

    from online_ml.model_store import ModelStore
    from online_ml.producer import iter_records, make_message
    from online_ml.trainer import Trainer

    records = list(itertools.islice(iter_records(seed=11), 600))
    values = [make_message(x, y, ts="2024-01-01 12:00:00").decode() for x, y in records]
    settings = dataclasses.replace(settings, sync_every_records=25, sync_interval_seconds=0.2,
                                   backup_interval_seconds=0.5, learner_timeout_seconds=3.0,
                                   learner="softmax",
                                   learner_params=json.dumps({"neighbours": 9, "memory": 1024}))
    a, b = Trainer(settings, learners=2), Trainer(settings, learners=2)
    for start in range(0, len(values), 100):
        for i, value in enumerate(values[start:start + 100]):
            (a, b)[i % 2].process(value)
        for t in (a, b):
            t.maybe_backup()
    for t in (a, b):
        t.close()
    served = ModelStore(redis_client, settings.model_key).load().model
    xs = np.asarray([x for x, _ in records], float)
    ys = np.array([y for _, y in records])
    default = OnlineSoftmax()  # the 1s with a faint base, their mirrors with a full one
    expected = np.concatenate([xs[ys != 1], augment.with_base(xs[ys == 1], default.record_base),
                               augment.with_base(augment.mirror(xs[ys == 1]),
                                                 default.mirror_base)])
    n = len(expected)
    assert served.memory_count_ == n
    assert sorted(_memory_rows(served)) == sorted(expected.tolist())
    labels = nearest.chronological(served.memory_x_, served.memory_y_, n)[1][:n]
    assert sorted(labels.tolist()) == sorted(ys.tolist() + [1] * int((ys == 1).sum()))


def test_the_records_that_voted_nearest_first(shuffled_digits):
    X, y = shuffled_digits
    model = OnlineSoftmax(neighbours=5, memory=500, mirrored=()).partial_fit(
        X[:500], y[:500], classes=CLASSES)
    voters = model.nearest_records(X[7])
    assert len(voters) == 5
    assert np.array_equal(voters[0][0], X[7]) and voters[0][1] == y[7]  # itself, remembered
    assert not any(lesson for _, _, lesson in voters)  # records of the stream, no lesson
    d = [((row - X[7]) ** 2).sum() for row, _, _ in voters]
    assert d == sorted(d)
    assert not (((X[:500] - X[7]) ** 2).sum(1) < d[-1]).sum() > 5  # no nearer one left out
    plain = OnlineSoftmax(neighbours=0).partial_fit(X[:10], y[:10], classes=CLASSES)
    assert plain.nearest_records(X[0]) == []


@pytest.mark.integration
def test_the_board_is_told_which_records_voted(redis_client, settings):
    """``POST /predict`` with ``explain``: a model with a memory names the records that voted,
    nearest first, each with its digit and 64 cells (the default); a model without one
    (``neighbours`` 0) names none."""
    from sklearn.datasets import load_digits

    from online_ml.harness.drawings import digit_rects_svg, svg_data_url
    from online_ml.model_store import ModelStore
    from online_ml.server import create_app

    digits = load_digits()
    app = create_app({"TESTING": True, "SETTINGS": settings, "REDIS_CLIENT": redis_client,
                      "VERSION_CHECK_INTERVAL": 0})
    try:
        store = ModelStore(redis_client, prefix=settings.model_key)
        url = svg_data_url(digit_rects_svg(digits.images[4]))
        for params in ({}, {"neighbours": 0}):
            model = OnlineSoftmax(**params).partial_fit(digits.data, digits.target,
                                                        classes=CLASSES)
            store.save(model, {"samples_seen": 1797})
            answer = app.test_client().post("/predict", data={"imgStr": url, "explain": "1"})
            answer = answer.get_json()
            if params:
                assert "neighbours" not in answer and len(answer["features"]) == 64
                continue
            voters = answer["neighbours"]
            assert len(voters) == 9 and all(len(v["features"]) == 64 for v in voters)
            x = np.array(answer["features"])
            d = [((np.array(v["features"]) - x) ** 2).sum() for v in voters]
            assert d == sorted(d) and voters[0]["digit"] == digits.target[4]
            assert answer["predict_result"] == digits.target[4]
    finally:
        app.extensions["online_ml"].close()
