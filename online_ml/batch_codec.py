"""Batch mode's records as columns: many Kafka values decoded, checked and answered at once.

The contract is ``online_ml.schema``'s, record by record; this module only makes it cheap for an
Arrow batch of thousands of values (issue 11: the batch UDF spent half its Python time decoding,
checking and writing records one by one). :func:`decode_many` returns what
:func:`schema.decode_record` would for each value, the good records as columns (``x`` as one
array); :func:`encode_predictions` writes what :func:`schema.encode_prediction` would for each,
the ``x`` of a whole chunk serialised in one call. ``tests/test_schema.py`` checks both against
the record-by-record functions on good and bad values of every kind.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import orjson

from online_ml.schema import _INT_ONLY, N_FEATURES, X_MAX, BadRecord, Record, _check_ts, decode_record

__all__ = ["Batch", "decode_many", "encode_predictions", "hits"]


@dataclass
class Batch:
    """The good records of a batch as columns, in order, and the bad ones with their errors."""

    index: list[int] = field(default_factory=list)  # each good record's position among the values
    X: np.ndarray = field(default_factory=lambda: np.empty((0, N_FEATURES), np.int64))
    y: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    ts: list[str] = field(default_factory=list)
    source: list[str | None] = field(default_factory=list)
    id: list[str | None] = field(default_factory=list)
    rejected: list[tuple[int, BadRecord]] = field(default_factory=list)  # (position, error)

    def __len__(self) -> int:
        return len(self.index)

    def record(self, j: int) -> Record:
        """The ``j``-th good record, as ``decode_record`` returns it."""
        return Record(self.ts[j], tuple(self.X[j].tolist()), int(self.y[j]), self.source[j],
                      self.id[j])


def _ts_valid(ts: str, known: dict[str, bool]) -> bool:
    """Whether ``ts`` keeps the contract, remembered in ``known`` (a batch has few distinct)."""
    try:
        _check_ts(ts)
        ok = True
    except BadRecord:
        ok = False
    known[ts] = ok
    return ok


def _as_bytes(value) -> bytes:
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else bytes(value)


def decode_many(values: Sequence[bytes | bytearray | str | None]) -> Batch:
    """:func:`schema.decode_record` over many values (``None`` read as empty bytes): the same
    records and the same errors, as columns.

    The common record (64 plain ints, the three fields, an optional ``source``/``id``) is
    checked field by field in Python and as one array over the batch: each ``x`` packed into
    bytes (which refuses anything but an int in 0..255), one range check, each distinct ``ts``
    parsed once. Any other value, and any the array cannot vouch for (``true`` or ``false``
    anywhere in it), goes through ``decode_record``, which says what is wrong, or accepts it
    (integral floats).

    >>> from online_ml.schema import encode_record
    >>> good = encode_record([1] * 64, 3, ts="2020-01-01 01:01:01")
    >>> batch = decode_many([good, b"{", None, good.replace(b"[1,", b"[true,"), good])
    >>> batch.index, batch.y.tolist(), batch.X.shape, batch.X.dtype.name
    ([0, 4], [3, 3], (2, 64), 'int64')
    >>> [(i, exc.reason) for i, exc in batch.rejected]
    [(1, 'malformed_json'), (2, 'malformed_json'), (3, 'bad_x_type')]
    """
    fast: list[int] = []  # positions of the values that look common; their fields and cells
    fields: list[tuple[str, int, str | None, str | None]] = []
    cells: list[bytes] = []
    known_ts: dict[str, bool] = {}
    for i, raw in enumerate(values):
        if raw is None:
            continue
        try:
            obj = orjson.loads(raw)
            ts, x, y = obj["ts"], obj["x"], obj["actual_y"]
        except (ValueError, TypeError, KeyError, IndexError):  # the diagnosis is decode_record's
            continue
        source, rid = obj.get("source"), obj.get("id")
        if (type(x) is list and len(x) == N_FEATURES and type(y) is int and 0 <= y <= 9
                and type(ts) is str and (source is None or type(source) is str)
                and (rid is None or (type(rid) is str and 0 < len(rid) <= 100))
                and (known_ts.get(ts) or _ts_valid(ts, known_ts))):
            try:
                row = bytes(x)  # ints in 0..255 only (and booleans, below); 3x numpy.array's speed
            except (TypeError, ValueError):
                continue
            fast.append(i)
            fields.append((ts, y, source, rid))
            cells.append(row)
    rows = np.frombuffer(b"".join(cells), dtype=np.uint8).reshape(-1, N_FEATURES)
    sound = (rows <= X_MAX).all(axis=1)  # X_MIN is 0: a byte is never below
    # bytes() reads true as 1: a value that spells a boolean anywhere is checked value by value
    spelled = [values[i] for i in fast]
    try:
        joined = b"\n".join(spelled)  # type: ignore[arg-type]
    except TypeError:  # str values (tests, the bench): Flink's are bytes
        joined = b"\n".join(_as_bytes(v) for v in spelled)
    if b"true" in joined or b"false" in joined:
        for j, i in enumerate(fast):
            if sound[j] and set(map(type, orjson.loads(values[i] or b"")["x"])) != _INT_ONLY:
                sound[j] = False

    batch = Batch()
    slow: dict[int, Record] = {}
    taken = set(fast[j] for j in np.flatnonzero(sound).tolist())
    for i, raw in enumerate(values):
        if i not in taken:
            try:
                slow[i] = decode_record(raw if raw is not None else b"")
            except BadRecord as exc:
                batch.rejected.append((i, exc))
    if not slow and sound.all():  # the common case: every good value took the fast way
        batch.index = fast
        batch.X = rows.astype(np.int64)
        columns = list(zip(*fields)) or [(), (), (), ()]
    else:
        at = {i: j for j, i in enumerate(fast) if sound[j]}
        batch.index = sorted([*at, *slow])
        batch.X = np.array([rows[at[i]] if i in at else slow[i].x for i in batch.index],
                           dtype=np.int64).reshape(-1, N_FEATURES)
        columns = list(zip(*(fields[at[i]] if i in at else
                             (slow[i].ts, slow[i].actual_y, slow[i].source, slow[i].id)
                             for i in batch.index))) or [(), (), (), ()]
    batch.ts, batch.source, batch.id = list(columns[0]), list(columns[2]), list(columns[3])
    batch.y = np.array(columns[1], dtype=np.int64)
    return batch


def _json_string(value: str, cache: dict[str, str]) -> str:
    text = cache[value] = orjson.dumps(value).decode()
    return text


def encode_predictions(batch: Batch, start: int, end: int,
                       predicted: Sequence[int | None]) -> list[str]:
    """:func:`schema.encode_prediction` for the good records ``start:end`` of ``batch`` and their
    predictions: the same strings, the ``x`` of the whole chunk written by one ``orjson`` call.

    >>> from online_ml.schema import encode_prediction, encode_record
    >>> batch = decode_many([encode_record([1] * 64, 3, ts="2020-01-01 01:01:01", source="a")])
    >>> encode_predictions(batch, 0, 1, [7]) == [encode_prediction(batch.record(0), 7)]
    True
    """
    if end <= start:
        return []
    # "[[1,2,...],[3,4,...]]": numbers only, so "],[" only ever separates two rows
    xs = orjson.dumps(np.ascontiguousarray(batch.X[start:end]),
                      option=orjson.OPT_SERIALIZE_NUMPY).decode()[2:-2].split("],[")
    strings: dict[str, str] = {}
    out = []
    for j, x, y, pred in zip(range(start, end), xs, batch.y[start:end].tolist(), predicted):
        # ts passed the contract's pattern (digits, "-", ":", ".", " "): nothing to escape
        text = (f'{{"x":[{x}],"actual_y":{y},'
                f'"predict_y":{"null" if pred is None else int(pred)},"ts":"{batch.ts[j]}"')
        source, rid = batch.source[j], batch.id[j]
        if source is not None:
            text += ',"source":' + (strings.get(source) or _json_string(source, strings))
        if rid is not None:
            text += ',"id":' + (strings.get(rid) or _json_string(rid, strings))
        out.append(text + "}")
    return out


def hits(actual: np.ndarray, predicted: Sequence[int | None]) -> np.ndarray:
    """Which predictions were right, as booleans; a model that had seen nothing predicts None
    for every record, and None is wrong.

    >>> hits(np.array([1, 2]), [1, 3]).tolist(), hits(np.array([1, 2]), [None, None]).tolist()
    ([True, False], [False, False])
    """
    if len(predicted) and predicted[0] is not None:
        return actual == np.asarray(predicted)
    return np.zeros(len(actual), dtype=bool)
