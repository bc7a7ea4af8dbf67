"""The softmax learner's memory of records and its lessons: which rings it keeps, what it writes
into them, and what the nearest of them say (online_ml/softmax.py; the rings themselves and the
search are online_ml/nearest.py).

Two rings, both optional (``neighbours`` 0: neither):

* the **memory of records** (``memory`` rows): the last records the learner learned, the
  stream's and, without lessons, the board's corrections ``feedback_copies`` times each;
* the **lessons** (``lessons`` rows, since 2026-12-04): the last corrections from the board, each
  stored once and searched as ``feedback_copies`` records, newest first, so that the stream
  never pushes a correction out (only newer corrections do) and the newer of two corrections
  of one drawing is what votes (README, *Teaching it*; bench/teaching.py measures how long they
  last and what wrong ones cost).

Parallel learners append both rings (online_ml/sync.py, ``MEMORY`` and ``LESSONS``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import nearest

__all__ = ["RecordMemory"]


class RecordMemory:
    """The rings of :class:`~online_ml.softmax.OnlineSoftmax` (a mixin: it reads the host's
    ``neighbours``, ``memory``, ``lessons``, ``feedback_copies``, ``classes_`` and ``_rows``)."""

    neighbours: int
    memory: int
    lessons: int
    feedback_copies: int
    classes_: np.ndarray

    def _rows(self, X: Any) -> np.ndarray:  # the host's input check
        raise NotImplementedError

    def _init_memory(self, n_features: int) -> None:
        """Empty rings for rows of ``n_features`` cells (float32: what BLAS multiplies without a
        copy; online_ml/nearest.py)."""
        if self.neighbours:
            self.memory_x_ = np.zeros((self.memory, n_features), dtype=np.float32)
            self.memory_y_ = np.zeros(self.memory, dtype=np.int16)
            self.memory_count_ = 0
        if self.neighbours and self.lessons:
            self.lessons_x_ = np.zeros((self.lessons, n_features), dtype=np.float32)
            self.lessons_y_ = np.zeros(self.lessons, dtype=np.int16)
            self.lessons_count_ = 0

    def _remembers(self) -> bool:
        """Whether this model keeps records and blends their votes into its scores."""
        return bool(self.neighbours) and hasattr(self, "memory_x_")

    def _keeps_lessons(self) -> bool:
        """Whether the corrections have a ring of their own (``lessons``)."""
        return self._remembers() and bool(self.lessons) and hasattr(self, "lessons_x_")

    def _remember(self, rows: np.ndarray, labels: np.ndarray, copies: int, lesson: bool) -> None:
        """Write ``rows`` (cells) with their class indices ``labels``: once among the lessons if
        ``lesson`` and the model keeps them, else ``copies`` times each, in a row, in the memory
        of records."""
        if lesson and self._keeps_lessons():
            self.lessons_count_ = nearest.append(self.lessons_x_, self.lessons_y_,
                                                 self.lessons_count_, rows, labels)
        else:
            self.memory_count_ = nearest.append(self.memory_x_, self.memory_y_,
                                                self.memory_count_,
                                                np.repeat(rows, copies, axis=0),
                                                np.repeat(labels, copies))

    def _lesson_rings(self) -> list[nearest.Ring]:
        """The rings searched with the memory of records: the lessons, if kept apart, each as
        ``feedback_copies`` records, newest first — so that of two lessons equally near (the
        same drawing taught twice) the newer outvotes the older: a user corrects a correction."""
        if not self._keeps_lessons():
            return []
        n = nearest.filled(len(self.lessons_x_), self.lessons_count_)
        newest = (int(self.lessons_count_) - 1 - np.arange(n)) % len(self.lessons_x_)
        return [(self.lessons_x_[newest], self.lessons_y_[newest], n, int(self.feedback_copies))]

    def nearest_shares(self, X: Any) -> np.ndarray:
        """The share of the ``neighbours`` nearest remembered records (lessons included)
        carrying each class, per row of ``X`` (zeros without a memory)."""
        X = self._rows(X)
        if not self._remembers():
            return np.zeros((len(X), len(self.classes_)))
        return self._shares(X)

    def _shares(self, X: np.ndarray) -> np.ndarray:
        """:meth:`nearest_shares` of rows already checked, with a memory."""
        return nearest.vote_shares(X, self.memory_x_, self.memory_y_, self.memory_count_,
                                   self.neighbours, len(self.classes_), self._lesson_rings())

    def nearest_records(self, x: Any) -> list[tuple[np.ndarray, Any, bool]]:
        """The ``neighbours`` remembered records nearest to one row ``x`` — its cells, its label
        and whether it is a lesson (a correction kept apart) — nearest first: what voted for its
        answer (none without a memory)."""
        row = self._rows(np.asarray(x, dtype=np.float64).reshape(1, -1))[0]
        if not self._remembers():
            return []
        more = self._lesson_rings()
        rings = [(self.memory_x_, self.memory_y_), *[(rx, ry) for rx, ry, _, _ in more]]
        out = []
        for place in nearest.nearest_rows(row, self.memory_x_, self.memory_count_,
                                          self.neighbours, more):
            ring, i = nearest.ring_place(place, self.memory_x_, self.memory_count_, more)
            rx, ry = rings[ring]
            out.append((rx[i].astype(np.float64), self.classes_[int(ry[i])], ring > 0))
        return out
