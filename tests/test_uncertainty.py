"""Probabilities a person can read, and the "not sure" rule (online_ml/uncertainty.py)."""
from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier

from online_ml import uncertainty as unc


def test_fitted_temperature_recovers_the_true_one():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, size=(4000, 10))
    p = unc.softmax(z, 2.5)
    y = np.array([rng.choice(10, p=row) for row in p])
    assert abs(unc.fit_temperature(z, y, range(10)) - 2.5) < 0.3


def test_threshold_gives_the_promised_precision_on_the_data_it_was_chosen_on():
    rng = np.random.default_rng(1)
    top = rng.uniform(0.1, 1, 2000)
    correct = rng.uniform(0, 1, 2000) < top  # right as often as it says
    t = unc.choose_threshold(top, correct, precision=0.9)
    assert correct[top >= t].mean() >= 0.9
    assert 0.7 < t < 0.95
    assert unc.choose_threshold(top, np.zeros(2000, bool), 0.9) == 1.0


def test_the_promise_holds_on_new_drawings_as_often_as_the_confidence_asked():
    """Chosen where the share right merely reaches 0.9 (z=0), the threshold keeps the promise on
    a fresh sample about half of the time; with the one-sided 95 % bound (the default) about 9
    times in 10 (the fresh sample's own share right varies too)."""
    rng = np.random.default_rng(2)

    def sample():
        top = rng.uniform(0.1, 1, 2500)
        return top, rng.uniform(0, 1, 2500) < top

    kept: dict[float, list[bool]] = {0.0: [], unc.SURE_Z: []}
    for _ in range(200):
        (dev_top, dev_right), (test_top, test_right) = sample(), sample()
        for z in kept:
            t = unc.choose_threshold(dev_top, dev_right, 0.9, z=z)
            kept[z].append(bool(test_right[test_top >= t].mean() >= 0.9))
    assert 0.3 < np.mean(kept[0.0]) < 0.7, np.mean(kept[0.0])
    assert np.mean(kept[unc.SURE_Z]) >= 0.8, np.mean(kept[unc.SURE_Z])


def test_calibrated_probabilities_are_neither_certain_nor_flat_on_a_mixed_digit():
    digits = load_digits()
    model = SGDClassifier(loss="log_loss", alpha=0.001, penalty="l1", random_state=0)
    model.fit(digits.data, digits.target)
    x = ((digits.data[digits.target == 3][0] + digits.data[digits.target == 8][0]) / 2)[None]
    p = unc.probabilities(model, x)[0]
    assert 0.12 < p.max() < 0.999
    assert abs(p.sum() - 1) < 1e-9
    assert unc.probabilities(SGDClassifier(loss="hinge").fit(digits.data, digits.target),
                             x) is None


def test_verdict_names_the_two_likely_digits_when_unsure():
    p = np.array([0.02, 0.01, 0.02, 0.40, 0.02, 0.05, 0.02, 0.01, 0.44, 0.01])
    assert unc.verdict(p, range(10), threshold=0.6) == {"sure": False, "candidates": [8, 3]}
    assert unc.verdict(p, range(10), threshold=0.4) == {"sure": True, "candidates": [8]}


def test_expected_calibration_error():
    top = np.array([0.9] * 10)
    assert unc.expected_calibration_error(top, np.array([1] * 9 + [0])) < 1e-9
    assert abs(unc.expected_calibration_error(top, np.zeros(10)) - 0.9) < 1e-9


def test_linear_scores_are_the_models_decision_function():
    """/predict scores scikit-learn's linear models without their input validation
    (uncertainty._linear_scores): the very same numbers as ``decision_function``."""
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float64)
    model = SGDClassifier(loss="log_loss", random_state=0).fit(X[:600], y[:600])
    for i in range(0, 600, 7):
        row = X[i:i + 1]
        assert np.array_equal(unc._linear_scores(model, row), model.decision_function(row))
    assert np.array_equal(unc._linear_scores(model, X), model.decision_function(X))
    with np.testing.assert_raises(ValueError):  # what sklearn refuses, it still refuses
        unc._linear_scores(model, np.full((1, 64), np.nan))


# -- one calibration per learner ---------------------------------------------------------------
def test_each_learner_has_its_own_calibration_chosen_by_the_models_type():
    from online_ml.learner import make_model

    softmax_model, sgd_model = make_model("softmax", neighbours=0), make_model("sgd", alpha=0.001)
    assert unc.learner_of(softmax_model) == "softmax" and unc.learner_of(sgd_model) == "sgd"
    assert unc.calibration(softmax_model) == unc.CALIBRATIONS["softmax"]
    assert unc.calibration(sgd_model) == unc.CALIBRATIONS["sgd"]
    # the values fitted on the development split (README "When the model is not sure")
    assert 0.5 < unc.CALIBRATIONS["softmax"].temperature < 1.5
    assert unc.CALIBRATIONS["sgd"].temperature == 2020.0
    assert unc.CALIBRATIONS["sgd"].threshold == 0.67
    assert unc.calibration(make_model("nb")) == unc.UNFITTED  # not fitted: its own predict_proba
    remembers = make_model("softmax", augment=0)  # the memory and its votes: fitted apart
    assert unc.learner_of(remembers) == "softmax-neighbours"
    assert unc.calibration(remembers) == unc.CALIBRATIONS["softmax-neighbours"]
    assert unc.served_views(remembers, np.zeros((2, 64))).shape == (2, 64)
    default = make_model("softmax")  # and with training-time augmentation: fitted apart again
    assert unc.learner_of(default) == "softmax-augmented"
    assert unc.calibration(default) == unc.CALIBRATIONS["softmax-augmented"]
    assert unc.served_views(default, np.zeros((2, 64))).shape == (1, 64)  # one view
    # without its memory, augmented or not: the plain softmax's numbers
    assert unc.learner_of(make_model("softmax", neighbours=0, augment=1)) == "softmax"


def _mixed_3_and_8() -> np.ndarray:
    digits = load_digits()
    return ((digits.data[digits.target == 3][0] + digits.data[digits.target == 8][0]) / 2)[None]


def test_each_learner_is_sure_of_a_clean_digit_and_not_of_a_mixed_one_with_its_own_values():
    """With its own temperature and threshold, each trained learner is sure of a digit it learned
    and unsure of a 3 drawn over an 8; with the other learner's values it is not (SGD's 2020
    flattens the softmax's logits to ~10 %: never sure)."""
    from online_ml.learner import OnlineLearner, make_model

    digits = load_digits()
    x_mixed = _mixed_3_and_8()
    for name, params in (("softmax", {}), ("sgd", {"alpha": 0.001, "random_state": 0})):
        learner = OnlineLearner(make_model(name, **params))
        for _ in range(3):
            learner.learn_many(digits.data, digits.target)
        model = learner.model
        own = unc.CALIBRATIONS[unc.learner_of(model)]
        clean = unc.probabilities(model, digits.data[:200])  # the model's own temperature
        assert np.allclose(clean, unc.softmax(unc.logits(model, digits.data[:200]),
                                              own.temperature))
        sure = [unc.verdict(p, model.classes_, own.threshold)["sure"] for p in clean]
        assert np.mean(sure) > 0.8, name
        mixed = unc.verdict(unc.probabilities(model, x_mixed)[0], model.classes_, own.threshold)
        assert mixed["sure"] is False and set(mixed["candidates"]) & {3, 8}, (name, mixed)
    softmax_model = OnlineLearner(make_model("softmax"))
    softmax_model.learn_many(digits.data, digits.target)
    flat = unc.probabilities(softmax_model.model, digits.data[:200],
                             unc.CALIBRATIONS["sgd"].temperature)
    assert flat.max() < 0.2  # SGD's temperature on softmax logits: ~10 % everywhere


def test_views_average_decision_values_and_one_view_is_the_plain_answer():
    """A drawing scored by its views (a bitmap: two, features.image_to_views): the softmax of
    the decision values averaged over them; one view gives exactly ``probabilities``; a model
    without decision values averages its probabilities; one without probabilities still answers."""
    from sklearn.naive_bayes import MultinomialNB

    digits = load_digits()
    model = SGDClassifier(loss="log_loss", alpha=0.001, penalty="l1", random_state=0)
    model.fit(digits.data, digits.target)
    views = digits.data[[3, 8]]  # two different rows stand for two views of one drawing
    assert np.array_equal(unc.view_probabilities(model, views[:1]), unc.probabilities(model, views[:1]))
    mean_z = unc.logits(model, views).mean(axis=0, keepdims=True)
    p = unc.view_probabilities(model, views)
    assert p.shape == (1, 10)
    assert np.allclose(p, unc.softmax(mean_z, unc.calibration(model).temperature))
    nb = MultinomialNB().fit(digits.data, digits.target)
    assert np.allclose(unc.view_probabilities(nb, views), nb.predict_proba(views).mean(axis=0))
    hinge = SGDClassifier(loss="hinge", random_state=0).fit(digits.data, digits.target)
    assert unc.view_probabilities(hinge, views) is None
    assert unc.view_predict(hinge, views) == hinge.classes_[hinge.decision_function(views).mean(0).argmax()]
    assert unc.view_predict(hinge, views[:1]) == hinge.predict(views[:1])[0]


def test_only_the_learners_it_earns_its_place_with_score_both_views():
    """Test-time augmentation is served per learner (bench/handwriting.py's rule): softmax without
    training-time augmentation scores a bitmap's two views; with it (the default), SGD (both lost
    the round trip) and unmeasured learners the first."""
    from sklearn.naive_bayes import MultinomialNB

    from online_ml.softmax import OnlineSoftmax

    digits = load_digits()
    views = digits.data[[3, 8]].astype(np.float64)
    soft = OnlineSoftmax(augment=0).partial_fit(digits.data[:200], digits.target[:200],
                                                classes=list(range(10)))
    augmented = OnlineSoftmax().partial_fit(digits.data[:200], digits.target[:200],
                                            classes=list(range(10)))
    sgd = SGDClassifier(loss="log_loss", random_state=0).fit(digits.data, digits.target)
    nb = MultinomialNB().fit(digits.data, digits.target)
    assert unc.BITMAP_VIEW_LEARNERS == {"softmax", "softmax-neighbours"}
    assert np.array_equal(unc.served_views(soft, views), views)
    for model in (augmented, sgd, nb):
        assert np.array_equal(unc.served_views(model, views), views[:1])
