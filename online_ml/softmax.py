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
* **random Fourier features** (``kernel_features`` > 0): the scaled cells are followed by
  ``kernel_features`` more inputs ``kernel_weight * cos(x @ R + c)``, ``R`` drawn N(0, 2 *
  ``kernel_gamma``) and ``c`` uniform in [0, 2 pi) from ``kernel_seed`` (Rahimi and Recht's
  approximation of an RBF kernel). The model stays one softmax regression trained the same way,
  but on inputs in which "a stem and a bottom row" is not the sum of the two: it is no longer
  linear in the cells. ``R`` and ``c`` are drawn again from the seed when needed, never stored.
  ``kernel_features=0`` is the linear model (and what a model stored before these parameters
  existed loads as). The inputs and each cell's contribution to a score:
  online_ml/random_features.py.
* **the nearest records** (``neighbours`` > 0; 9 by default): the model also keeps the last
  ``memory`` records it learned (online_ml/nearest.py) and its scores become its
  log-probabilities plus ``votes`` times the share of the ``neighbours`` nearest of them that
  carry each label. ``neighbours=0`` (and a model stored before this parameter existed) is the
  plain softmax. A correction from the board (a row learned with ``into_average``) is kept
  ``feedback_copies`` times (9 by default): next to the drawings like it, it outvotes what the
  stream taught there (bench/teaching.py: on test one correction then makes the corrected drawing
  right 99.0 % of the time instead of 83.3 %, and the others +0.39 points instead of +0.30).
  Corrections go to a ring of their own, the **lessons** (``lessons``, the last 64 by default),
  each searched with the records as ``feedback_copies`` of them: a correction lasts until 64
  newer ones, not until the stream's 2,048 next records push it out of the memory (~3.4 min at
  the demo's 10 records a second).
* **training-time augmentation** (``augment`` > 0; 1 by default since late 2026-12-03): the weights
  also learn ``augment`` random affine variants of each record — turned up to ``AFFINE["turn"]``
  degrees, its width scaled by up to ``AFFINE["widen"]`` either way, sheared up to
  ``AFFINE["shear"]`` (online_ml/augment.py) — each normalised as the server normalises a
  drawing (deskewed, the height filling the box, the width capped, centred by mass) and
  counted: people's digits are turned and as wide as they like, ``digits``' 1,797 are not.
  Variants are not counted in any metric (the learner counts records) and not remembered; their
  ink is kept to the cells records have inked. ``augment=0`` (and a model stored before it
  existed) learns the records alone. Measured (docs/handwriting.md, *Training-time
  augmentation*): it gains on the board's strokes beyond chance, and learning a record costs
  about twice as much (the job's throughput halves).
* **mirrored 1s** (``mirrored``, the labels whose records are also learned mirrored left to
  right; ``(1,)`` by default since 2026-12-04): a 1 in a mirror is a 1, so each 1 of the stream is
  also learned and remembered as its mirror image (online_ml/augment.py, ``with_mirrors``), not
  counted in any metric. ``digits``' based 1s have a foot to the right; a 1 with a flag and a base
  centred under its stem was, to the data, a narrow 2. ``()`` (and a model stored before it
  existed) learns the records as they are (docs/handwriting.md, *Mirrored 1s*). The mirror
  also gets a base centred under its stem (``mirror_base``, the base's ink, 16 of 16 by default
  since 2026-12-05; 0, and a model stored before, the plain mirror): of 1s with a flag, with a
  base or not, the plain mirror read a third as 2, the longest flags over a base nearly all
  (bench/mirrored.py). And the 1 itself is learned and remembered with a faint base under its
  stem (``record_base``, ink 8, since late 2026-12-05; 0, and a model stored before, none): the
  flattest, longest flag over a base, which still read 2, reads 1, and real handwriting gains on
  dev; it is still predicted and scored as it came.

``partial_fit`` takes one step per row, in order, so mini-batch mode (``OnlineLearner.learn_many``)
learns what row mode learns; only its predictions come from the model before the chunk. The steps
are one compiled loop (``online_ml/softmax_steps.py``, numba: ~5 µs a record; as numpy calls they
took ~30); predicting is plain numpy, no scikit-learn per-call validation.

>>> from sklearn.datasets import load_digits
>>> X, y = load_digits(return_X_y=True)
>>> model = OnlineSoftmax().partial_fit(X[:1000], y[:1000], classes=list(range(10)))
>>> float((model.predict(X[1000:]) == y[1000:]).mean()) > 0.85
True
>>> model.coef_.shape, model.predict_proba(X[:1]).sum().round(6)  # 64 cells, 512 random features
((10, 576), np.float64(1.0))
>>> linear = OnlineSoftmax(kernel_features=0).partial_fit(X[:1000], y[:1000], classes=range(10))
>>> linear.coef_.shape
(10, 64)
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError

from . import nearest
from .augment import with_mirrors, with_variants
from .random_features import RandomFeatures
from .records import RecordMemory

__all__ = ["OnlineSoftmax"]

#: Added under the square root of AdaGrad's accumulator, so a weight that never had a gradient
#: takes no step (and the first step is about ``learning_rate`` in size).
EPS = 1e-8


class OnlineSoftmax(RandomFeatures, RecordMemory, ClassifierMixin, BaseEstimator):
    """Softmax regression trained online with AdaGrad, L2 decay and tail-averaged weights.

    Parameters (defaults chosen on the prequential stream and the development split of real
    handwriting, see the module docstring):

    learning_rate : AdaGrad's step size.
    l2 : weight decay on the weights (not the biases).
    average : the averaged weights cover about the last ``average * t_`` steps (0: no averaging,
        the model predicts with its last weights).
    scale : fixed input scaling, ``x * scale`` (1/16 for cells of 0..16).
    kernel_features, kernel_gamma, kernel_weight, kernel_seed : the random Fourier features
        appended to the scaled cells (0: none, a linear model); see the module docstring.
    neighbours, memory, votes : how many of the last ``memory`` records learned vote, and their
        weight against the log-probabilities (``neighbours`` 0: no memory, no votes).
    augment : how many random affine variants of each record the weights also learn (0: the
        records alone); see the module docstring.
    augment_stroke : the variants' strokes also made thinner or thicker, at random: binarised at
        a coverage up to this either side of a half (0, the default: at a half, the stroke of
        ``digits``; bench/candidates.py measures 0.15, issue 10's "stroke width" variants).
    feedback_copies : how many records a row learned with a share into the averaged weights
        (``into_average``: the board's feedback) counts as among the nearest (kept once among the
        ``lessons``, or that many times in the memory of records without them), so that a person's
        correction is as many of the nearest records to the drawings like it, and outvotes what
        the stream taught there: 9, all of a drawing's ``neighbours`` nearest (chosen with
        FEEDBACK_STEP_SHARE on the development split by bench/teaching.py, 2026-12-04; 1, as any
        record, before and for a model stored before).
    lessons : how many corrections a ring of their own keeps (the oldest goes first), each
        stored once and searched with the memory of records as ``feedback_copies`` records (0:
        they go into the memory of records with the stream's, ``feedback_copies`` times each, as
        before and for a model stored before).
    mirrored : labels whose records (of the stream: not the board's corrections) are also learned
        and remembered mirrored left to right, right after each (``(1,)``; ``()``: none).
    mirror_base : the ink (of 16) of a base centred under each mirrored copy's stem (0: none).
    record_base : the ink (of 16) of a base centred under the stem of each record so mirrored,
        as it is learned and remembered (0: none; a faint one, 8, by default).

    Fitted state (plain arrays and one float, so the store serialises it with skops and parallel
    learners merge it, online_ml/sync.py): ``weights_``/``bias_`` (the current iterate, in scaled
    inputs), ``avg_weights_``/``avg_bias_`` (what predicts), ``accum_``/``accum_bias_`` (AdaGrad's
    sums of squared gradients), ``t_`` (steps taken); with ``neighbours``, the ring of records
    ``memory_x_``/``memory_y_``/``memory_count_`` and, with ``lessons``, the ring of corrections
    ``lessons_x_``/``lessons_y_``/``lessons_count_`` (parallel learners append theirs, not
    average them). ``coef_``/``intercept_`` are the averaged weights on raw inputs, as scikit-learn's
    linear models name them.
    """

    # what a model stored before these parameters existed reads (a linear model, no memory)
    kernel_features = 0
    kernel_gamma = 0.1
    kernel_weight = 0.125
    kernel_seed = 1
    neighbours = 0
    memory = 2048
    votes = 2.0
    augment = 0
    augment_stroke = 0.0
    feedback_copies = 1
    lessons = 0
    mirrored: Sequence[Any] = ()
    mirror_base = 0.0
    record_base = 0.0

    def __init__(self, learning_rate: float = 0.5, l2: float = 1e-3, average: float = 0.3,
                 scale: float = 1 / 16, kernel_features: int = 512, kernel_gamma: float = 0.1,
                 kernel_weight: float = 0.125, kernel_seed: int = 1, neighbours: int = 9,
                 memory: int = 2048, votes: float = 2.0, augment: int = 1,
                 augment_stroke: float = 0.0, feedback_copies: int = 9, lessons: int = 64,
                 mirrored: Sequence[Any] = (1,), mirror_base: float = 16.0,
                 record_base: float = 8.0):
        self.learning_rate = learning_rate
        self.l2 = l2
        self.average = average
        self.scale = scale
        self.kernel_features = kernel_features
        self.kernel_gamma = kernel_gamma
        self.kernel_weight = kernel_weight
        self.kernel_seed = kernel_seed
        self.neighbours = neighbours
        self.memory = memory
        self.votes = votes
        self.augment = augment
        self.augment_stroke = augment_stroke
        self.feedback_copies = feedback_copies
        self.lessons = lessons
        self.mirrored = mirrored
        self.mirror_base = mirror_base
        self.record_base = record_base

    # -- state ---------------------------------------------------------------------------------
    def _init_state(self, n_features: int, classes: Sequence[Any]) -> None:
        classes_ = np.asarray(classes)
        if classes_.ndim != 1 or len(classes_) < 2 or len(set(classes_.tolist())) != len(classes_):
            raise ValueError(f"classes must be at least two distinct labels, got {classes!r}")
        if not (self.learning_rate > 0 and self.l2 >= 0 and 0 <= self.average <= 1
                and self.scale > 0 and isinstance(self.kernel_features, int)
                and self.kernel_features >= 0 and self.kernel_gamma > 0
                and self.kernel_weight > 0 and isinstance(self.kernel_seed, int)
                and isinstance(self.neighbours, int) and self.neighbours >= 0
                and isinstance(self.memory, int) and self.memory >= 1 and self.votes >= 0
                and isinstance(self.augment, int) and self.augment >= 0
                and 0 <= self.augment_stroke < 0.5 and 0 <= self.mirror_base <= 16
                and 0 <= self.record_base <= 16
                and isinstance(self.feedback_copies, int) and self.feedback_copies >= 1
                and isinstance(self.lessons, int) and self.lessons >= 0):
            raise ValueError("need learning_rate > 0, l2 >= 0, 0 <= average <= 1, scale > 0, an "
                             "int kernel_features >= 0, kernel_gamma > 0, kernel_weight > 0, "
                             "an int kernel_seed, an int neighbours >= 0, an int memory >= 1, "
                             "votes >= 0, an int augment >= 0, 0 <= augment_stroke < 0.5, "
                             "0 <= mirror_base <= 16, 0 <= record_base <= 16, an int "
                             f"feedback_copies >= 1 and an int lessons >= 0; got {self.get_params()}")
        if self.augment and int(n_features) != 64:
            raise ValueError(f"augment draws variants of 8x8 images: it needs 64 features, got "
                             f"{n_features} (set augment 0)")
        unknown = [v for v in self.mirrored if v not in set(classes_.tolist())]
        if unknown or (self.mirrored and int(n_features) != 64):
            raise ValueError(f"mirrored must name classes of this model ({classes_.tolist()}) and "
                             f"needs 64 features (8x8 images): got {list(self.mirrored)} with "
                             f"{n_features} features (set mirrored [])")
        k = len(classes_)
        width = int(n_features) + self.kernel_features
        self.classes_ = classes_
        self.n_features_in_ = int(n_features)
        self.weights_ = np.zeros((k, width))
        self.bias_ = np.zeros(k)
        self.avg_weights_ = np.zeros((k, width))
        self.avg_bias_ = np.zeros(k)
        self.accum_ = np.zeros((k, width))
        self.accum_bias_ = np.zeros(k)
        self.t_ = 0.0
        self._init_memory(int(n_features))

    @property
    def coef_(self) -> np.ndarray:
        """The averaged weights per raw input cell (what ``decision_function`` uses), then, with
        random Fourier features, per feature of those (on their own scale)."""
        n = self.n_features_in_
        return np.hstack([self.avg_weights_[:, :n] * self.scale, self.avg_weights_[:, n:]])

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
                    sample_weight: Any = None, into_average: Any = None,
                    variants: bool = True, remembered: int = 1,
                    lesson: bool = False) -> OnlineSoftmax:
        """One AdaGrad step per row, in order. ``classes`` is required on the first call (as
        scikit-learn's ``partial_fit``); a row of weight 0 takes no step.

        With ``augment`` k > 0 (training-time augmentation), each row of weight > 0 is followed by
        k random affine variants of it (:func:`variants_of`), which take ordinary steps and are
        not remembered (remembered, they crowded the records out of the memory: in an ad hoc run
        the flagged 1s with a base 0.41 of their height read 1 fell from all to two thirds);
        ``variants=False`` learns the rows alone (a feedback row with a share). With a memory of
        records, each row that took a step is remembered ``remembered`` times in a row (a
        feedback row: ``feedback_copies``); with ``lesson``, once among the lessons instead if
        the model keeps them (searched as ``feedback_copies`` records).

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
        from .softmax_steps import adagrad_kernel_steps, adagrad_steps  # numba: only the job

        col_index = np.asarray(cols, dtype=np.int64)
        if self.mirrored and variants and len(X):  # each 1 then its mirror image, remembered too
            marked = np.zeros(len(self.classes_), dtype=bool)
            marked[[index[v] for v in self.mirrored]] = True
            X, col_index, weights = with_mirrors(X, col_index, weights, marked,
                                                 float(self.mirror_base),
                                                 float(self.record_base))
        real = np.ones(len(X), dtype=bool)
        if self.augment and variants and len(X):
            # each row's variants after it, masked to the cells records have inked up to its own
            # (made-up ink never gives a cell a weight), and which rows are records
            X, col_index, weights, real = with_variants(
                X, col_index, weights, int(self.t_), int(self.augment), self._seen(),
                float(self.augment_stroke))

        nearest.use_compiled()  # this process learns: its votes are compiled from now on too
        state = (col_index, weights, self.weights_, self.bias_,
                 self.accum_, self.accum_bias_, self.avg_weights_, self.avg_bias_, float(self.t_),
                 float(self.learning_rate), float(self.l2), float(self.average), EPS)
        kernel = self._kernel()
        if kernel is None:
            self.t_ = float(adagrad_steps(X * self.scale, *state))
        else:  # each row's random features from the cells seen before it (``_inputs``)
            self.t_ = float(adagrad_kernel_steps(X * self.scale, *state, *kernel,
                                                 float(self.kernel_weight)))
        if self._remembers():  # a row of weight 0 took no step and is not remembered either
            kept = (weights > 0) & real
            self._remember(X[kept], col_index[kept], remembered, lesson)
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
                             None if weights is None else weights[row:row + 1], variants=False,
                             remembered=int(self.feedback_copies), lesson=True)
            if before is not None:
                self.avg_weights_ += shares[row] * (self.weights_ - before[0])
                self.avg_bias_ += shares[row] * (self.bias_ - before[1])
            start = row + 1
        return self

    # -- predicting ----------------------------------------------------------------------------
    def decision_function(self, X: Any, averaged: bool = True) -> np.ndarray:
        """The ten class scores of the averaged model, shape (n_samples, n_classes);
        ``averaged=False``: of the last iterate (the weights the next step starts from). Without
        a memory these are the weights' logits (:meth:`weight_scores`); with ``neighbours``, their
        log-probabilities plus ``votes`` times the nearest records' label shares
        (online_ml/nearest.py)."""
        X = self._checked(X)
        z = self._weight_scores(X, averaged)
        if not self._remembers():
            return z
        z = z - z.max(axis=1, keepdims=True)
        z = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return z + self.votes * self._shares(X)

    def weight_scores(self, X: Any, averaged: bool = True) -> np.ndarray:
        """The logits the weights alone give (``decision_function`` without the memory's votes):
        what :meth:`contributions` shares out among the cells."""
        return self._weight_scores(self._checked(X), averaged)

    def _checked(self, X: Any) -> np.ndarray:
        if not hasattr(self, "classes_"):
            raise NotFittedError("this OnlineSoftmax is not fitted yet: call partial_fit first")
        return self._rows(X)

    def _weight_scores(self, X: np.ndarray, averaged: bool) -> np.ndarray:
        if not averaged:
            return self._inputs(X) @ self.weights_.T + self.bias_
        return self._inputs(X) @ self.avg_weights_.T + self.avg_bias_

    def predict_proba(self, X: Any) -> np.ndarray:
        """The model's own probabilities: the softmax of its scores (temperature 1)."""
        z = self.decision_function(X)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        best = self.decision_function(X).argmax(axis=1)
        return self.classes_[best]
