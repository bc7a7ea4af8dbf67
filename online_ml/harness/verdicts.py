"""Figures and verdicts as the benchmarks print them: ``fmt`` a value, ``target`` (a wanted
value and whether a run met it).

Why in the harness: the verdicts are computed, not written, and the tests check the computation
on made-up rows; tests import the harness, never a benchmark script.

>>> fmt(1234567), fmt(0.12345), fmt(None)
('1,234,567', '0.123', '-')
>>> target("lost", 0, 0, "<=")["met"]
True
>>> if_row_bound(target("batch / row", 3.6, 50, ">="), 41, 182, "the row UDF", "why")["met"] is None
True
"""
from __future__ import annotations

import math
from typing import Any


def fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return "-"
    if spec:
        return format(value, spec)
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def target(name: str, value: float | None, limit: float, op: str, detail: str = "") -> dict:
    """One target and whether this run met it (``op`` is ``>=`` or ``<=``)."""
    met = None if value is None else (value >= limit if op == ">=" else value <= limit)
    return {"target": name, "value": value, "limit": limit, "op": op, "met": met,
            "detail": detail}


def row_bound_by_learner(learner_us: float | None, row_us: float | None) -> bool | None:
    """Whether a row UDF's time per record is mostly its learner's (``learn_one`` alone, without
    Flink, takes at least half of it): the condition of the targets that compare the row UDF
    with what removes the learner's per-call cost (batch mode, more Python workers). ``None``
    when either was not measured.

    >>> row_bound_by_learner(2830, 3745), row_bound_by_learner(41, 182), row_bound_by_learner(None, 1)
    (True, False, None)
    """
    if not learner_us or not row_us:
        return None
    return learner_us >= 0.5 * row_us


def only_if(t: dict, holds: bool | None, why: str) -> dict:
    """``t`` with no verdict ("n/a") and ``why`` as its detail when its condition does not hold:
    the value is still reported."""
    return t if holds is not False else dict(t, met=None, detail=why)


def if_row_bound(t: dict, learner_us: float | None, row_us: float | None, row: str,
                 because: str) -> dict:
    """``t``, or "n/a" with both figures when ``row`` (the row UDF it compares) is not bound by
    its learner (:func:`row_bound_by_learner`); ``because`` says what the target multiplies.

    >>> if_row_bound(target("x", 3.5, 50, ">="), 58, 240, "the row UDF", "why")["detail"]
    'the row UDF is not bound by its learner: learn_one alone 58 µs of its 240 µs a record (why)'
    """
    holds = row_bound_by_learner(learner_us, row_us)
    return only_if(t, holds, f"{row} is not bound by its learner: learn_one alone "
                             f"{learner_us:.0f} µs of its {row_us:.0f} µs a record ({because})"
                   if holds is False else "")
