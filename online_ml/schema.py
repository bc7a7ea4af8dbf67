"""The Kafka record contract: what a good record on ``handwritten_digit`` is, and what a bad one is.

Source record (topic ``handwritten_digit``)::

    {"ts": "2020-01-01 01:01:01", "x": [64 ints 0..16], "actual_y": 0..9}

An optional ``"source"`` string says where a record came from (e.g. ``"producer"`` or
``"feedback"`` for labels sent from the drawing board); other extra fields are ignored.

Decisions, so that every producer and consumer agrees:

* ``x`` is a JSON array of exactly 64 integers in 0..16 (the scale of sklearn's ``digits``).
  Booleans are not integers (``true`` is refused, although Python treats it as 1).
  Integral floats such as ``3.0`` are accepted and become ``3``: numpy arrays serialised via
  ``tolist()`` and other languages' JSON encoders produce them for the same value.
  ``3.5``, ``NaN`` or strings are refused.
* ``actual_y`` follows the same number rules and must be in 0..9.
* ``ts`` is a string ``YYYY-MM-DD HH:MM:SS`` (local time, as the tutorial), optionally with
  fractional seconds (``.123``), which Flink's SQL timestamp format also accepts. It must be a real
  date and time.

Decoding runs once per record inside the Flink job, so the common path is an ``orjson.loads`` plus a
few type checks over 64 values; the detailed (slower) diagnosis only runs for bad records.
"""
from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple

import orjson

__all__ = [
    "BadRecord",
    "Record",
    "decode_record",
    "encode_record",
    "encode_prediction",
    "now_ts",
    "N_FEATURES",
    "X_MAX",
    "LABELS",
    "TS_FORMAT",
]

N_FEATURES = 64
X_MIN, X_MAX = 0, 16
LABELS = range(10)
TS_FORMAT = "%Y-%m-%d %H:%M:%S"
_INT_ONLY = {int}
_X_VALUES = frozenset(range(X_MIN, X_MAX + 1))
_TS_RE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d{1,9})?")

REASONS = (
    "malformed_json",
    "not_an_object",
    "missing_field",
    "bad_x_type",
    "bad_x_length",
    "bad_x_value",
    "bad_label",
    "bad_ts",
    "bad_source",
    "bad_id",
)


class BadRecord(ValueError):
    """A record that breaks the contract.

    ``reason`` is a short machine-readable kind (one of ``REASONS``), suitable as a metric label
    or a dead-letter field; ``str(exc)`` is the human explanation.

    >>> try:
    ...     decode_record('{"ts": "2020-01-01 01:01:01", "x": [0], "actual_y": 1}')
    ... except BadRecord as exc:
    ...     print(exc.reason, '|', exc)
    bad_x_length | x must have 64 values, got 1
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class Record(NamedTuple):
    """One validated source record, immutable and hashable (``x`` is a tuple). A named tuple, not
    a dataclass: batch mode builds one per record, and a frozen dataclass costs 5x as much."""

    ts: str
    x: tuple[int, ...]
    actual_y: int
    source: str | None = None
    id: str | None = None  # optional client id, e.g. of a feedback record, carried to the sink


def now_ts() -> str:
    """The current local time in the contract's format, e.g. ``2020-01-01 01:01:01``."""
    return datetime.now().strftime(TS_FORMAT)


# -- validation helpers ------------------------------------------------------------------------
def _describe(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (str, bool, type(None))) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _as_int(value: Any) -> int | None:
    """``value`` as an int if it is an integer (or an integral float), else None. Bools are not."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        f = float(value)
        if math.isfinite(f) and f.is_integer():
            return int(f)
    return None


def _check_x(x: Any) -> tuple[int, ...]:
    if type(x) is list and len(x) == N_FEATURES:
        # Fast path: plain ints in range (the producer's output). ``type(v) is int`` excludes bools.
        if set(map(type, x)) == _INT_ONLY and _X_VALUES.issuperset(x):
            return tuple(x)
    if isinstance(x, (str, bytes, dict)) or not isinstance(x, Iterable):
        raise BadRecord("bad_x_type", f"x must be an array of {N_FEATURES} integers, "
                                      f"got {type(x).__name__} {_describe(x)}")
    if hasattr(x, "tolist"):  # numpy arrays in encode_record
        x = x.tolist()
    values = list(x)
    if len(values) != N_FEATURES:
        raise BadRecord("bad_x_length", f"x must have {N_FEATURES} values, got {len(values)}")
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise BadRecord("bad_x_type", f"x[{i}] must be an integer {X_MIN}..{X_MAX}, "
                                          f"got {type(v).__name__} {_describe(v)}")
        n = _as_int(v)
        if n is None or not X_MIN <= n <= X_MAX:
            raise BadRecord("bad_x_value", f"x[{i}] must be an integer {X_MIN}..{X_MAX}, "
                                           f"got {_describe(v)}")
        out.append(n)
    return tuple(out)


def _check_label(y: Any) -> int:
    if type(y) is int and 0 <= y <= 9:
        return y
    n = _as_int(y)
    if n is None or n not in LABELS:
        raise BadRecord("bad_label", f"actual_y must be an integer 0..9, got {_describe(y)}")
    return n


def _check_ts(ts: Any) -> str:
    if type(ts) is not str or _TS_RE.fullmatch(ts) is None:
        raise BadRecord("bad_ts", f"ts must be a string 'YYYY-MM-DD HH:MM:SS', got {_describe(ts)}")
    try:
        datetime.fromisoformat(ts)
    except ValueError:
        raise BadRecord("bad_ts", f"ts is not a valid date and time: {_describe(ts)}") from None
    return ts


def _check_source(source: Any) -> str | None:
    if source is None or type(source) is str:
        return source
    raise BadRecord("bad_source", f"source must be a string, got {_describe(source)}")


def _check_id(value: Any) -> str | None:
    if value is None or (type(value) is str and 0 < len(value) <= 100):
        return value
    raise BadRecord("bad_id", f"id must be a string of 1..100 characters, got {_describe(value)}")


# -- public API --------------------------------------------------------------------------------
def decode_record(raw: bytes | bytearray | str) -> Record:
    """Parse and validate one source record; raise BadRecord saying what is wrong.

    >>> r = decode_record(json.dumps({"ts": "2020-01-01 01:01:01", "x": [0] * 64, "actual_y": 3}))
    >>> r.actual_y, len(r.x), r.source
    (3, 64, None)
    >>> decode_record('{"ts": "2020-01-01 01:01:01"}')  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ...
    BadRecord: missing field 'x'
    """
    try:
        obj = orjson.loads(raw)  # ~4x json.loads; the job decodes every record
    except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BadRecord("malformed_json", f"record is not valid JSON: {exc}") from None
    if type(obj) is not dict:
        raise BadRecord("not_an_object",
                        f"record must be a JSON object, got {type(obj).__name__}")
    try:
        ts, x, y = obj["ts"], obj["x"], obj["actual_y"]
    except KeyError as exc:
        raise BadRecord("missing_field", f"missing field {exc.args[0]!r}") from None
    return Record(ts=_check_ts(ts), x=_check_x(x), actual_y=_check_label(y),
                  source=_check_source(obj.get("source")), id=_check_id(obj.get("id")))


def encode_record(x: Iterable[Any], actual_y: Any, ts: str | None = None, **extra: Any) -> bytes:
    """Validate and serialise one source record (UTF-8 JSON bytes, ready for Kafka).

    ``x`` may be any sequence or numpy array of integral values; ``extra`` fields (e.g.
    ``source="feedback"``) are added to the object. Raises BadRecord like ``decode_record``, so a
    producer cannot write what the job would refuse.

    >>> encode_record([0] * 64, 7, ts="2020-01-01 01:01:01")[:40]
    b'{"ts":"2020-01-01 01:01:01","x":[0,0,0,0'
    """
    record: dict[str, Any] = {
        "ts": now_ts() if ts is None else _check_ts(ts),
        "x": list(_check_x(x)),
        "actual_y": _check_label(actual_y),
    }
    if "source" in extra:
        _check_source(extra["source"])
    if "id" in extra:
        _check_id(extra["id"])
    record.update(extra)
    return json.dumps(record, separators=(",", ":")).encode("utf-8")


def encode_prediction(record: Record, predict_y: int | None, **extra: Any) -> str:
    """Serialise one sink record for ``digit_predict``: ``{"x", "actual_y", "predict_y", ...}``.

    ``predict_y`` is None (JSON ``null``) when the model had not seen any data yet. The source's
    ``ts`` (and ``source``, when set) are carried over so a consumer can join or measure latency;
    ``extra`` fields (e.g. ``model_version``) are appended.

    >>> rec = Record(ts="2020-01-01 01:01:01", x=(0,) * 64, actual_y=1)
    >>> import json; sorted(json.loads(encode_prediction(rec, None)))
    ['actual_y', 'predict_y', 'ts', 'x']
    """
    out: dict[str, Any] = {
        "x": record.x,  # orjson writes a tuple as an array
        "actual_y": record.actual_y,
        "predict_y": None if predict_y is None else int(predict_y),
        "ts": record.ts,
    }
    if record.source is not None:
        out["source"] = record.source
    if record.id is not None:
        out["id"] = record.id
    out.update(extra)
    return orjson.dumps(out).decode()
