"""A multinomial (softmax) regression that learns fast from few examples: ``LEARNER=softmax``.

Why not the default one-vs-rest SGD: ten independent logistic models, each with one global
learning rate, learn the first pass of ``digits`` slower than one softmax model whose steps adapt
per weight. Why not River's ``StandardScaler | SoftmaxRegression`` (or scikit-learn's MLP without
hidden layer after an online ``StandardScaler``): dividing each cell by its standard deviation
blows up stray ink in the near-empty border cells of ``digits`` and costs real handwriting
(issue 10, point 7). What this model does instead, each choice measured in ``bench/learners.py``
(prequential accuracy) and on the development split of real handwriting:

* **fixed input scaling** ``x / 16`` (``digits`` cells are 0..16): every cell on the same footing,
  nothing estimated from the stream, nothing to blow up. (Centring on a running mean learned the
  stream a little faster and got less real handwriting right.)
* **AdaGrad** steps ``learning_rate / sqrt(sum of squared gradients)`` per weight: large steps
  while a weight is new, smaller as evidence accumulates; no schedule to tune.
* **L2 weight decay** ``l2``: keeps weights of rarely inked cells small.
* **tail averaging**: predictions (and ``coef_``) use a running average of the weights over
  roughly the last ``average`` share of the steps, a cheap ensemble of recent models that is
  steadier on drawings unlike ``digits`` than the last step's weights.

``partial_fit`` takes one step per row, in order, so mini-batch mode (``OnlineLearner.learn_many``)
learns what row mode learns; only its predictions come from the model before the chunk. The steps
are one compiled loop (``online_ml/softmax_steps.py``, numba: ~5 µs a record; as numpy calls they
took ~30); predicting is plain numpy, no scikit-learn per-call validation.

>>> from sklearn.datasets import load_digits
>>> X, y = load_digits(return_X_y=True)
>>> model = OnlineSoftmax().partial_fit(X[:1000], y[:1000], classes=list(range(10)))
>>> float((model.predict(X[1000:]) == y[1000:]).mean()) > 0.9
True
>>> model.coef_.shape, model.predict_proba(X[:1]).sum().round(6)
((10, 64), np.float64(1.0))
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError

__all__ = ["OnlineSoftmax"]

#: Added under the square root of AdaGrad's accumulator, so a weight that never had a gradient
#: takes no step (and the first step is about ``learning_rate`` in size).
EPS = 1e-8


class OnlineSoftmax(ClassifierMixin, BaseEstimator):
    """Softmax regression trained online with AdaGrad, L2 decay and tail-averaged weights.

    Parameters (defaults chosen on the prequential stream and the development split of real
    handwriting, see the module docstring):

    learning_rate : AdaGrad's step size.
    l2 : weight decay on the weights (not the biases).
    average : the averaged weights cover about the last ``average * t_`` steps (0: no averaging,
        the model predicts with its last weights).
    scale : fixed input scaling, ``x * scale`` (1/16 for cells of 0..16).

    Fitted state (plain arrays and one float, so the store serialises it with skops and parallel
    learners merge it, online_ml/sync.py): ``weights_``/``bias_`` (the current iterate, in scaled
    inputs), ``avg_weights_``/``avg_bias_`` (what predicts), ``accum_``/``accum_bias_`` (AdaGrad's
    sums of squared gradients), ``t_`` (steps taken). ``coef_``/``intercept_`` are the averaged
    weights on raw inputs, as scikit-learn's linear models name them.
    """

    def __init__(self, learning_rate: float = 0.5, l2: float = 1e-3, average: float = 0.3,
                 scale: float = 1 / 16):
        self.learning_rate = learning_rate
        self.l2 = l2
        self.average = average
        self.scale = scale

    # -- state ---------------------------------------------------------------------------------
    def _init_state(self, n_features: int, classes: Sequence[Any]) -> None:
        classes_ = np.asarray(classes)
        if classes_.ndim != 1 or len(classes_) < 2 or len(set(classes_.tolist())) != len(classes_):
            raise ValueError(f"classes must be at least two distinct labels, got {classes!r}")
        if not (self.learning_rate > 0 and self.l2 >= 0 and 0 <= self.average <= 1
                and self.scale > 0):
            raise ValueError("need learning_rate > 0, l2 >= 0, 0 <= average <= 1, scale > 0; got "
                             f"{self.get_params()}")
        k = len(classes_)
        self.classes_ = classes_
        self.n_features_in_ = int(n_features)
        self.weights_ = np.zeros((k, n_features))
        self.bias_ = np.zeros(k)
        self.avg_weights_ = np.zeros((k, n_features))
        self.avg_bias_ = np.zeros(k)
        self.accum_ = np.zeros((k, n_features))
        self.accum_bias_ = np.zeros(k)
        self.t_ = 0.0

    @property
    def coef_(self) -> np.ndarray:
        """The averaged weights per raw input cell (what ``decision_function`` uses)."""
        return self.avg_weights_ * self.scale

    @property
    def intercept_(self) -> np.ndarray:
        return self.avg_bias_

    def _rows(self, X: Any) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-dimensional, got shape {X.shape}")
        if hasattr(self, "n_features_in_") and X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, the model expects "
                             f"{self.n_features_in_}")
        if not np.isfinite(X).all():
            raise ValueError("X contains NaN or infinity")
        return X

    # -- learning ------------------------------------------------------------------------------
    def partial_fit(self, X: Any, y: Any, classes: Sequence[Any] | None = None,
                    sample_weight: Any = None, into_average: Any = None) -> OnlineSoftmax:
        """One AdaGrad step per row, in order. ``classes`` is required on the first call (as
        scikit-learn's ``partial_fit``); a row of weight 0 takes no step.

        ``into_average``: a share per row (None: 0 for all). A row's step also moves the averaged
        weights, which predict, by that share of what it moves the last iterate, on top of the
        running average's ``1 / (average * t_)`` share of it: a lesson from the drawing board's
        feedback (FEEDBACK_STEP_SHARE) shows in the next answers, where an ordinary step would
        need hundreds of repeats (README, *Teaching it*)."""
        X = self._rows(X)
        if into_average is not None:
            shares = np.asarray(into_average, dtype=np.float64).reshape(-1)
            if len(shares) != len(X) or not (np.isfinite(shares).all() and (shares >= 0).all()):
                raise ValueError(f"into_average must hold a share >= 0 for each of the {len(X)} "
                                 f"rows, got {len(shares)} shares")
            if shares.any():
                return self._fit_shared(X, y, classes, sample_weight, shares)
        if not hasattr(self, "classes_"):
            if classes is None:
                raise ValueError("classes must be given on the first call to partial_fit")
            self._init_state(X.shape[1], classes)
        index = {c: i for i, c in enumerate(self.classes_.tolist())}
        labels = np.asarray(y).tolist()
        if len(labels) != len(X):
            raise ValueError(f"X has {len(X)} rows but y has {len(labels)} labels")
        try:
            cols = [index[v] for v in labels]
        except KeyError as exc:
            raise ValueError(f"label {exc.args[0]!r} is not one of the classes "
                             f"{self.classes_.tolist()}") from None
        weights = (np.ones(len(X)) if sample_weight is None
                   else np.asarray(sample_weight, dtype=np.float64).reshape(-1))
        if len(weights) != len(X):
            raise ValueError(f"sample_weight has {len(weights)} values for {len(X)} rows")
        from .softmax_steps import adagrad_steps  # numba: the job learns, the server does not

        self.t_ = float(adagrad_steps(
            X * self.scale, np.asarray(cols, dtype=np.int64), weights, self.weights_, self.bias_,
            self.accum_, self.accum_bias_, self.avg_weights_, self.avg_bias_, float(self.t_),
            float(self.learning_rate), float(self.l2), float(self.average), EPS))
        return self

    def _fit_shared(self, X: np.ndarray, y: Any, classes: Sequence[Any] | None,
                    sample_weight: Any, shares: np.ndarray) -> OnlineSoftmax:
        """``partial_fit`` with some rows' steps also moving the average by ``shares`` of the
        iterate's step: the runs of ordinary rows in one call each, every other row on its own."""
        labels = np.asarray(y)
        weights = None if sample_weight is None else np.asarray(sample_weight).reshape(-1)
        if len(labels) != len(X):
            raise ValueError(f"X has {len(X)} rows but y has {len(labels)} labels")
        start = 0
        for row in [*np.flatnonzero(shares).tolist(), len(X)]:
            if row > start:
                self.partial_fit(X[start:row], labels[start:row], classes,
                                 None if weights is None else weights[start:row])
            if row == len(X):
                break
            before = (self.weights_.copy(), self.bias_.copy()) if hasattr(self, "classes_") \
                else None  # a first step ever: the average is that step already
            self.partial_fit(X[row:row + 1], labels[row:row + 1], classes,
                             None if weights is None else weights[row:row + 1])
            if before is not None:
                self.avg_weights_ += shares[row] * (self.weights_ - before[0])
                self.avg_bias_ += shares[row] * (self.bias_ - before[1])
            start = row + 1
        return self

    # -- predicting ----------------------------------------------------------------------------
    def decision_function(self, X: Any) -> np.ndarray:
        """The ten class scores (logits) of the averaged model, shape (n_samples, n_classes)."""
        if not hasattr(self, "classes_"):
            raise NotFittedError("this OnlineSoftmax is not fitted yet: call partial_fit first")
        X = self._rows(X)
        return (X * self.scale) @ self.avg_weights_.T + self.avg_bias_

    def predict_proba(self, X: Any) -> np.ndarray:
        """The model's own probabilities: the softmax of its scores (temperature 1)."""
        z = self.decision_function(X)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        best = self.decision_function(X).argmax(axis=1)
        return self.classes_[best]
