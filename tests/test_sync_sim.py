"""The merge simulation (online_ml/sync_sim.py, run by bench/sync_sim.py) on a slice of
`digits`: what a user of N parallel learners would notice. No services; a few seconds."""
from __future__ import annotations

import numpy as np
import pytest

from online_ml.sync_sim import Variant, load_digits_arrays, simulate


@pytest.fixture(scope="module")
def digits():
    return load_digits_arrays()


def test_one_learner_merging_every_record_learns_like_one_learner(digits):
    X, y = digits[0][:100], digits[1][:100]
    alone = simulate(Variant("sgd", 1), X, y, passes=1)
    synced = simulate(Variant("sgd", 1, "avg", 1), X, y, passes=1)
    assert synced.merges == 100
    # every prediction identical; the weights agree up to rounding (G + 1.0 * (state - G))
    assert np.array_equal(synced.predictions, alone.predictions)
    np.testing.assert_allclose(synced.served.coef_, alone.served.coef_, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(synced.served.intercept_, alone.served.intercept_,
                               rtol=1e-12, atol=1e-9)
    assert synced.served.t_ == alone.served.t_
    assert synced.served_accuracy == alone.served_accuracy


def test_naive_bayes_merged_equals_one_learner_on_the_same_records(digits):
    X, y = digits[0][:400], digits[1][:400]
    alone = simulate(Variant("nb", 1), X, y, passes=1)
    merged = simulate(Variant("nb", 2, "avg", 50), X, y, passes=1)
    assert merged.merges == 4
    assert np.array_equal(merged.served.class_count_, alone.served.class_count_)
    assert np.array_equal(merged.served.feature_count_, alone.served.feature_count_)
    assert merged.served.class_count_.sum() == 400  # every record counted once
    assert merged.served_accuracy == alone.served_accuracy


def test_averaging_beats_independent_learners(digits):
    X, y = digits
    kw = {"passes": 1, "X_eval": X, "y_eval": y}
    independent = simulate(Variant("sgd", 4), X[:200], y[:200], **kw)
    averaged = simulate(Variant("sgd", 4, "avg", 10), X[:200], y[:200], **kw)
    assert independent.merges == 0 and averaged.merges == 5  # 200 / (4 * 10)
    # the served model: one learner's quarter of the records vs everybody's, merged
    assert averaged.served_accuracy > independent.served_accuracy + 0.10
    assert averaged.per_pass[0] > independent.per_pass[0]
