"""Running metrics of a learner: overall and rolling accuracy, the labels seen.

Pure Python, cheap per record (the UDF updates them for every record), and restorable from the
model's metadata after a restart (``Accuracy(n, correct)``, ``LabelDistribution(counts)``).
``online_ml.learner`` re-exports them.
"""
from __future__ import annotations

from collections import Counter, deque
from collections.abc import Hashable, Iterable, Mapping

__all__ = ["Accuracy", "RollingAccuracy", "LabelDistribution"]


class Accuracy:
    """Cumulative accuracy. A missing prediction (``None``) counts as wrong.

    >>> acc = Accuracy()
    >>> for y_true, y_pred in [(1, None), (2, 2), (3, 3), (4, 0)]:
    ...     acc.update(y_true, y_pred)
    >>> acc.get(), acc.n, acc.correct
    (0.5, 4, 2)
    """

    def __init__(self, n: int = 0, correct: int = 0):
        if not 0 <= correct <= n:
            raise ValueError(f"need 0 <= correct <= n, got correct={correct}, n={n}")
        self.n = int(n)
        self.correct = int(correct)

    def update(self, y_true: Hashable, y_pred: Hashable | None) -> None:
        self.n += 1
        if y_pred is not None and y_pred == y_true:
            self.correct += 1

    def add_many(self, n: int, correct: int) -> None:
        """``n`` more predictions, ``correct`` of them right (batch mode)."""
        if not 0 <= correct <= n:
            raise ValueError(f"need 0 <= correct <= n, got correct={correct}, n={n}")
        self.n += int(n)
        self.correct += int(correct)

    def get(self) -> float:
        """Fraction correct so far; 0.0 before any update (River's convention)."""
        return self.correct / self.n if self.n else 0.0

    def __repr__(self) -> str:
        return f"Accuracy: {self.get():.2%} ({self.correct}/{self.n})"


class RollingAccuracy:
    """Accuracy over the last ``window`` predictions: shows drift that the cumulative one hides.

    >>> acc = RollingAccuracy(window=2)
    >>> for y_true, y_pred in [(1, 1), (2, 0), (3, 3)]:
    ...     acc.update(y_true, y_pred)
    >>> acc.get()
    0.5
    """

    def __init__(self, window: int = 500):
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = int(window)
        self._hits: deque[bool] = deque(maxlen=self.window)
        self._correct = 0

    def update(self, y_true: Hashable, y_pred: Hashable | None) -> None:
        self.add(y_pred is not None and y_pred == y_true)

    def add(self, hit: bool) -> None:
        """One prediction, right or wrong."""
        hit = bool(hit)
        if len(self._hits) == self.window:
            self._correct -= self._hits[0]
        self._hits.append(hit)
        self._correct += hit

    def add_many(self, hits: Iterable[bool]) -> None:
        """Many predictions in order, as ``add`` one by one would leave the window.

        >>> a, b = RollingAccuracy(window=3), RollingAccuracy(window=3)
        >>> for hit in [True, False, True, True, False]:
        ...     a.add(hit)
        >>> b.add_many([True, False]); b.add_many([True, True, False])
        >>> (a.get(), a.n) == (b.get(), b.n)
        True
        """
        self._hits.extend(map(bool, hits))
        self._correct = sum(self._hits)

    @property
    def n(self) -> int:
        return len(self._hits)

    @property
    def hits(self) -> list[bool]:
        """The window's predictions, right or wrong, oldest first."""
        return list(self._hits)

    def get(self) -> float:
        return self._correct / len(self._hits) if self._hits else 0.0

    def __repr__(self) -> str:
        return f"RollingAccuracy(window={self.window}): {self.get():.2%} over {self.n}"


class LabelDistribution:
    """How often each true label was seen: a skewed stream explains odd accuracy.

    >>> dist = LabelDistribution()
    >>> for y in [1, 1, 2]:
    ...     dist.update(y)
    >>> dist.get()
    {1: 2, 2: 1}
    >>> dist.proportions()[1]
    0.6666666666666666
    """

    def __init__(self, counts: Mapping[Hashable, int] | None = None):
        self._counts: Counter = Counter(counts or {})

    def update(self, y: Hashable) -> None:
        self._counts[y] += 1

    def update_many(self, ys: Iterable[Hashable]) -> None:
        self._counts.update(ys)

    def get(self) -> dict:
        """Counts per label, labels sorted."""
        return dict(sorted(self._counts.items()))

    def proportions(self) -> dict:
        total = sum(self._counts.values())
        return {k: v / total for k, v in self.get().items()} if total else {}

    @property
    def n(self) -> int:
        return sum(self._counts.values())

    def __repr__(self) -> str:
        return f"LabelDistribution({self.get()})"
