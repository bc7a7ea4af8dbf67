"""What the job writes besides predictions: dead letters and alerts, routed through one Kafka sink.

Why one sink: the UDF returns, for each source record, a list of ``(topic, value)`` outputs (one
prediction *or* one dead letter, plus an alert now and then). The job flattens that list with
``CROSS JOIN UNNEST`` into rows ``(value, topic)`` and writes them through a single Kafka table
whose ``topic`` metadata column is writable, so dead letters and alerts go through Flink's own
Kafka sink and share its checkpoints, delivery guarantee and back-pressure, instead of a second
producer hidden inside the UDF.

An output travels between the (Python) UDF and the (SQL) sink as one string ``topic + "\\n" +
value`` because pandas UDFs cannot return arrays of rows; a Kafka topic name never contains a
newline, so the first one splits it unambiguously (see :data:`SPLIT_SQL`).

Dead-letter record (topic ``digit_dead_letter``)::

    {"reason": "bad_x_length", "error": "x must have 64 values, got 3",
     "raw": "<the original value, at most 4096 characters>", "raw_length": 57,
     "ts": "2024-01-01 12:00:00"}

``reason`` is one of ``online_ml.schema.REASONS``; ``ts`` is when the job rejected it.
"""
from __future__ import annotations

import json
from collections.abc import Iterable

from online_ml.schema import BadRecord, now_ts

__all__ = ["MAX_RAW_CHARS", "SEP", "SPLIT_SQL", "dead_letter", "encode_output", "decode_output",
           "sink_topics"]

MAX_RAW_CHARS = 4096  # a dead letter keeps this much of the bad value: enough to see what it was
SEP = "\n"

# SQL that splits the flattened column ``item`` into the sink's ``value`` and ``topic`` columns
SPLIT_SQL = ("SUBSTRING(item FROM POSITION(CHR(10) IN item) + 1) AS `value`, "
             "SUBSTRING(item FROM 1 FOR POSITION(CHR(10) IN item) - 1) AS `topic`")


def _as_text(raw: str | bytes | bytearray | None) -> str:
    if raw is None:
        return ""
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw).decode("utf-8", errors="replace")
    return str(raw)


def dead_letter(raw: str | bytes | bytearray | None, exc: BadRecord, ts: str | None = None) -> str:
    """The dead-letter JSON for a rejected value.

    >>> from online_ml.schema import decode_record
    >>> try:
    ...     decode_record('[1, 2]')
    ... except BadRecord as exc:
    ...     letter = json.loads(dead_letter('[1, 2]', exc, ts="2020-01-01 01:01:01"))
    >>> letter["reason"], letter["raw"], letter["raw_length"]
    ('not_an_object', '[1, 2]', 6)
    """
    text = _as_text(raw)
    return json.dumps({
        "reason": exc.reason,
        "error": str(exc),
        "raw": text[:MAX_RAW_CHARS],
        "raw_length": len(text),
        "ts": now_ts() if ts is None else ts,
    }, separators=(",", ":"))


def encode_output(topic: str, value: str) -> str:
    """One UDF output: ``topic`` and ``value`` in one string (see the module docstring)."""
    return topic + SEP + value


def decode_output(item: str) -> tuple[str, str]:
    """Inverse of :func:`encode_output` (what :data:`SPLIT_SQL` does in the job).

    >>> decode_output(encode_output("t", '{"a":"b\\\\nc"}'))
    ('t', '{"a":"b\\\\nc"}')
    """
    topic, _, value = item.partition(SEP)
    return topic, value


def sink_topics(topics: Iterable[str]) -> str:
    """The Kafka table's ``'topic'`` option: every topic the job may write to, in order, once.

    >>> sink_topics(["digit_predict", "digit_dead_letter", "digit_predict"])
    'digit_predict;digit_dead_letter'
    """
    seen: list[str] = []
    for t in topics:
        if not t or SEP in t or ";" in t or "'" in t:
            raise ValueError(f"invalid Kafka topic name {t!r}")
        if t not in seen:
            seen.append(t)
    return ";".join(seen)
