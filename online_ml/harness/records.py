"""Kafka records for the training job: good ones from the producer, one bad record of each kind.

Why shared: the trainer's unit tests and the tests of the job on Flink feed the same stream (good
records with bad ones in between, then wrong labels to force an accuracy drop) and must agree on
what each bad record is rejected for.
"""
from __future__ import annotations

import functools
import itertools
import json

from online_ml.producer import iter_records, make_message

TS = "2024-01-01 12:00:00"
OK_X = [0] * 64


@functools.cache
def good_records(n: int = 1500, seed: int = 7) -> tuple[str, ...]:
    """``n`` records as the producer sends them (shuffled digits), as JSON text."""
    return tuple(make_message(x, y, ts=TS).decode()
                 for x, y in itertools.islice(iter_records(seed=seed), n))


def _record(**fields: object) -> str:
    return json.dumps({"ts": TS, "x": OK_X, "actual_y": 1, **fields})


#: One of each kind of bad record, with the reason the job must reject it for.
BAD: list[tuple[str, str | bytes | None]] = [
    ("malformed_json", '{"ts": "2024-01-01 12:00:00", "x": [0, '),
    ("malformed_json", b"\xff\xfe not utf-8"),
    ("malformed_json", None),  # a Kafka tombstone
    ("not_an_object", "[1, 2, 3]"),
    ("not_an_object", '"just a string"'),
    ("missing_field", json.dumps({"ts": TS, "x": OK_X})),
    ("missing_field", json.dumps({"x": OK_X, "actual_y": 1})),
    ("bad_x_length", _record(x=[0] * 63)),
    ("bad_x_type", _record(x="0" * 64)),
    ("bad_x_type", _record(x=["0"] * 64)),
    ("bad_x_value", _record(x=[17] + [0] * 63)),
    ("bad_x_value", _record(x=[-1] + [0] * 63)),
    ("bad_label", _record(actual_y=10)),
    ("bad_label", _record(actual_y="3")),
    ("bad_ts", _record(ts="yesterday")),
    ("bad_ts", _record(ts="2024-13-01 12:00:00")),
    ("bad_source", _record(source=5)),
    ("bad_id", _record(id="")),
]


def shifted(value: str) -> str:
    """The same record with a wrong label: forces the prequential accuracy down."""
    obj = json.loads(value)
    obj["actual_y"] = (obj["actual_y"] + 1) % 10
    return json.dumps(obj)
