"""The online learner: progressive validation (predict, then learn) and running metrics.

Pure Python on top of scikit-learn's ``partial_fit``; no Flink, Redis or Kafka here, so the same
object runs in the PyFlink UDF, in tests and in ``bench/``.

Why predict *before* learning: a prediction made after training on the same record has already
seen its label, which inflates accuracy (the tutorial did this). Predicting first means every
record is a fresh test sample for the model as it was at that moment ("prequential" or
progressive validation, as in River), so the accuracy is an honest estimate of what a user of the
served model would get.

>>> from sklearn.datasets import load_digits
>>> X, y = load_digits(return_X_y=True)
>>> learner = OnlineLearner(make_model(random_state=0))
>>> learner.learn_one(X[0], y[0]) is None   # nothing learned yet, so no prediction
True
>>> for xi, yi in zip(X[1:300], y[1:300]):
...     _ = learner.learn_one(xi, yi)
>>> learner.samples_seen
300
>>> 0.5 < learner.accuracy < 1.0
True
"""
from __future__ import annotations

import math
import operator
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from online_ml.metrics import Accuracy, LabelDistribution, RollingAccuracy

__all__ = [
    "Accuracy",
    "RollingAccuracy",
    "LabelDistribution",
    "MODELS",
    "make_model",
    "OnlineLearner",
]


# -- models ------------------------------------------------------------------------------------
def _sgd(**params: Any):
    from sklearn.linear_model import SGDClassifier

    # The tutorial's model. L1 keeps the weights sparse, log_loss gives predict_proba.
    return SGDClassifier(**{"alpha": 0.01, "loss": "log_loss", "penalty": "l1", **params})


def _perceptron(**params: Any):
    from sklearn.linear_model import Perceptron

    return Perceptron(**params)


def _passive_aggressive(**params: Any):
    from sklearn.linear_model import SGDClassifier

    # PassiveAggressiveClassifier is deprecated since scikit-learn 1.8 (removed in 1.10); this is
    # the replacement its deprecation message names.
    return SGDClassifier(**{"loss": "hinge", "penalty": None, "learning_rate": "pa1",
                            "eta0": 1.0, **params})


def _multinomial_nb(**params: Any):
    from sklearn.naive_bayes import MultinomialNB

    return MultinomialNB(**params)


def _mlp(**params: Any):
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(**{"hidden_layer_sizes": (32,), "learning_rate_init": 0.001, **params})


def _softmax(**params: Any):
    from .softmax import OnlineSoftmax

    # Learns the first pass of digits faster than River's softmax regression, at a fraction of
    # its cost per record, without hurting real handwriting (online_ml/softmax.py, issue 10).
    return OnlineSoftmax(**params)


MODELS: dict[str, Callable[..., Any]] = {
    "sgd": _sgd,
    "perceptron": _perceptron,
    "pa": _passive_aggressive,
    "nb": _multinomial_nb,
    "mlp": _mlp,
    "softmax": _softmax,
}


def make_model(name: str = "sgd", **params: Any):
    """A fresh, unfitted estimator that supports ``partial_fit``.

    ``name`` is one of ``MODELS``; ``params`` override the defaults (sklearn's own names).
    The default is the tutorial's ``SGDClassifier(alpha=0.01, loss='log_loss', penalty='l1')``.

    >>> make_model()
    SGDClassifier(alpha=0.01, loss='log_loss', penalty='l1')
    >>> make_model("sgd", alpha=0.001).alpha
    0.001
    """
    try:
        factory = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}") from None
    return factory(**params)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    return repr(value)


def _averages(model: Any) -> bool:
    """Does ``model`` predict with averaged weights that a step can move at once
    (``partial_fit(..., into_average=...)``)? The softmax learner does."""
    from .softmax import OnlineSoftmax

    return isinstance(model, OnlineSoftmax)


def _as_row(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(1, -1)


def predict_chunk(samples_seen: int, cap: int) -> int:
    """How many records mini-batch mode predicts with one model before learning them.

    A fresh model improves with every record, so early chunks are small (close to row mode); a
    trained one changes slowly, so large chunks cost little accuracy and save most of
    scikit-learn's per-call overhead: ``samples_seen / 16``, between 8 and ``cap``.

    >>> predict_chunk(0, 1024), predict_chunk(1600, 1024), predict_chunk(10**6, 1024)
    (8, 100, 1024)
    """
    return int(min(cap, max(8, samples_seen // 16)))


# -- the learner -------------------------------------------------------------------------------
class OnlineLearner:
    """Wraps a ``partial_fit`` estimator with progressive validation and running metrics.

    ``samples_seen`` (and, through ``from_stored``, the other counters) lets a restarted job
    continue counting where the stored model left off.
    """

    def __init__(
        self,
        model: Any = None,
        classes: Sequence[int] = tuple(range(10)),
        window: int = 500,
        samples_seen: int = 0,
    ):
        self.model = make_model() if model is None else model
        self.classes = np.asarray(classes)
        self._class_set = frozenset(int(c) for c in self.classes)
        self._samples_seen = int(samples_seen)
        # Counters for what this object evaluates; from_stored continues them from metadata.
        self.accuracy_metric = Accuracy()
        self.rolling_metric = RollingAccuracy(window)
        self.labels = LabelDistribution()

    # -- state ---------------------------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        """True once the model has been trained on something (here or before it was stored)."""
        return hasattr(self.model, "classes_")

    @property
    def samples_seen(self) -> int:
        return self._samples_seen

    @property
    def correct(self) -> int:
        return self.accuracy_metric.correct

    @property
    def accuracy(self) -> float:
        return self.accuracy_metric.get()

    @property
    def rolling_accuracy(self) -> float:
        return self.rolling_metric.get()

    # -- predicting and learning ---------------------------------------------------------------
    def predict_one(self, x: Sequence[float]) -> int | None:
        """The model's label for ``x``, or None while it has not seen any data."""
        if not self.fitted:
            return None
        return int(self.model.predict(_as_row(x))[0])

    def predict_many(self, X: Iterable[Sequence[float]]) -> list[int | None]:
        rows = np.asarray(X, dtype=np.float64)
        if not self.fitted:
            return [None] * len(rows)
        return np.asarray(self.model.predict(rows)).astype(np.int64).tolist()

    def _check_label(self, y: Any) -> int:
        try:
            label = operator.index(y)  # ints and numpy ints; not 3.5, not "3"
        except TypeError:
            label = None
        if label is None or label not in self._class_set:
            raise ValueError(f"label {y!r} is not one of the classes {sorted(self._class_set)}")
        return label

    def _check_labels(self, y: Iterable[Any]) -> list[int]:
        """``_check_label`` over many labels; an integer array is checked as one."""
        if isinstance(y, np.ndarray) and y.ndim == 1 and y.dtype.kind in "iu":
            if np.isin(y, self.classes).all():
                return y.tolist()
        return [self._check_label(v) for v in y]

    def _record(self, y: int, pred: int | None) -> None:
        self.accuracy_metric.update(y, pred)
        self.rolling_metric.update(y, pred)
        self.labels.update(y)

    def learn_one(self, x: Sequence[float], y: int, served: float = 0.0) -> int | None:
        """Predict ``x``, score that prediction against ``y``, then train on ``(x, y)``.

        Returns the prediction made *before* training (None for the very first record).
        A label outside ``classes`` raises ValueError before anything changes. ``served``: for
        a model that predicts with averaged weights (the softmax learner's ``into_average``),
        the share of the step that also goes straight into them (FEEDBACK_STEP_SHARE for the
        board's feedback); any other model takes its ordinary step.
        """
        label = self._check_label(y)
        row = _as_row(x)
        pred = int(self.model.predict(row)[0]) if self.fitted else None
        if served and _averages(self.model):
            self.model.partial_fit(row, [label], classes=self.classes, into_average=[served])
        else:
            self.model.partial_fit(row, [label], classes=self.classes)
        self._record(label, pred)
        self._samples_seen += 1
        return pred

    def learn_many(self, X: Iterable[Sequence[float]], y: Iterable[int],
                   served: Any = None) -> list[int | None]:
        """Mini-batch version of ``learn_one``: predict every row, then one ``partial_fit``;
        ``served``, a share per row (None: 0 for all), as ``learn_one``'s.

        All predictions come from the model as it was *before* the batch, so a record never
        benefits from its batch-mates' labels. Only the Python/sklearn call overhead is shared:
        SGD-style models still take one gradient step per row inside ``partial_fit``, so the
        resulting model is close to (not identical to) ``learn_one`` over the same rows, where each
        row's prediction also benefits from the steps of the rows before it.
        """
        rows = np.asarray(X, dtype=np.float64)
        if rows.ndim != 2:
            raise ValueError(f"X must be 2-dimensional, got shape {rows.shape}")
        labels = self._check_labels(y)
        if len(labels) != len(rows):
            raise ValueError(f"X has {len(rows)} rows but y has {len(labels)} labels")
        if not labels:
            return []
        preds = self.predict_many(rows)
        if served is not None and _averages(self.model) and np.any(served):
            self.model.partial_fit(rows, labels, classes=self.classes, into_average=served)
        else:
            self.model.partial_fit(rows, labels, classes=self.classes)
        # the metrics once per batch, as _record per row would leave them
        hits = [pred is not None and pred == label for label, pred in zip(labels, preds)]
        self.accuracy_metric.add_many(len(hits), sum(hits))
        self.rolling_metric.add_many(hits)
        self.labels.update_many(labels)
        self._samples_seen += len(labels)
        return preds

    def set_counts(self, samples_seen: int, evaluated: int, correct: int,
                   labels: Mapping[Hashable, int]) -> None:
        """Take over counters merged from parallel learners (online_ml/sync_protocol.py)."""
        self._samples_seen = max(0, int(samples_seen))
        evaluated = max(0, int(evaluated))
        self.accuracy_metric = Accuracy(n=evaluated, correct=min(max(0, int(correct)), evaluated))
        self.labels = LabelDistribution(labels)

    # -- persistence ---------------------------------------------------------------------------
    def snapshot(self) -> dict:
        """JSON-able metrics and identity of the learner, stored as the model's metadata.

        The rolling window's contents are not included (only its value): after a restart the
        rolling accuracy starts again from an empty window, the cumulative counters continue.
        """
        params = {}
        if hasattr(self.model, "get_params"):
            params = {k: _jsonable(v) for k, v in sorted(self.model.get_params().items())}
        return {
            "samples_seen": self._samples_seen,
            "correct": self.accuracy_metric.correct,
            "evaluated": self.accuracy_metric.n,
            "accuracy": self.accuracy,
            "rolling_accuracy": self.rolling_accuracy,
            "rolling_window": self.rolling_metric.window,
            "rolling_n": self.rolling_metric.n,
            "label_distribution": {str(k): v for k, v in self.labels.get().items()},
            "learner": type(self.model).__name__,
            "params": params,
            "classes": [int(c) for c in self.classes],
        }

    @classmethod
    def from_stored(
        cls,
        model: Any,
        meta: Mapping[str, Any] | None,
        classes: Sequence[int] | None = None,
        window: int | None = None,
    ) -> OnlineLearner:
        """Rebuild a learner around a stored model, continuing its counters from ``meta``.

        ``meta`` is what ``snapshot()`` returned (plus whatever the store added); missing or
        malformed fields fall back to zero rather than failing, so an old or hand-written
        metadata record never stops the job from starting.

        >>> learner = OnlineLearner.from_stored(make_model(), {"samples_seen": 10, "correct": 7})
        >>> learner.samples_seen, learner.accuracy
        (10, 0.7)
        """
        meta = dict(meta or {})

        def number(key: str, default: int = 0) -> int:
            try:
                return max(0, int(meta.get(key, default)))
            except (TypeError, ValueError):
                return default

        if classes is None:
            if hasattr(model, "classes_"):
                classes = [int(c) for c in model.classes_]
            elif isinstance(meta.get("classes"), list):
                classes = meta["classes"]
            else:
                classes = tuple(range(10))
        if window is None:
            window = number("rolling_window", 500) or 500
        seen = number("samples_seen")
        learner = cls(model, classes=classes, window=window, samples_seen=seen)
        evaluated = number("evaluated", seen)
        if "correct" in meta:
            correct = number("correct")
        else:  # older metadata: only the accuracy
            try:
                correct = round(float(meta.get("accuracy", 0.0)) * evaluated)
            except (TypeError, ValueError):
                correct = 0
        correct = min(correct, evaluated)
        learner.accuracy_metric = Accuracy(n=evaluated, correct=correct)
        dist = meta.get("label_distribution")
        if isinstance(dist, Mapping):
            counts: dict[Hashable, int] = {}
            for k, v in dist.items():
                try:
                    counts[int(k)] = int(v)
                except (TypeError, ValueError):
                    continue
            learner.labels = LabelDistribution(counts)
        return learner

    def __repr__(self) -> str:
        return (f"OnlineLearner({type(self.model).__name__}, samples_seen={self.samples_seen}, "
                f"accuracy={self.accuracy:.4f}, rolling_accuracy={self.rolling_accuracy:.4f})")
