"""What a model's state is to the parallel learners (online_ml/sync.py holds the rules that merge
it): the named arrays of each mergeable learner with their merge rule, a copy of them, writing
them back, and a fresh model's. The softmax learner's memory of records and its lessons are rings
(``RINGS``), appended rather than averaged.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from online_ml import nearest

AVG = "avg"
STEP = "step"
SUM = "sum"
APPEND = "append"

State = dict[str, np.ndarray]
Rules = dict[str, str]


class NotMergeable(ValueError):
    """The learner's model cannot be merged across parallel learners."""


# -- what a model's state is ---------------------------------------------------------------------
SOFTMAX_ARRAYS = ("weights_", "bias_", "avg_weights_", "avg_bias_", "accum_", "accum_bias_")
SOFTMAX_STEPPED = ("weights_", "bias_", "avg_weights_", "avg_bias_")
#: The softmax learner's memory of records (``neighbours``, online_ml/nearest.py): its rows, their
#: labels and how many were ever written. Not averaged: appended (``sync.merge_states``).
MEMORY = ("memory_x_", "memory_y_", "memory_count_")
#: Its lessons (``lessons``): the board's corrections, a ring of their own, appended the same way.
LESSONS = ("lessons_x_", "lessons_y_", "lessons_count_")
RINGS = (MEMORY, LESSONS)


def rings_in(arrays: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The rings (:data:`RINGS`) among ``arrays``' names."""
    return [ring for ring in RINGS if ring[0] in arrays]


def _kind(model: Any) -> str:
    from sklearn.linear_model._stochastic_gradient import BaseSGDClassifier
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.neural_network import MLPClassifier

    from .softmax import OnlineSoftmax

    if isinstance(model, OnlineSoftmax):
        return "softmax"
    if isinstance(model, BaseSGDClassifier):  # SGDClassifier, Perceptron, the PA replacement
        return "linear"
    if isinstance(model, MultinomialNB):
        return "counts"
    if isinstance(model, MLPClassifier):
        return "mlp"
    raise NotMergeable(
        f"{type(model).__name__} cannot be merged across parallel learners; at parallelism > 1 "
        "use one of the mergeable learners: sgd, perceptron, pa, softmax (averaged weights), nb "
        "(added counts) or mlp (averaged weights)")


def check_mergeable(model: Any) -> None:
    """Raise :class:`NotMergeable` with a clear message for a model that cannot be merged."""
    _kind(model)


def _stochastic_gradient(model: Any) -> bool:
    """SGD proper (the √K step is measured for it): not the perceptron, not the passive-
    aggressive steps (``pa``), whose step lengths are their own."""
    from sklearn.linear_model import SGDClassifier

    return type(model) is SGDClassifier and model.learning_rate not in ("pa1", "pa2")


def _arrays(model: Any) -> dict[str, tuple[Any, str]]:
    """name -> (the live array object, merge rule) for a fitted model."""
    kind = _kind(model)
    out: dict[str, tuple[Any, str]] = {}
    if kind == "linear":
        rule = STEP if _stochastic_gradient(model) else AVG
        for name in ("coef_", "intercept_", "_average_coef", "_average_intercept",
                     "_standard_coef", "_standard_intercept"):
            if isinstance(getattr(model, name, None), np.ndarray):
                out[name] = (getattr(model, name), rule)
        # SGD's step counter sets the learning rate (1 / (alpha * (t0 + t_))). Merged like the
        # weights, it counts the merged model's steps, not everybody's samples: N learners'
        # steps averaged are one step on N samples, and summing t_ decayed the rate N times too
        # fast (bench/sync_sim.py, variants "avg" against "avg-tsum").
        out["t_"] = (model.t_, rule)
    elif kind == "softmax":
        for name in SOFTMAX_ARRAYS:
            # the weights and their running average take the √K step; AdaGrad's accumulators
            # stay a plain mean (a longer step there would shrink every later step)
            out[name] = (getattr(model, name), STEP if name in SOFTMAX_STEPPED else AVG)
        out["t_"] = (model.t_, AVG)
        if model._remembers():  # the records each learner remembered, written after the others'
            for ring in [MEMORY, *([LESSONS] if model._keeps_lessons() else [])]:
                for name in ring:
                    out[name] = (getattr(model, name), APPEND)
    elif kind == "counts":
        out["class_count_"] = (model.class_count_, SUM)
        out["feature_count_"] = (model.feature_count_, SUM)
    else:  # mlp
        for i, a in enumerate(model.coefs_):
            out[f"coefs_.{i}"] = (a, AVG)
        for i, a in enumerate(model.intercepts_):
            out[f"intercepts_.{i}"] = (a, AVG)
        out["t_"] = (model.t_, SUM)
    return out


def fitted(model: Any) -> bool:
    return hasattr(model, "classes_")


def state_of(model: Any) -> State | None:
    """A copy of the model's mergeable arrays (None while it is unfitted); a memory of records
    oldest first (``nearest.chronological``)."""
    if not fitted(model):
        return None
    arrays = _arrays(model)
    out = {name: np.array(value, dtype=np.float64, copy=True)
           for name, (value, rule) in arrays.items() if rule != APPEND}
    for ring in rings_in(arrays):
        count = getattr(model, ring[2])
        x, y = nearest.chronological(getattr(model, ring[0]), getattr(model, ring[1]), count)
        out.update(zip(ring, (x.astype(np.float64), y.astype(np.float64),
                              np.array(float(count)))))
    return out


def rules_of(model: Any) -> Rules:
    return {name: rule for name, (_, rule) in _arrays(model).items()}


def zero_based(model: Any) -> bool:
    """True when a fresh model of this kind starts from all zeros (its base is zero)."""
    return _kind(model) != "mlp"


def set_state(model: Any, state: Mapping[str, np.ndarray]) -> None:
    """Write ``state`` into the fitted ``model`` in place (the MLP's optimiser holds references
    to its arrays, so they are overwritten, not replaced) and refresh what derives from it."""
    arrays = _arrays(model)
    for name, (value, rule) in arrays.items():
        new = state[name]
        if rule == APPEND:
            continue
        if name == "t_":
            model.t_ = float(new)
        elif isinstance(value, np.ndarray):
            if value.shape != np.shape(new):
                raise ValueError(f"{name}: shape {np.shape(new)} does not fit {value.shape}")
            value[...] = new
    if _kind(model) == "counts":
        model._update_feature_log_prob(model._check_alpha())
        model._update_class_log_prior(class_prior=model.class_prior)
    for ring in rings_in(arrays):  # a memory of records, the lessons: rows back into the rings
        x, y, count = (state[name] for name in ring)
        setattr(model, ring[2], nearest.restore(getattr(model, ring[0]), getattr(model, ring[1]),
                                                x, y, float(count)))


def initialise(model: Any, like: State, classes: Sequence[int]) -> None:
    """Give an unfitted model its arrays (all zero for the linear models and naive Bayes), so a
    merger that has learned nothing yet itself can still merge the others' contributions.
    Its arrays are overwritten by :func:`set_state` right after."""
    kind = _kind(model)
    if kind == "linear":
        n_features = like["coef_"].shape[1]
    elif kind == "softmax":  # the cells, then the random Fourier features (if any)
        n_features = like["weights_"].shape[1] - model.kernel_features
    elif kind == "counts":
        n_features = like["feature_count_"].shape[1]
    else:
        n_features = like["coefs_.0"].shape[0]
    weight = {} if kind == "mlp" else {"sample_weight": [0.0]}
    model.partial_fit(np.zeros((1, n_features)), [classes[0]], classes=list(classes), **weight)


# -- arithmetic ----------------------------------------------------------------------------------
def fresh_state(model: Any, like: State) -> State:
    """What a fresh model of this kind holds before any record: zeros, except SGD's step
    counter ``t_``, which starts at 1 (so N fresh learners do not add N-1 phantom steps)."""
    out = {k: np.zeros_like(v) for k, v in like.items()}
    if _kind(model) == "linear":
        out["t_"] = np.array(1.0)
    for ring in rings_in(like):  # an empty ring of the model's capacity
        capacity = int(model.memory if ring is MEMORY else model.lessons)
        out[ring[0]] = np.zeros((capacity, *np.shape(like[ring[0]])[1:]))
        out[ring[1]] = np.zeros(capacity)
    return out
