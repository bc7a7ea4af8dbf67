"""A memory of the records a learner learned last, and the votes of the nearest of them.

Why (issue 10): a model trained on ``digits`` reads a drawing by what every record taught it at
once; the few records most like the drawing can say more. bench/candidates.py measured the served
softmax's log-probabilities plus twice the label shares of the 9 nearest records of one pass of
the stream (squared distance of the 64 cells): +1.1 points on the development split of real
handwriting, every flagged 1 with a base 0.41 of its height read 1 (two thirds before) and half
at 0.55 (none before). ``OnlineSoftmax(neighbours=k)`` keeps such a memory (``memory`` records,
the oldest dropped first) and blends its votes in (online_ml/softmax.py); parallel learners
append what each remembered (online_ml/sync.py, :func:`since`, :func:`joined`, :func:`restore`).
The default learner's since 2026-12-03 (README, *The learner*).

Which records are nearest: the ``k`` smallest distances, a tie at the ``k``-th distance going to
the lower place in the ring, so the answer is one whatever computes it. A process that learns
(the job, the benches) selects them with a compiled loop once it has learned
(:func:`use_compiled`: ~3 µs a row against ~25 µs for ``np.argpartition``, which also left ties to
chance); the server, which only predicts and has no numba, with numpy calls that pick the same
records (tests/test_nearest.py).

The memory is a ring: ``x`` (capacity x cells, float32: what BLAS multiplies without a copy; a
ring of bytes had to be converted on every prediction, which cost more than the search),
``y`` (the class index of each row) and ``count`` (rows ever written; the next goes to
``count % capacity``).

>>> import numpy as np
>>> x, y = np.zeros((3, 2), np.float32), np.zeros(3, np.int16)
>>> count = append(x, y, 0, np.array([[0, 0], [16, 16], [15, 16], [1, 0]]), [0, 1, 1, 0])
>>> count, x.astype(int).tolist(), y.tolist()  # the first row was overwritten by the fourth
(4, [[1, 0], [16, 16], [15, 16]], [0, 1, 1])
>>> vote_shares(np.array([[14.0, 15.0]]), x, y, count, k=2, n_classes=2).tolist()
[[0.0, 1.0]]
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np

__all__ = ["append", "filled", "vote_shares", "nearest_rows", "nearest_indices", "use_compiled",
           "as_the_server", "chronological", "since", "joined", "restore", "Ring"]

#: A ring searched with the memory (a learner's lessons, online_ml/softmax.py): its rows, their
#: class indices, the rows ever written and how many neighbours each row counts as (a lesson
#: stands for ``feedback_copies`` records: it is stored once and searched that many times).
Ring = tuple[np.ndarray, np.ndarray, int, int]


def filled(capacity: int, count: int) -> int:
    """How many rows of a ring of ``capacity`` rows hold a record after ``count`` writes."""
    return min(int(capacity), int(count))


def append(x: np.ndarray, y: np.ndarray, count: int, rows: np.ndarray,
           labels: Sequence[int] | np.ndarray) -> int:
    """Write ``rows`` (cells) with their class indices ``labels`` into the ring ``x``/``y``
    after ``count`` earlier writes, in place; the new count. Only the last ``capacity`` rows
    matter when more are given."""
    capacity = len(x)
    rows = np.asarray(rows, dtype=np.float64)
    classes = np.asarray(labels, dtype=np.int64)
    if capacity == 0 or len(rows) == 0:
        return int(count) + len(rows)
    skip = max(0, len(rows) - capacity)
    at = (int(count) + skip + np.arange(len(rows) - skip)) % capacity
    x[at] = rows[skip:]
    y[at] = classes[skip:]
    return int(count) + len(rows)


def chronological(x: np.ndarray, y: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The ring as parallel learners exchange it (online_ml/sync.py): the rows that hold a
    record oldest first, then zeros up to the capacity (copies). In this form and in what
    :func:`since` takes out of it, the rows that count are the first ``min(count, rows)``."""
    n = filled(len(x), count)
    order = (int(count) - n + np.arange(n)) % max(len(x), 1)
    out_x, out_y = np.zeros_like(x), np.zeros_like(y)
    out_x[:n], out_y[:n] = x[order], y[order]
    return out_x, out_y


def _valid(x: np.ndarray, count: float) -> int:
    return min(len(x), max(0, int(count)))


def since(x: np.ndarray, y: np.ndarray, count: float, earlier: float
          ) -> tuple[np.ndarray, np.ndarray, float]:
    """What a learner remembered after it had ``earlier`` records (its base): the newest
    ``count - earlier`` rows of a :func:`chronological` ring (all it still holds if it wrote
    more than its capacity since), and that number."""
    new = max(0.0, float(count) - float(earlier))
    n = _valid(x, count)
    m = min(n, int(new))
    return x[n - m:n].copy(), y[n - m:n].copy(), new


def joined(x: np.ndarray, y: np.ndarray, count: float, more_x: np.ndarray, more_y: np.ndarray,
           more_count: float) -> tuple[np.ndarray, np.ndarray, float]:
    """A :func:`chronological` ring with the rows of another (or of :func:`since`) written
    after its own: the newest that fit its capacity, in the same form."""
    rows_x = np.concatenate([x[:_valid(x, count)], more_x[:_valid(more_x, more_count)]])
    rows_y = np.concatenate([y[:_valid(y, count)], more_y[:_valid(more_y, more_count)]])
    keep = min(len(rows_x), len(x))
    rows_x, rows_y = rows_x[len(rows_x) - keep:], rows_y[len(rows_y) - keep:]
    out_x, out_y = np.zeros_like(x), np.zeros_like(y)
    out_x[:len(rows_x)], out_y[:len(rows_y)] = rows_x, rows_y
    return out_x, out_y, float(count) + float(more_count)


def restore(ring_x: np.ndarray, ring_y: np.ndarray, x: np.ndarray, y: np.ndarray,
            count: float) -> int:
    """Write a :func:`chronological` ring's rows into a learner's ring, in place, where its
    own writes would have put them after ``count`` records; the count."""
    ring_x[...], ring_y[...] = 0, 0
    n = _valid(x, count)
    keep = min(n, len(ring_x))
    at = (int(count) - keep + np.arange(keep)) % max(len(ring_x), 1)
    ring_x[at], ring_y[at] = x[n - keep:n], y[n - keep:n]
    return int(count)


def _distances(X: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Squared distances of each row of ``X`` to each kept row, less the row's own squared
    length (it ranks nothing)."""
    X = np.asarray(X, dtype=kept.dtype)
    return np.einsum("ij,ij->i", kept, kept)[None, :] - 2.0 * (X @ kept.T)


def _chosen_numpy(d: np.ndarray, k: int) -> np.ndarray:
    """The places of :func:`nearest_indices`, in no order, with numpy calls: ``np.argpartition``'s
    ``k``; in a row where more places share the ``k``-th distance than fit (it picks among them
    at will), everything below that distance and then the first places at it."""
    at = np.argpartition(d, k - 1, axis=1)[:, :k] if k < d.shape[1] else \
        np.broadcast_to(np.arange(d.shape[1]), d.shape)
    kth = d[np.arange(len(d))[:, None], at].max(axis=1, keepdims=True)
    crowded = np.flatnonzero(np.count_nonzero(d <= kth, axis=1) > k)
    if len(crowded):
        dc, kc = d[crowded], kth[crowded]
        less, tie = dc < kc, dc == kc
        chosen = less | (tie & (np.cumsum(tie, axis=1) <= k - less.sum(axis=1, keepdims=True)))
        at = at.copy()
        at[crowded] = np.nonzero(chosen)[1].reshape(len(crowded), k)
    return at


def _nearest_first(d: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The places ``at`` of each row ordered by distance, the lower of two equal places first."""
    at = np.sort(at, axis=1)  # ascending, so that the stable sort by distance keeps that order
    order = np.argsort(np.take_along_axis(d, at, axis=1), axis=1, kind="stable")
    return np.take_along_axis(at, order, axis=1)


def _nearest_numpy(d: np.ndarray, k: int) -> np.ndarray:
    """:func:`nearest_indices` with numpy calls."""
    return _nearest_first(d, _chosen_numpy(d, k))


_compiled_nearest: Callable[[np.ndarray, int], np.ndarray] | None = None


def use_compiled() -> None:
    """From now on, :func:`nearest_indices` runs compiled in this process (numba: imported by
    whatever learns, never by the server). Same answers as the numpy calls."""
    global _compiled_nearest
    if _compiled_nearest is None:
        from .softmax_steps import nearest_indices as compiled
        _compiled_nearest = compiled


@contextlib.contextmanager
def as_the_server() -> Iterator[None]:
    """Select with the numpy calls for a while, as the server (which never learns) does: to time
    what it pays in a process that has learned, or to compare the two."""
    global _compiled_nearest
    saved, _compiled_nearest = _compiled_nearest, None
    try:
        yield
    finally:
        _compiled_nearest = saved


def _chosen(d: np.ndarray, k: int) -> np.ndarray:
    """The places of :func:`nearest_indices`, compiled where this process learned, else with
    numpy calls (the same places; only the compiled loop's come nearest first)."""
    if _compiled_nearest is not None:
        return _compiled_nearest(np.ascontiguousarray(d), int(k))
    return _chosen_numpy(d, int(k))


def nearest_indices(d: np.ndarray, k: int) -> np.ndarray:
    """For each row of distances ``d`` (``k`` <= its length): the places of its ``k`` smallest,
    nearest first, a tie going to the lower place (so also: among equal distances the lower
    place is the one kept when some must be left out)."""
    return _nearest_first(d, _chosen(d, k))


def _searched(X: np.ndarray, x: np.ndarray, y: np.ndarray, count: int,
              more: Sequence[Ring]) -> tuple[np.ndarray, np.ndarray]:
    """The distances of each row of ``X`` (:func:`_distances`) to the filled rows of the ring
    ``x``/``y``/``count`` and then of each ring of ``more`` (each of its rows as many times as
    it counts, one after another), side by side, and those rows' labels in the same order: the
    places :func:`nearest_rows` answers."""
    parts, labels = [], []
    for rx, ry, rcount, copies in [(x, y, count, 1), *more]:
        n = filled(len(rx), rcount)
        if n:
            d = _distances(X, rx[:n])
            parts.append(d if copies == 1 else np.repeat(d, copies, axis=1))
            labels.append(ry[:n] if copies == 1 else np.repeat(ry[:n], copies))
    if not parts:
        return np.zeros((len(X), 0)), np.zeros(0, dtype=np.int64)
    if len(parts) == 1:
        return parts[0], labels[0]
    return np.hstack(parts), np.concatenate(labels)


def nearest_rows(row: np.ndarray, x: np.ndarray, count: int, k: int,
                 more: Sequence[Ring] = ()) -> np.ndarray:
    """Where the ``k`` remembered rows nearest to ``row`` are, nearest first (what voted for a
    drawing's answer, for the board to show): places in the ring's filled rows, then in each
    ring of ``more``'s after them (:func:`ring_place` tells which ring and row)."""
    d, _ = _searched(np.asarray(row).reshape(1, -1), x, np.zeros(len(x), np.int16), count, more)
    if d.shape[1] == 0 or k <= 0:
        return np.zeros(0, dtype=np.int64)
    return nearest_indices(d, min(int(k), d.shape[1]))[0]


def ring_place(place: int, x: np.ndarray, count: int, more: Sequence[Ring] = ()
               ) -> tuple[int, int]:
    """Which ring (0: ``x``, then ``more``'s) and which row of it a place of
    :func:`nearest_rows` is."""
    place = int(place)
    for i, (rx, _, rcount, copies) in enumerate([(x, None, count, 1), *more]):
        n = filled(len(rx), rcount) * copies
        if place < n:
            return i, place // copies
        place -= n
    raise IndexError("no such place in these rings")


def vote_shares(X: np.ndarray, x: np.ndarray, y: np.ndarray, count: int, k: int,
                n_classes: int, more: Sequence[Ring] = ()) -> np.ndarray:
    """For each row of ``X``: the share of its ``k`` nearest remembered rows (squared distance
    of the cells; :func:`nearest_indices`) that carry each class, searched in the ring and in
    each of ``more`` (a learner's lessons, online_ml/softmax.py) together; all zeros while
    nothing is remembered. (A row's own squared length is left out of its distances: it ranks
    nothing.)"""
    out = np.zeros((len(X), n_classes))
    if k <= 0 or len(X) == 0:
        return out
    d, y_all = _searched(X, x, y, count, more)
    if d.shape[1] == 0:
        return out
    near = _chosen(d, min(int(k), d.shape[1]))  # in any order: only their labels count
    labels = y_all[near].astype(np.int64) + n_classes * np.arange(len(X))[:, None]
    counts = np.bincount(labels.reshape(-1), minlength=len(X) * n_classes)
    return counts.reshape(len(X), n_classes) / min(int(k), d.shape[1])
