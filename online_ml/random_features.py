"""The softmax learner's inputs: its scaled cells, then its random Fourier features, and what
each cell contributes to a score (online_ml/softmax.py; the board's "for / against" picture).

The random Fourier features (``kernel_features`` > 0) follow the scaled cells:
``kernel_weight * cos(x @ R + c)``, ``R`` drawn N(0, 2 * ``kernel_gamma``) and ``c`` uniform in
[0, 2 pi) from ``kernel_seed`` (Rahimi and Recht's approximation of an RBF kernel); ``R`` and ``c``
are drawn again from the seed when needed, never stored. They see only the cells some record
learned so far had ink in, so stray ink elsewhere moves no score.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["RandomFeatures"]

_FOURIER: dict[tuple[int, int, int, float], tuple[np.ndarray, np.ndarray]] = {}


def _fourier(seed: int, n_in: int, d: int, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """``R`` (n_in x d, N(0, 2 gamma)) and ``c`` (d, uniform in [0, 2 pi)) of the random
    Fourier features, from ``seed`` (numpy's legacy ``RandomState``: the same numbers on every
    numpy version, so the job and the server draw the same features)."""
    key = (seed, n_in, d, gamma)
    if key not in _FOURIER:
        rng = np.random.RandomState(seed)
        R = rng.normal(0.0, np.sqrt(2 * gamma), (n_in, d))
        c = rng.uniform(0.0, 2 * np.pi, d)
        _FOURIER[key] = (R, c)
    return _FOURIER[key]


class RandomFeatures:
    """The inputs of :class:`~online_ml.softmax.OnlineSoftmax` (a mixin: it reads the host's
    ``scale``, ``kernel_*``, ``n_features_in_``, ``weights_``, ``avg_weights_``, ``classes_``
    and ``_checked``)."""

    # set by the host (OnlineSoftmax), declared for the type checker
    scale: float
    kernel_features: int
    kernel_gamma: float
    kernel_weight: float
    kernel_seed: int
    n_features_in_: int
    weights_: np.ndarray
    avg_weights_: np.ndarray
    classes_: np.ndarray

    def _checked(self, X: Any) -> np.ndarray:
        raise NotImplementedError

    def _kernel(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The random Fourier features' ``R`` and ``c`` (None without them); drawn from the seed,
        cached per process, never part of the stored model."""
        d = self.kernel_features
        if not d:
            return None
        return _fourier(int(self.kernel_seed), self.n_features_in_, int(d),
                        float(self.kernel_gamma))

    def _inputs(self, X: np.ndarray) -> np.ndarray:
        """What the weights multiply: the scaled cells, then the random Fourier features."""
        scaled = X * self.scale
        kernel = self._kernel()
        if kernel is None:
            return scaled
        R, c = kernel
        return np.hstack([scaled, self.kernel_weight * np.cos((scaled * self._seen()) @ R + c)])

    def _seen(self) -> np.ndarray:
        """1 for the cells some record learned so far had ink in, 0 for the others. The random
        features see only those: a cell never inked in training has weight 0 exactly (its
        gradient and its decay are 0), and stray ink there must move no score with the random
        features either (tests/test_softmax.py)."""
        return (self.weights_[:, :self.n_features_in_] != 0).any(axis=0).astype(np.float64)

    def contributions(self, x: Any, label: Any, steps: int = 16) -> np.ndarray:
        """What each input cell of one row ``x`` added to class ``label``'s score against a blank
        input (all zeros): the weight times the cell for the cells themselves, and for the random
        Fourier features their integrated gradient along the straight line from blank to ``x``
        (``steps`` midpoints), shared out to the cells. The contributions add up to the weights'
        score of ``x`` (:meth:`weight_scores`: without the memory's votes, which are the nearest
        records' and belong to no cell) minus a blank input's (exactly for a linear model; within
        the midpoint rule's error with the random features)."""
        x = self._checked(np.asarray(x, dtype=np.float64).reshape(1, -1))[0]
        k = self.classes_.tolist().index(label)
        n = self.n_features_in_
        w = self.avg_weights_[k]
        out = w[:n] * self.scale * x
        kernel = self._kernel()
        if kernel is not None:
            R, c = kernel
            seen = self._seen()
            scaled = x * self.scale * seen
            alphas = (np.arange(steps) + 0.5) / steps
            # d/dx of kernel_weight * cos(scaled @ R + c) . w_k, at each point of the line
            u = (alphas[:, None] * scaled[None, :]) @ R + c
            grad = -(np.sin(u) * w[n:]) @ R.T * (self.kernel_weight * self.scale) * seen
            out = out + x * grad.mean(axis=0)
        return out
