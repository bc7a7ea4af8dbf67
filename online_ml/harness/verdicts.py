"""Figures and verdicts as the benchmarks print them: ``fmt`` a value, ``target`` (a wanted
value and whether a run met it).

Why in the harness: the verdicts are computed, not written, and the tests check the computation
on made-up rows; tests import the harness, never a benchmark script.

>>> fmt(1234567), fmt(0.12345), fmt(None)
('1,234,567', '0.123', '-')
>>> target("lost", 0, 0, "<=")["met"]
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
