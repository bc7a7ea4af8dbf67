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

A base under the mirror (``OnlineSoftmax(mirror_base=16)``, :func:`with_base`): the mirrored
copy also gets a base centred under its stem, as printed 1s have one and no 1 in ``digits``
has. A 1 with a long, flat flag and a base is then among 1s, where the plain mirror left it a
narrow 2's shape a third of the time; a base under the record itself (not its mirror) read far
fewer of them (bench/mirrored.py, *A base under the mirror* in docs/handwriting.md).

And a faint base under the record too (``OnlineSoftmax(record_base=8)``, late 2026-12-05): each 1
is learned and remembered with a base of half a stroke's ink under its stem (it is predicted as
it came). Then every 1 by flag reads 1, the flattest and longest over a base too, in two strokes
or one, and more of real handwriting on dev; a full base there (16) reads fewer of both
(bench/mirrored.py, *A faint base under the record too*).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

__all__ = ["AFFINE", "AUGMENT_SEED", "AFFINE_ARGS", "BASE_HALF", "mirror", "normalised_at",
           "variants_of", "with_base", "with_mirrors", "with_variants"]

#: Training-time augmentation's variants (``augment``): turned up to ``turn`` degrees either way,
#: the width scaled by up to ``widen`` either way, sheared across by up to ``shear`` — chosen on
#: the development split of real handwriting (ad hoc, 2026-12-03: 5 to 15 degrees, 0.1 to 0.25,
#: 0 or 0.3, each alone and together; the largest tried gained most) — then normalised as the
#: server normalises a drawing (``features.MAX_WIDTH`` and ``SQUASH_LIMIT``, ``normalise.MAX_SLANT``).
AFFINE = {"turn": 15.0, "widen": 0.25, "shear": 0.3}
AUGMENT_SEED = 20261203
#: ``AFFINE`` and the server's normalisation (``features.MAX_WIDTH`` in px, ``SQUASH_LIMIT``,
#: ``normalise.MAX_SLANT``; tests/test_softmax.py checks they agree), as the compiled steps take them
AFFINE_ARGS = (AFFINE["turn"], AFFINE["widen"], AFFINE["shear"], 20.0, 2.5, 1.0)


@contextmanager
def normalised_at(max_width_px: float) -> Iterator[None]:
    """Variants normalised to another widest width (px of the 32 px box) than the server's
    while inside: how bench/handwriting_width.py trains the model a server at that width would
    serve, before it scores that width (the model learns its variants as the server would
    normalise a drawing). Not for the job: its variants must match ``features.MAX_WIDTH``.

    >>> from online_ml import augment
    >>> with normalised_at(24):
    ...     augment.AFFINE_ARGS[3]
    24.0
    >>> augment.AFFINE_ARGS[3]
    20.0
    """
    global AFFINE_ARGS
    served = AFFINE_ARGS
    AFFINE_ARGS = (*served[:3], float(max_width_px), *served[4:])
    try:
        yield
    finally:
        AFFINE_ARGS = served


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


#: How many cells either side of the stem's a base (:func:`with_base`) covers: 5 of the 8
#: columns, 20 of the 32 px, about 0.6 of the height (people's bases, ``mouse_digits.FLAG_BASES``,
#: are 0.39 to 0.66 of it). Ad hoc, 2026-12-05, digits at most 24 px wide, the base's ink 16, five
#: orders of the stream: with 1 or 3 cells either side 0.78 of ``mouse_digits.ones_by_flag`` read
#: 1 for every order, with 2 0.96 to 0.98; a base under the record itself rather than its mirror
#: (ink 12) read 0.62 to 0.87 of them.
BASE_HALF = 2


def with_base(X: np.ndarray, level: float) -> np.ndarray:
    """Rows of 8x8 cells with a base centred under the stem: in the bottom row, the cells within
    ``BASE_HALF`` of the stem's column (the column nearest the centre of the lower half's ink)
    inked at least ``level`` (of 16, the served: a stroke as thick as the block).

    >>> one = np.zeros((1, 8, 8)); one[0, :, 3] = 16        # a plain 1: a stem in column 3
    >>> with_base(one.reshape(1, 64), 12.0).reshape(8, 8)[7].tolist()
    [0.0, 12.0, 12.0, 16.0, 12.0, 12.0, 0.0, 0.0]
    """
    cells = np.array(X, dtype=np.float64).reshape(len(X), 8, 8)
    lower = cells[:, 4:].sum(axis=1)
    ink = lower.sum(axis=1)
    centre = (lower @ np.arange(8.0)) / np.where(ink > 0, ink, 1.0)
    stem = np.where(ink > 0, np.rint(centre), 3.5)
    under = np.abs(np.arange(8)[None, :] - stem[:, None]) <= BASE_HALF
    cells[:, 7] = np.where(under, np.maximum(cells[:, 7], level), cells[:, 7])
    return cells.reshape(len(X), 64)


def with_mirrors(X: np.ndarray, cols: np.ndarray, weights: np.ndarray, mirrored: np.ndarray,
                 base: float = 0.0, record_base: float = 0.0
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows a call of ``partial_fit`` learns with mirrored records: each row of ``X`` whose
    class index (``cols``) is marked in ``mirrored`` (a bool per class) and that takes a step
    (weight > 0), with a base of ink ``record_base`` under its stem (:func:`with_base`; 0:
    none), followed by its mirror image (:func:`mirror`) with a base of ink ``base`` under its
    stem, of the same class and weight; the other rows as they are.

    >>> X = np.arange(3 * 64.0).reshape(3, 64)
    >>> rows, cols, weights = with_mirrors(X, np.array([0, 1, 1]), np.array([1.0, 1.0, 0.0]),
    ...                                    np.array([False, True]))
    >>> cols.tolist(), weights.tolist(), bool((rows[2] == mirror(X[1:2])[0]).all())
    ([0, 1, 1, 1], [1.0, 1.0, 1.0, 0.0], True)
    >>> based = with_mirrors(X, np.array([0, 1, 1]), np.array([1.0, 1.0, 0.0]),
    ...                      np.array([False, True]), base=12.0)[0]
    >>> bool((based[2] == with_base(mirror(X[1:2]), 12.0)[0]).all())
    True
    >>> both = with_mirrors(X, np.array([0, 1, 1]), np.array([1.0, 1.0, 0.0]),
    ...                     np.array([False, True]), base=16.0, record_base=8.0)[0]
    >>> bool((both[1] == with_base(X[1:2], 8.0)[0]).all()), bool((both[3] == X[2]).all())
    (True, True)
    """
    pick = mirrored[cols] & (weights > 0)  # a lookup, not np.isin: this runs for every record
    if not pick.any():
        return X, cols, weights
    index = np.repeat(np.arange(len(X)), 1 + pick)
    copies = np.cumsum(1 + pick)[pick] - 1  # where each picked row's copy goes, right after it
    rows = X[index]
    if record_base:
        rows[copies - 1] = with_base(X[pick], record_base)
    rows[copies] = with_base(mirror(X[pick]), base) if base else mirror(X[pick])
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
