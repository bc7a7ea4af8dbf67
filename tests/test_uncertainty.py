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
