"""The Kafka record contract: what the job accepts, what it refuses and how it says why."""
import doctest
import json
import os
import subprocess

import numpy as np
import pytest

from online_ml import batch_codec, schema
from online_ml.harness.paths import PY, ROOT
from online_ml.schema import BadRecord, Record, decode_record, encode_prediction, encode_record

TS = "2020-01-01 01:01:01"
X = [i % 17 for i in range(64)]


def raw(**fields):
    record = {"ts": TS, "x": X, "actual_y": 3}
    record.update(fields)
    return json.dumps({k: v for k, v in record.items() if v is not _DROP})


_DROP = object()


def reason_of(payload) -> str:
    with pytest.raises(BadRecord) as info:
        decode_record(payload)
    assert str(info.value)  # always a human message too
    return info.value.reason


def test_doctests():
    assert doctest.testmod(schema).failed == 0


def test_decode_good_record_bytes_and_str():
    for payload in (raw(), raw().encode()):
        rec = decode_record(payload)
        assert rec == Record(ts=TS, x=tuple(X), actual_y=3)
        assert isinstance(rec.x, tuple) and all(type(v) is int for v in rec.x)


def test_record_is_immutable():
    rec = decode_record(raw())
    with pytest.raises(AttributeError):
        rec.actual_y = 4  # type: ignore[misc]


def test_source_and_extra_fields():
    assert decode_record(raw(source="feedback")).source == "feedback"
    assert decode_record(raw(something_else=[1, 2])).actual_y == 3
    assert reason_of(raw(source=5)) == "bad_source"


@pytest.mark.parametrize("payload, reason", [
    ("{not json", "malformed_json"),
    (b"\xff\xfe", "malformed_json"),
    ("", "malformed_json"),
    ("[1, 2]", "not_an_object"),
    ("null", "not_an_object"),
    ("42", "not_an_object"),
])
def test_not_a_record(payload, reason):
    assert reason_of(payload) == reason


@pytest.mark.parametrize("field", ["ts", "x", "actual_y"])
def test_missing_field_named(field):
    with pytest.raises(BadRecord) as info:
        decode_record(raw(**{field: _DROP}))
    assert info.value.reason == "missing_field"
    assert field in str(info.value)


@pytest.mark.parametrize("x, reason", [
    ("0" * 64, "bad_x_type"),
    ({"a": 1}, "bad_x_type"),
    (None, "bad_x_type"),
    (5, "bad_x_type"),
    ([], "bad_x_length"),
    (X[:63], "bad_x_length"),
    (X + [0], "bad_x_length"),
    (X[:63] + [17], "bad_x_value"),
    (X[:63] + [-1], "bad_x_value"),
    (X[:63] + [2.5], "bad_x_value"),
    (X[:63] + [True], "bad_x_type"),
    (X[:63] + ["3"], "bad_x_type"),
    (X[:63] + [None], "bad_x_type"),
    (X[:63] + [[1]], "bad_x_type"),
])
def test_bad_x(x, reason):
    assert reason_of(raw(x=x)) == reason


def test_bad_x_message_names_the_position():
    with pytest.raises(BadRecord) as info:
        decode_record(raw(x=X[:10] + [99] + X[11:]))
    assert "x[10]" in str(info.value) and "99" in str(info.value)


def test_integral_floats_are_accepted_as_ints():
    rec = decode_record(raw(x=[float(v) for v in X], actual_y=3.0))
    assert rec.x == tuple(X) and all(type(v) is int for v in rec.x)
    assert rec.actual_y == 3 and type(rec.actual_y) is int


def test_nan_and_infinity_are_refused():
    # NaN / Infinity are not JSON (RFC 8259): the strict parser refuses the whole record
    assert reason_of(raw().replace('"x": [0', '"x": [NaN', 1)) == "malformed_json"
    assert reason_of(raw().replace('"actual_y": 3', '"actual_y": Infinity')) == "malformed_json"


@pytest.mark.parametrize("y", [10, -1, 3.5, "3", True, None, [3]])
def test_bad_label(y):
    assert reason_of(raw(actual_y=y)) == "bad_label"


@pytest.mark.parametrize("ts", [None, 20200101, "", "yesterday", "2020-01-01",
                                "2020-13-01 01:01:01", "2020-01-01 25:00:00",
                                "2020-01-01T01:01:01+02:00"])
def test_bad_ts(ts):
    assert reason_of(raw(ts=ts)) == "bad_ts"


def test_ts_with_fraction_is_accepted():
    assert decode_record(raw(ts="2020-01-01 01:01:01.123")).ts == "2020-01-01 01:01:01.123"


def test_encode_round_trip_and_default_ts():
    rec = decode_record(encode_record(X, 7))
    assert rec.x == tuple(X) and rec.actual_y == 7
    assert len(rec.ts) == 19  # YYYY-MM-DD HH:MM:SS, now


def test_encode_accepts_numpy_and_adds_extra_fields():
    data = encode_record(np.array(X, dtype=np.float64), np.int64(4), ts=TS, source="feedback")
    assert isinstance(data, bytes)
    obj = json.loads(data)
    assert obj == {"ts": TS, "x": X, "actual_y": 4, "source": "feedback"}


@pytest.mark.parametrize("x, y, ts, reason", [
    (X[:5], 1, None, "bad_x_length"),
    (X[:63] + [20], 1, None, "bad_x_value"),
    (X, 12, None, "bad_label"),
    (X, 1, "now", "bad_ts"),
])
def test_encode_refuses_what_decode_would_refuse(x, y, ts, reason):
    with pytest.raises(BadRecord) as info:
        encode_record(x, y, ts=ts)
    assert info.value.reason == reason


def test_encode_prediction():
    rec = Record(ts=TS, x=tuple(X), actual_y=3, source="producer")
    obj = json.loads(encode_prediction(rec, 5, model_version=2))
    assert obj == {"x": X, "actual_y": 3, "predict_y": 5, "ts": TS, "source": "producer",
                   "model_version": 2}
    assert json.loads(encode_prediction(rec, None))["predict_y"] is None
    assert json.loads(encode_prediction(rec, np.int64(1)))["predict_y"] == 1


def test_bad_record_is_a_value_error():
    assert issubclass(BadRecord, ValueError)
    assert set(schema.REASONS) >= {"malformed_json", "not_an_object", "missing_field",
                                   "bad_x_length", "bad_x_value", "bad_x_type", "bad_label",
                                   "bad_ts"}


def _many_kinds() -> list:
    """Good and bad values of every kind above, in one batch (batch mode decodes them together)."""
    bad_x = [X[:63] + [v] for v in (17, -1, 2.5, True, False, "3", None, [1], 2**70)]
    values: list = [raw(), raw().encode(), None, b"", "{not json", b"\xff\xfe", "[1, 2]", "null",
                    raw(x=[float(v) for v in X], actual_y=3.0), raw(x=[True] * 64),
                    raw(x=[bool(v % 2) for v in X]), raw(source="feedback", id="f-1"),
                    raw(source="said true"), raw(id=""), raw(id="x" * 101), raw(source=5),
                    raw(something_else=[1, 2]), raw(ts="2020-01-01 01:01:01.123"),
                    raw(ts="2020-13-01 01:01:01"), raw(ts=20200101), raw(actual_y=10),
                    raw(actual_y=True), raw(actual_y=3.0), raw(x=X[:63]), raw(x="0" * 64)]
    values += [raw(x=x) for x in bad_x] + [raw(**{f: _DROP}) for f in ("ts", "x", "actual_y")]
    return values + [encode_record(X[::-1], y, ts=TS) for y in range(10)]


def _outcome(value):
    try:
        return decode_record(value if value is not None else b"")
    except BadRecord as exc:
        return exc.reason, str(exc)


@pytest.mark.parametrize("pick", ["all", "good", "each"])
def test_decode_many_is_decode_record_on_each_value(pick):
    """Batch mode's decoding (online_ml/batch_codec.py): the same records and the same errors as
    one decode_record per value, whatever the mix (a batch of good values takes the array path),
    and the predictions written as encode_prediction writes them."""
    values = _many_kinds()
    batches = {"all": [values, values[::-1]],
               "good": [[v for v in values if isinstance(_outcome(v), Record)]],
               "each": [[v] for v in values]}[pick]
    for batch_values in batches:
        batch = batch_codec.decode_many(batch_values)
        expected = [_outcome(v) for v in batch_values]
        good = [i for i, e in enumerate(expected) if isinstance(e, Record)]
        assert batch.index == good
        assert [batch.record(j) for j in range(len(batch))] == [expected[i] for i in good]
        assert [(i, exc.reason, str(exc)) for i, exc in batch.rejected] == \
            [(i, *e) for i, e in enumerate(expected) if not isinstance(e, Record)]
        assert batch.X.dtype == np.int64 and batch.X.shape == (len(good), 64)
        assert batch.y.dtype == np.int64 and len(batch.ts) == len(batch.id) == len(good)
        predicted = [None if j % 5 == 0 else (j * 7) % 10 for j in range(len(batch))]
        for start, end in ((0, len(batch)), (1, len(batch) - 1), (2, 3), (3, 3)):
            if not start <= end <= len(batch):
                continue
            assert batch_codec.encode_predictions(batch, start, end, predicted[start:end]) == \
                [encode_prediction(batch.record(j), predicted[j]) for j in range(start, end)]
    empty = batch_codec.decode_many([])
    assert len(empty) == 0 and empty.X.shape == (0, 64) and empty.rejected == []


def test_batch_predictions_escape_what_json_escapes():
    values = [raw(source='quote " backslash \\ tab \t é 🙂', id="ü\u0001"),
              raw(source="feedback", id='a"b'), raw()]
    batch = batch_codec.decode_many(values)
    assert len(batch) == 3
    texts = batch_codec.encode_predictions(batch, 0, 3, [1, 2, None])
    assert texts == [encode_prediction(batch.record(j), p) for j, p in enumerate([1, 2, None])]
    assert [json.loads(t)["source"] for t in texts[:2]] == [json.loads(v)["source"]
                                                           for v in values[:2]]


def test_the_batch_cost_benchmark_runs_at_smoke_size(tmp_path):
    """bench/batch_cost.py --smoke as a user runs it: each step of batch mode before and now,
    timed in one run, and the fast-math weights beside the plain ones."""
    done = subprocess.run([PY, str(ROOT / "bench" / "batch_cost.py"), "--smoke"], cwd=ROOT,
                          env=dict(os.environ, BENCH_RESULTS_DIR=str(tmp_path)),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    doc = json.loads((tmp_path / "batch_cost.json").read_text())
    assert [r["step"] for r in doc["results"]] == ["decode", "answer", "learn", "batch"]
    assert all(r["before_us"] > 0 and r["now_us"] > 0 for r in doc["results"])
    assert doc["results"][2]["weights_apart"] <= 1e-9
    assert len(doc["targets"]) == 5
