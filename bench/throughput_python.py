"""bench/throughput.py's variants (d): the training job's learner in a plain Python loop, without
Flink or Kafka, over the producer's records — ``OnlineLearner.learn_one`` on decoded records,
``Trainer.process`` (the row UDF's body) and ``Trainer.process_many`` with the batch UDF's
chunking — so the table shows what Flink and Kafka add to the Python work.

The parameters are bench/throughput.py's ``Params`` (``python_seconds``, ``python_pool``,
``records``, ``seed``, ``backup_interval``, ``batch_sizes``).
"""
from __future__ import annotations

import itertools
import json
import time
from collections import deque
from typing import Any

import common

from online_ml.blas import every_core
from online_ml.config import Settings

#: The variants with numpy's BLAS free to use every core (BLAS_THREADS=0), as before 2026-12-04
BLAS_EVERY_CORE = "BLAS on every core (before 2026-12-04)"


def _python_loop(name: str, pool: list, step, p: Any, chunk: int = 1) -> dict:
    """Run ``step(values) -> [(pred, actual)]`` over the pool (cycled) for python_seconds."""
    first: list = []
    last: deque = deque(maxlen=common.EPOCH)
    n = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    deadline = started + p.python_seconds
    for i in itertools.cycle(range(0, len(pool), chunk)):
        results = step(pool[i:i + chunk])
        n += len(results)
        if len(first) < common.EPOCH:
            first.extend(results[:common.EPOCH - len(first)])
        last.extend(results)
        if n >= min(len(pool), common.EPOCH) and time.perf_counter() >= deadline:
            break
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    # CPU of the whole process (every thread: BLAS's, the backups') a record learned
    return {"variant": name, "kind": "python", "records": n, "seconds": round(elapsed, 3),
            "records_per_s": round(n / elapsed, 1), "cpu_us_per_record": round(cpu * 1e6 / n, 1),
            "acc_first_epoch": common.accuracy(first),
            "acc_last_epoch": common.accuracy(last)}


def _sink_values(out, sink_topic: str) -> list[str]:
    """The prediction(s) in one process_many output: a JSON string, or (topic, value) pairs."""
    if out is None:
        return []
    if isinstance(out, (str, bytes)):
        return [out]
    return [value for topic, value in out if topic == sink_topic]


def run_python_variants(p: Any, settings: Settings, rid: str, keys: list[str]) -> list[dict]:
    from online_ml.producer import iter_records, make_message
    from online_ml.schema import decode_record
    from online_ml.trainer import Trainer

    pool_raw = [make_message(x, y) for x, y in
                itertools.islice(iter_records(seed=p.seed), min(p.python_pool, p.records))]
    rows = []

    def trainer(tag: str) -> Trainer:
        key = f"bench_{rid}_py_{tag}"
        keys.append(key)
        t = Trainer(Settings.from_env(redis_db=common.BENCH_REDIS_DB, model_key=key,
                                      backup_interval_seconds=p.backup_interval))
        t.start_background_backups()  # as the job does
        return t

    # OnlineLearner.learn_one on decoded records: the learner alone
    t = trainer("learn_one")
    decoded = [decode_record(v) for v in pool_raw]
    learner = t.learner
    common.progress("throughput: python OnlineLearner.learn_one")
    rows.append(_python_loop("python: learn_one", decoded,
                             lambda recs: [(learner.learn_one(r.x, r.actual_y), r.actual_y)
                                           for r in recs], p))
    t.close()

    # Trainer.process: the row UDF's eval without Flink
    t = trainer("process")
    common.progress("throughput: python Trainer.process")

    def row_step(values):
        _, actual, predicted = t.process(values[0])
        return [(predicted, actual)]

    rows.append(_python_loop("python: Trainer.process", pool_raw, row_step, p))
    t.close()

    # Trainer.process_many per Arrow batch: the batch UDF's eval without Flink
    for b in p.batch_sizes:
        t = trainer(f"many{b}")
        common.progress(f"throughput: python Trainer.process_many (batch {b})")

        def batch_step(values, t=t):
            outputs, _, _ = t.process_many(values)
            res = []
            for out in outputs:
                for value in _sink_values(out, t.settings.sink_topic):
                    doc = json.loads(value)
                    res.append((doc["predict_y"], doc["actual_y"]))
            return res

        rows.append(_python_loop(f"python: process_many B={b}", pool_raw, batch_step, p, chunk=b))
        t.close()
        if b == max(p.batch_sizes):  # the same with BLAS on every core, as before BLAS_THREADS
            t = trainer(f"many{b}_blas")
            common.progress(f"throughput: python Trainer.process_many (batch {b}), "
                            f"{BLAS_EVERY_CORE}")
            with every_core():
                rows.append(_python_loop(f"python: process_many B={b}, {BLAS_EVERY_CORE}",
                                         pool_raw, lambda values, t=t: batch_step(values, t),
                                         p, chunk=b))
            t.close()
    return rows


