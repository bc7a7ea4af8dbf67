"""Batch mode's Python work per record, each step before and after it moved to arrays (issue 11).

No services, about a minute. What the batch UDF does with an Arrow batch of producer records,
outside Flink, step by step, each step's two ways timed in the same run, alternating:

* decode: ``schema.decode_record`` per value (before) against ``batch_codec.decode_many`` (now);
* answer: ``schema.encode_prediction`` per record against ``batch_codec.encode_predictions`` per
  chunk (the ``x`` of all its rows in one ``orjson`` call);
* learn: softmax's AdaGrad steps compiled without fast math (before) and with it (now), on the
  same scaled rows, and how far apart the weights end;
* batch: the whole path (decode, predict-then-learn in chunks, the metrics, the alarm, answers)
  with the garbage collector on (before) and paused (now, ``trainer.paused_gc``).

The µs are per record, the median over ``repeats`` rounds; the verdicts say whether each "now"
is the faster in the same run.

    python bench/batch_cost.py [--markdown] [--smoke]
"""
from __future__ import annotations

import gc
import itertools
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import common
import numpy as np

from online_ml.alerts import AccuracyAlarm
from online_ml.batch_codec import decode_many, encode_predictions, hits
from online_ml.learner import OnlineLearner, make_model, predict_chunk
from online_ml.producer import iter_records, make_message
from online_ml.schema import decode_record, encode_prediction
from online_ml.softmax_steps import adagrad_steps, njit
from online_ml.trainer import paused_gc

COLUMNS = [("step", "step", ""), ("before", "before", ""), ("now", "now", ""),
           ("µs/record before", "before_us", ".2f"), ("µs/record now", "now_us", ".2f"),
           ("× faster", "speedup", ".2f")]


@dataclass
class Params:
    records: int = 20_000  # producer records, in Arrow batches of batch_size
    batch_size: int = 5000  # the batch UDF's default BATCH_SIZE
    repeats: int = 7
    seed: int = 42

    @classmethod
    def smoke(cls) -> Params:
        return cls(records=400, batch_size=200, repeats=1)


def _timed(fn: Callable[[], object], records: int) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1e6 / records


def _pair(before: Callable[[], object], now: Callable[[], object], records: int,
          repeats: int) -> tuple[float, float]:
    """Median µs per record of each, the two alternating (which goes first alternates too)."""
    before(), now()  # warm up
    a: list[float] = []
    b: list[float] = []
    for i in range(repeats):
        for fn, out in ((before, a), (now, b))[:: 1 if i % 2 == 0 else -1]:
            out.append(_timed(fn, records))
    return statistics.median(a), statistics.median(b)


def _batch_path(batches: list[list[bytes]], max_chunk: int) -> Callable[[], object]:
    """The batch UDF's work without Flink or Redis: a fresh learner over every batch."""

    def run() -> None:
        learner = OnlineLearner(make_model("softmax"))
        alarm = AccuracyAlarm()
        for values in batches:
            batch = decode_many(values)
            pos = 0
            while pos < len(batch):
                end = min(len(batch), pos + predict_chunk(learner.samples_seen, max_chunk))
                predicted = learner.learn_many(batch.X[pos:end], batch.y[pos:end])
                encode_predictions(batch, pos, end, predicted)
                alarm.update_many(hits(batch.y[pos:end], predicted),
                                  learner.samples_seen - (end - pos) + 1)
                pos = end

    return run


def run(p: Params, smoke: bool = False, quiet: bool = False) -> dict:
    started = time.time()
    machine = common.machine_info()
    common.progress(f"batch_cost: {p.records:,} producer records, batches of {p.batch_size:,}")
    values = [make_message(x, y) for x, y in
              itertools.islice(iter_records(seed=p.seed, epochs=100), p.records)]
    batches = [values[i:i + p.batch_size] for i in range(0, len(values), p.batch_size)]
    n = len(values)
    rows = []

    def row(step: str, before: str, now: str, fns: tuple[Callable, Callable]) -> None:
        common.progress(f"batch_cost: {step}")
        b, a = _pair(*fns, n, p.repeats)
        rows.append({"step": step, "before": before, "now": now, "before_us": round(b, 3),
                     "now_us": round(a, 3), "speedup": round(b / a, 2) if a else None})

    row("decode", "decode_record per value", "decode_many per batch",
        (lambda: [[decode_record(v) for v in vs] for vs in batches],
         lambda: [decode_many(vs) for vs in batches]))

    decoded = [decode_many(vs) for vs in batches]
    preds = [[int(y) for y in d.y] for d in decoded]
    records = [[d.record(j) for j in range(len(d))] for d in decoded]
    row("answer", "encode_prediction per record", "encode_predictions per batch",
        (lambda: [[encode_prediction(r, y) for r, y in zip(rs, ps)]
                  for rs, ps in zip(records, preds)],
         lambda: [encode_predictions(d, 0, len(d), ps) for d, ps in zip(decoded, preds)]))

    X = np.concatenate([d.X for d in decoded]).astype(np.float64) / 16
    cols = np.concatenate([d.y for d in decoded]).astype(np.int64)
    plain = njit(nogil=True)(adagrad_steps.py_func)
    ends = {}

    def steps(fn: Callable, name: str) -> Callable[[], object]:
        def go() -> None:
            state = [np.zeros((10, 64)), np.zeros(10), np.zeros((10, 64)), np.zeros(10),
                     np.zeros((10, 64)), np.zeros(10)]
            fn(X, cols, np.ones(len(X)), state[0], state[1], state[2], state[3], state[4],
               state[5], 0.0, 0.5, 1e-3, 0.3, 1e-8)
            ends[name] = state
        return go

    row("learn", "AdaGrad steps, numba", "the same with fast math",
        (steps(plain, "plain"), steps(adagrad_steps, "fast")))
    apart = max(float(np.abs(u - v).max()) for u, v in zip(ends["plain"], ends["fast"]))
    rows[-1]["weights_apart"] = apart

    path_fn = _batch_path(batches, 1024)

    def paused() -> None:
        with paused_gc():
            path_fn()

    def collected() -> None:
        assert gc.isenabled()
        path_fn()

    row("batch", "the whole path, GC on", "the same, GC paused", (collected, paused))

    targets = [common.target(f"{r['step']}: now / before, µs a record", round(r["now_us"] /
                                                                             r["before_us"], 3),
                             1.0, "<=", f"{r['now_us']:.2f} vs {r['before_us']:.2f}")
               for r in rows]
    targets.append(common.target("learn: fast-math weights apart from the plain ones", apart,
                                 1e-9, "<=", "largest absolute difference after every step"))
    return common.finish_table(
        "batch_cost", "batch mode's Python work per record, before and now (outside Flink)",
        COLUMNS, rows, targets, dict(vars(p)), machine, started, smoke, quiet)


def main() -> int:
    return common.offline_main(__doc__, run, Params, [(COLUMNS, "rows")])


if __name__ == "__main__":
    sys.exit(main())
