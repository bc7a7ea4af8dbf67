"""The softmax learner's memory of records (``neighbours``; online_ml/nearest.py): a ring of the
last records learned, their votes blended into the scores, predict-then-learn kept, safe to
store, refused where it would not be one model (parallelism > 1)."""
import doctest

import numpy as np
import pytest

from online_ml import model_store, nearest, sync
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


def test_without_neighbours_the_model_is_the_plain_softmax(shuffled_digits):
    X, y = shuffled_digits
    plain = OnlineSoftmax().partial_fit(X[:300], y[:300], classes=CLASSES)
    off = OnlineSoftmax(neighbours=0).partial_fit(X[:300], y[:300], classes=CLASSES)
    assert not hasattr(off, "memory_x_")
    assert np.array_equal(plain.decision_function(X), off.decision_function(X))


def test_scores_are_log_probabilities_plus_the_votes(shuffled_digits):
    X, y = shuffled_digits
    model = OnlineSoftmax(neighbours=5, memory=300).partial_fit(X[:300], y[:300], classes=CLASSES)
    assert model.memory_count_ == 300
    plain = OnlineSoftmax().partial_fit(X[:300], y[:300], classes=CLASSES)
    z = plain.decision_function(X[300:400])
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    shares = model.nearest_shares(X[300:400])
    assert np.allclose(shares.sum(1), 1.0)
    assert np.allclose(model.decision_function(X[300:400]), logp + 2.0 * shares)
    # a record it learned is its own nearest: with enough weight on the votes it is read as
    # the label it was taught, whatever the weights say
    taught = OnlineSoftmax(neighbours=1, votes=100.0).partial_fit(X[:50], (y[:50] + 1) % 10,
                                                                   classes=CLASSES)
    assert (taught.predict(X[:50]) == (y[:50] + 1) % 10).all()


def test_the_record_being_predicted_is_not_remembered_yet(shuffled_digits):
    """Predict, then learn: the row path (OnlineLearner.learn_one) scores a record before the
    memory holds it, and a row of weight 0 (a merger's initialisation) is never remembered."""
    X, y = shuffled_digits
    learner = OnlineLearner(make_model("softmax", neighbours=1, votes=100.0))
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
    rows = OnlineSoftmax(neighbours=9, memory=64)
    for i in range(200):
        rows.partial_fit(X[i:i + 1], y[i:i + 1], classes=CLASSES)
    chunk = OnlineSoftmax(neighbours=9, memory=64).partial_fit(X[:200], y[:200], classes=CLASSES)
    shared = OnlineSoftmax(neighbours=9, memory=64).partial_fit(  # feedback rows: one by one
        X[:200], y[:200], classes=CLASSES, into_average=[0.25 if i % 7 == 0 else 0 for i in range(200)])
    for other in (chunk, shared):
        assert other.memory_count_ == rows.memory_count_ == 200
        assert np.array_equal(other.memory_x_, rows.memory_x_)
        assert np.array_equal(other.memory_y_, rows.memory_y_)
    assert np.allclose(chunk.decision_function(X[200:300]), rows.decision_function(X[200:300]))


def test_bad_memory_settings_are_refused(shuffled_digits):
    X, y = shuffled_digits
    for params in ({"neighbours": -1}, {"neighbours": 2.5}, {"memory": 0}, {"votes": -1.0}):
        with pytest.raises(ValueError, match="neighbours"):
            OnlineSoftmax(**params).partial_fit(X[:2], y[:2], classes=CLASSES)


def test_stored_with_its_memory_and_a_model_stored_before_loads_without(shuffled_digits):
    X, y = shuffled_digits
    model = OnlineSoftmax(neighbours=9, memory=128).partial_fit(X[:300], y[:300], classes=CLASSES)
    back = model_store.loads(model_store.dumps(model))
    assert back.memory_x_.dtype == np.float32 and back.memory_count_ == 300
    assert np.array_equal(back.decision_function(X), model.decision_function(X))
    back.partial_fit(X[300:301], y[300:301])
    assert back.memory_count_ == 301
    old = model_store.loads(model_store.dumps(OnlineSoftmax().partial_fit(X[:30], y[:30],
                                                                           classes=CLASSES)))
    for name in ("neighbours", "memory", "votes"):
        del old.__dict__[name]  # what a model stored by the code before them holds
    assert old.neighbours == 0 and not old._remembers()
    old.partial_fit(X[30:31], y[30:31])


def test_refused_at_parallelism_above_one_with_a_clear_error(shuffled_digits):
    """Its memory is not merged: N learners would each vote with their own records."""
    with pytest.raises(sync.NotMergeable, match="parallelism 1"):
        sync.check_mergeable(make_model("softmax", neighbours=9))
    sync.check_mergeable(make_model("softmax"))
    # alone, a sync round writes the merged arrays back and leaves the memory as it was
    X, y = shuffled_digits
    model = OnlineSoftmax(neighbours=9).partial_fit(X[:100], y[:100], classes=CLASSES)
    memory = model.memory_x_.copy()
    sync.set_state(model, sync.merge_states(None, [(sync.state_of(model), 100)],
                                            sync.rules_of(model)))
    assert np.array_equal(model.memory_x_, memory) and model.memory_count_ == 100
