"""Training-time augmentation of ``digits`` records (``OnlineSoftmax(augment=k)``): each record
also learned as ``k`` random affine variants of it, normalised as the server normalises a
drawing (online_ml/features.py), so that the weights see digits turned, widened and sheared as
people draw them. The variants are drawn by the compiled steps (online_ml/softmax_steps.py: numba,
imported only where a model learns); this module holds their parameters.

Measured (docs/handwriting.md, *Training-time augmentation*): it gains on the board's strokes
beyond chance; thinner or thicker strokes too (``augment_stroke``) gained nothing beyond chance
(bench/candidates.py) and are off.

Mirrored records (``OnlineSoftmax(mirrored=(1,))``, :func:`with_mirrors`): a 1 seen in a mirror
is still a 1, so each 1 of the stream is also learned, and remembered, mirrored left to right.
``digits``' 1s with a base have it as a foot to the right; mirrored, as a foot to the left; with
both, a 1 with a flag and a base centred under its stem — as people draw it — is among 1s, where
it was a narrow 2's shape (docs/handwriting.md, *Mirrored 1s*).
"""
from __future__ import annotations

import numpy as np

__all__ = ["AFFINE", "AUGMENT_SEED", "AFFINE_ARGS", "mirror", "variants_of", "with_mirrors",
           "with_variants"]

#: Training-time augmentation's variants (``augment``): turned up to ``turn`` degrees either way,
#: the width scaled by up to ``widen`` either way, sheared across by up to ``shear`` — chosen on
#: the development split of real handwriting (ad hoc, 2026-12-03: 5 to 15 degrees, 0.1 to 0.25,
#: 0 or 0.3, each alone and together; the largest tried gained most) — then normalised as the
#: server normalises a drawing (``features.MAX_WIDTH`` and ``SQUASH_LIMIT``, ``normalise.MAX_SLANT``).
AFFINE = {"turn": 15.0, "widen": 0.25, "shear": 0.3}
AUGMENT_SEED = 20261203
#: ``AFFINE`` and the server's normalisation (``features.MAX_WIDTH`` in px, ``SQUASH_LIMIT``,
#: ``normalise.MAX_SLANT``; tests/test_softmax.py checks they agree), as the compiled steps take them
AFFINE_ARGS = (AFFINE["turn"], AFFINE["widen"], AFFINE["shear"], 24.0, 2.5, 1.0)


def variants_of(X: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """One random affine variant (``AFFINE``) of each row of ``X`` (8x8 ``digits`` counts), the
    variant's parameters drawn from ``steps`` (one integer per row, the number of the step that
    learns it: the same variant of a record whether it is learned in row mode or in a chunk).
    Compiled (``softmax_steps.variants_at``, ~40 µs a variant).

    >>> from sklearn.datasets import load_digits
    >>> x = load_digits().data[[0, 0, 1]]
    >>> v = variants_of(x, np.array([1, 2, 1]))
    >>> v.shape, bool((v != x).any(axis=1).all()), bool((v[0] != v[1]).any())
    ((3, 64), True, True)
    >>> bool(np.array_equal(variants_of(x[:1], np.array([1])), v[:1]))  # the step decides
    True
    """
    from .softmax_steps import variants_at  # numba: only where a model learns

    return variants_at(np.ascontiguousarray(X, dtype=np.float64),
                       np.asarray(steps, dtype=np.int64), AUGMENT_SEED, *AFFINE_ARGS)


def mirror(X: np.ndarray) -> np.ndarray:
    """Rows of 8x8 cells mirrored left to right.

    >>> mirror(np.arange(64.0)[None])[0, :8].tolist()
    [7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0]
    """
    X = np.asarray(X)
    return X.reshape(len(X), 8, 8)[:, :, ::-1].reshape(len(X), 64)


def with_mirrors(X: np.ndarray, cols: np.ndarray, weights: np.ndarray, mirrored: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows a call of ``partial_fit`` learns with mirrored records: each row of ``X`` whose
    class index (``cols``) is marked in ``mirrored`` (a bool per class) and that takes a step
    (weight > 0) followed by its mirror image (:func:`mirror`), of the same class and weight; the
    other rows as they are.

    >>> X = np.arange(3 * 64.0).reshape(3, 64)
    >>> rows, cols, weights = with_mirrors(X, np.array([0, 1, 1]), np.array([1.0, 1.0, 0.0]),
    ...                                    np.array([False, True]))
    >>> cols.tolist(), weights.tolist(), bool((rows[2] == mirror(X[1:2])[0]).all())
    ([0, 1, 1, 1], [1.0, 1.0, 1.0, 0.0], True)
    """
    pick = mirrored[cols] & (weights > 0)  # a lookup, not np.isin: this runs for every record
    if not pick.any():
        return X, cols, weights
    index = np.repeat(np.arange(len(X)), 1 + pick)
    second = np.zeros(len(index), dtype=bool)
    second[np.cumsum(1 + pick)[pick] - 1] = True  # the copy after each picked row
    rows = X[index]
    rows[second] = mirror(rows[second])
    return rows, cols[index], weights[index]


def with_variants(X: np.ndarray, cols: np.ndarray, weights: np.ndarray, first_step: int, k: int,
                  seen: np.ndarray, stroke: float = 0.0
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The rows a call of ``partial_fit`` learns: each row of ``X`` (class indices ``cols``,
    ``weights``) followed by ``k`` variants of it (a variant takes its record's class and
    weight), their steps numbered from ``first_step``, masked to the cells inked so far (``seen``,
    then each learned row's own: made-up ink never gives a cell a weight, so stray ink where no
    record of the stream had any still moves no score), with ``stroke`` (``augment_stroke``);
    also which rows are records (``softmax_steps.with_variants``)."""
    from .softmax_steps import with_variants as compiled  # numba: only where a model learns

    return compiled(np.ascontiguousarray(X, dtype=np.float64), cols,
                    np.ascontiguousarray(weights, dtype=np.float64), int(first_step), int(k),
                    seen, AUGMENT_SEED, *AFFINE_ARGS, float(stroke))
