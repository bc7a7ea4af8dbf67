"""Training throughput, end to end through Kafka and Flink at parallelism 1.

One topic is preloaded with N records by the project's producer. Each variant is then a job that
reads that topic from the earliest offset (a fresh consumer group) and writes to its own sink
topic; the rate is taken from the sink records' Kafka timestamps (set when the job's Kafka writer
sent them), first .. last record, so the job's start-up (JVM, Python workers) is not counted.
A variant stops after ``seconds`` of output, or when it has passed the whole topic on.

Variants, all in one run so that their ratios hold on a noisy machine:

(a) ``passthrough``: bench/passthrough_job.py, the training job's source and sink without the UDF:
    the ceiling of Kafka + Flink on this machine;
(a') ``python-passthrough``: the same job with a pandas UDF that only returns its input, at the
    batch UDF's Arrow batch size (the largest of ``batch_sizes``): every record goes to a Python
    worker and back, so this is the realistic ceiling of any Python UDF here;
(a'') ``python-shape``: the batch training job's shape without its work (passthrough_job.py
    --mode shape: each record back as an array of one string, unnested and split by topic in the
    JVM into the job's sink table): the ceiling of the batch UDF as it is built;
(b) ``row UDF``: stream.py with UDF_MODE=row (one Python call per record, the tutorial's way),
    in PyFlink's default process mode (a Python worker talking gRPC with the TaskManager);
(b') ``row-thread``: the same with PYTHON_EXECUTION_MODE=thread (the UDF inside the TaskManager
    JVM through pemja, no Python worker, no sockets);
(c) ``batch UDF``: stream.py with UDF_MODE=batch at several BATCH_SIZE values;
(d) the same learner in a plain Python loop, without Flink or Kafka, over the same records:
    ``OnlineLearner.learn_one`` on decoded records, ``Trainer.process`` (the row UDF's body) and
    ``Trainer.process_many`` with the batch UDF's chunking.

Accuracy is prequential (each record predicted before it is learned): over the first pass over
the 1797 digits (every image new to the model) and over the last 1797 records of the variant.

While each Flink variant runs, the TCP ports its job added to the TaskManager (the JVM and the
processes it started, i.e. the Python workers) are listed from /proc, with their addresses:
what each execution mode opens (issue 9, point 6).

Variants (d) are in bench/throughput_python.py, the verdict on the execution modes (and
``--repeat N``) in bench/execution_mode.py.

``python bench/throughput.py --private`` runs it all on a private stack instance
(online_ml.harness.instance: state folder and ports of its own), not on the running stack.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import common
from execution_mode import REPEAT_COLUMNS, ROW_THREAD, execution_modes, repeated
from throughput_python import BLAS_EVERY_CORE, run_python_variants

from online_ml.config import Settings
from online_ml.harness.flink import FlinkJobs
from online_ml.harness.kafka import TopicReader, Topics, preload
from online_ml.harness.net import added_sockets, taskmanager_sockets
from online_ml.harness.verdicts import if_row_bound
from online_ml.harness.waiting import GiveUp, wait_for

SHAPE = "python shape"
# pemja (thread mode) loads libpython once per JVM; a later job's class loader cannot (FLINK-37727)
PEMJA_ONCE = "NoSuchFieldException: loadedLibraryNames"


@dataclass
class Params:
    records: int = 3_000_000  # preloaded into the source topic
    seconds: float = 20.0  # of sink output per Flink variant
    batch_sizes: tuple[int, ...] = (100, 1000, 5000)
    python_seconds: float = 10.0  # per plain-Python variant
    python_pool: int = 100_000  # distinct raw records the Python loops cycle through
    preload_procs: int = 1  # producer processes filling the topic in parallel (2 cores: 1)
    backup_interval: float = 10.0
    seed: int = 42
    first_record_timeout: float = 240.0
    thread_first: bool = False  # row-thread before row (--repeat alternates the order)
    python_passthrough_batch: int | None = None  # BATCH_SIZE of the python passthrough; None:
    # the largest of batch_sizes
    # "row-thread" is not in the default: on Java 17 PyFlink 2.2.1 runs thread mode once per
    # TaskManager JVM (README, "Python execution mode"): it runs on a fresh private instance
    variants: tuple[str, ...] = ("passthrough", "python-passthrough", "python-shape", "row",
                                 "batch", "batch-blas", "python")
    all_variants = ("passthrough", "python-passthrough", "python-shape", "python-flat", "row",
                    "row-thread", "batch", "batch-blas", "python")
    notes: list = field(default_factory=list)

    @classmethod
    def smoke(cls) -> Params:
        return cls(records=400, seconds=3.0, batch_sizes=(1000,), python_seconds=0.0,
                   python_pool=400, preload_procs=1)


def _blas_targets(by_name: dict, b: int) -> list[dict]:
    """One BLAS thread (BLAS_THREADS=1, the default: online_ml/blas.py) against every core, the
    batch UDF at the largest batch size: through Flink no slower (records/s; this VM's runs of
    the same code differ by up to 15 %), and in the plain Python loop less CPU a record (the
    process's, every thread's)."""
    flink_one, flink_every = f"batch UDF B={b}", f"{BLAS_EVERY_CORE}: batch UDF B={b}"
    loop_one = f"python: process_many B={b}"
    loop_every = f"{loop_one}, {BLAS_EVERY_CORE}"
    out = []
    a, e = (by_name.get(flink_one, {}).get("records_per_s"),
            by_name.get(flink_every, {}).get("records_per_s"))
    if a and e:
        out.append(common.target(f"{flink_one}: one BLAS thread / every core, records/s",
                                 round(a / e, 3), 0.85, ">=", f"{a:,.0f} vs {e:,.0f}"))
    a, e = (by_name.get(loop_one, {}).get("cpu_us_per_record"),
            by_name.get(loop_every, {}).get("cpu_us_per_record"))
    if a and e:
        out.append(common.target(f"{loop_one}: one BLAS thread / every core, CPU a record",
                                 round(a / e, 3), 1.0, "<=", f"{a:,.0f} vs {e:,.0f} µs"))
    return out


def _predictions(records) -> list[tuple[int | None, int]]:
    out = []
    for rec in records:
        try:
            doc = json.loads(rec.value)
            out.append((doc.get("predict_y"), doc["actual_y"]))
        except (ValueError, KeyError, TypeError):
            continue
    return out


def run_flink_variant(name: str, script: str, env: dict, args: list[str], p: Params,
                      settings: Settings, flink: FlinkJobs, topics: Topics, rid: str,
                      predicts: bool, flink_options: tuple[str, ...] = (),
                      sockets: Callable[[], list[dict]] | None = None) -> dict:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", name.split(" (")[0]).strip("_")
    sink = topics.create(f"bench_{rid}_{slug}_sink")
    env = dict(env, SINK_TOPIC=sink)
    reader = TopicReader(settings, sink)
    sockets = sockets or taskmanager_sockets
    before = sockets()
    during: list[dict] = []
    submitted = time.time()
    common.progress(f"throughput: submitting {name}")
    job = flink.submit(script, env, args, flink_options)
    try:
        def started():
            state = flink.state(job)
            if state in ("FAILED", "CANCELED", "FINISHED"):
                raise GiveUp(f"job {name} is {state}: {flink.failure_if_any(job)}")
            if flink.restarts_if_known(job) and PEMJA_ONCE in flink.failure_if_any(job):
                raise GiveUp(f"job {name} fails at start ({PEMJA_ONCE}): thread mode ran "
                             f"on this TaskManager before; run it on a fresh one (--private)")
            return reader.end_offset() > 0

        wait_for(started, p.first_record_timeout, f"the first record of {name} in {sink}",
                 interval=0.2)
        during = sockets()  # the job's Python side is up: it has produced a record
        first_seen = time.monotonic()
        while time.monotonic() - first_seen < p.seconds and reader.end_offset() < p.records:
            time.sleep(0.2)
    finally:
        restarts = flink.restarts_if_known(job)
        flink.cancel_submitted()  # this variant's job; never raises over the variant's error
    count = reader.end_offset()
    first, last = reader.at(0), reader.at(count - 1)
    lo, hi = int(count * 0.1), max(int(count * 0.9), int(count * 0.1) + 1)
    lo_rec, hi_rec = reader.at(lo), reader.at(min(hi, count - 1))
    span = (last.timestamp - first.timestamp) / 1000
    steady_span = (hi_rec.timestamp - lo_rec.timestamp) / 1000
    row = {
        "variant": name,
        "kind": "flink",
        "records": count,
        "seconds": round(span, 3),
        "records_per_s": round((count - 1) / span, 1) if span > 0 else None,
        "steady_records_per_s": (round((hi_rec.offset - lo_rec.offset) / steady_span, 1)
                                 if steady_span > 0 else None),
        "startup_s": round(first.timestamp / 1000 - submitted, 1),
        "exhausted_topic": count >= p.records,
        "job_id": job,
        "job_restarts": restarts,
        **added_sockets(before, during),
    }
    if predicts:
        k = min(common.EPOCH, count)
        row["acc_first_epoch"] = common.accuracy(_predictions(reader.read(0, k)))
        row["acc_last_epoch"] = common.accuracy(_predictions(reader.read(count - k, k)))
    reader.close()
    if restarts:
        p.notes.append(f"{name}: the job restarted {restarts} time(s) during the measurement")
    if row["exhausted_topic"] and span < p.seconds:
        p.notes.append(f"{name} passed the whole topic on in {span:.1f} s (< {p.seconds:g} s): "
                       f"preload more records (--records)")
    return row


def run(p: Params, smoke: bool = False, quiet: bool = False) -> dict:
    started = time.time()
    settings = Settings.from_env()
    machine = common.machine_info(settings)
    rid = uuid.uuid4().hex[:8]
    flink = FlinkJobs(settings.flink_rest_url)
    keys: list[str] = []
    rows: list[dict] = []
    with Topics(settings) as topics:
        try:
            if set(p.variants) - {"python"}:  # every variant but "python" reads the preload
                source = topics.create(f"bench_{rid}_source")
                common.progress(f"throughput: preloading {p.records:,} records into {source}")
                loaded = preload(settings, source, p.records, p.seed, procs=p.preload_procs)
                common.progress(f"throughput: preloaded at {loaded['records_per_s']:,.0f} rec/s")
            else:
                loaded = None
            base_env = {"SOURCE_TOPIC": source if loaded else "",
                        "REDIS_DB": str(common.BENCH_REDIS_DB),
                        "BACKUP_INTERVAL_SECONDS": str(p.backup_interval),
                        # a name of its own: the stack's job watcher never takes it for the demo's
                        "JOB_NAME": f"bench throughput {rid}"}
            if loaded and set(p.variants) & {"row", "row-thread", "batch"}:
                # the job's side outputs (bad records, accuracy alerts) stay in the benchmark too
                base_env["DEAD_LETTER_TOPIC"] = topics.create(f"bench_{rid}_dead_letter")
                base_env["ALERT_TOPIC"] = topics.create(f"bench_{rid}_alerts")
            shared = dict(p=p, settings=settings, flink=flink, topics=topics, rid=rid)
            if "passthrough" in p.variants:
                # stream.py travels with the job (-pyfs): the passthrough declares its tables
                rows.append(run_flink_variant(
                    "passthrough (no UDF)", "bench/passthrough_job.py", base_env,
                    ["--group-id", topics.group(f"bench_{rid}_g_pass")], predicts=False,
                    flink_options=("-pyfs", "stream.py"), **shared))
            b = p.python_passthrough_batch or max(p.batch_sizes)
            python_jobs = [("python-passthrough", "python", "pypass",
                            f"python passthrough (copy-only pandas UDF, B={b})"),
                           ("python-shape", "shape", "pyshape",
                            f"{SHAPE} (the batch UDF's output, no work, B={b})"),
                           ("python-flat", "flat", "pyflat",
                            f"python flat (one string per record, no array, no work, B={b})")]
            for variant, mode, tag, name in python_jobs:
                if variant in p.variants:
                    rows.append(run_flink_variant(
                        name, "bench/passthrough_job.py", dict(base_env, BATCH_SIZE=str(b)),
                        ["--group-id", topics.group(f"bench_{rid}_g_{tag}"), "--mode", mode],
                        predicts=False, flink_options=("-pyfs", "stream.py"), **shared))
            # the row UDF in both of PyFlink's execution modes, one after the other
            row_variants = [("row", "row UDF", "process"), ("row-thread", ROW_THREAD, "thread")]
            for variant, name, execution in row_variants[::-1] if p.thread_first else row_variants:
                if variant not in p.variants:
                    continue
                key = f"bench_{rid}_{variant}"
                keys.append(key)
                try:
                    rows.append(run_flink_variant(
                        name, "stream.py", dict(base_env, UDF_MODE="row", MODEL_KEY=key,
                                                PYTHON_EXECUTION_MODE=execution),
                        ["--group-id", topics.group(f"bench_{rid}_g_{variant}")], predicts=True,
                        **shared))
                except GiveUp as exc:  # the other variants still run
                    if execution != "thread":
                        raise
                    rows.append({"variant": name, "kind": "flink", "error": str(exc)[:500]})
            if "batch" in p.variants:
                for b in p.batch_sizes:
                    key = f"bench_{rid}_batch{b}"
                    keys.append(key)
                    rows.append(run_flink_variant(
                        f"batch UDF B={b}", "stream.py",
                        dict(base_env, UDF_MODE="batch", BATCH_SIZE=str(b), MODEL_KEY=key),
                        ["--group-id", topics.group(f"bench_{rid}_g_b{b}")], predicts=True,
                        **shared))
            if "batch-blas" in p.variants:  # online_ml/blas.py: what one BLAS thread changes
                b = max(p.batch_sizes)
                key = f"bench_{rid}_batch_blas"
                keys.append(key)
                rows.append(run_flink_variant(
                    f"{BLAS_EVERY_CORE}: batch UDF B={b}", "stream.py",
                    dict(base_env, UDF_MODE="batch", BATCH_SIZE=str(b), MODEL_KEY=key,
                         BLAS_THREADS="0"),
                    ["--group-id", topics.group(f"bench_{rid}_g_blas")], predicts=True, **shared))
            if "python" in p.variants:
                rows.extend(run_python_variants(p, settings, rid, keys))
        finally:
            flink.cancel_submitted()
            common.delete_model_keys(settings, keys)

    by_name = {r["variant"]: r for r in rows}
    ceiling = by_name.get("passthrough (no UDF)", {}).get("records_per_s")
    py_ceiling = next((r["records_per_s"] for r in rows
                       if r["variant"].startswith("python passthrough")), None)
    row_rate = by_name.get("row UDF", {}).get("records_per_s")
    for r in rows:
        rate = r.get("records_per_s")
        r["ratio_to_passthrough"] = round(rate / ceiling, 4) if rate and ceiling else None
        r["ratio_to_python_passthrough"] = (round(rate / py_ceiling, 4)
                                            if rate and py_ceiling else None)
        r["x_row_udf"] = round(rate / row_rate, 1) if rate and row_rate else None
    learn_one_rate = by_name.get("python: learn_one", {}).get("records_per_s")
    learner_us = 1e6 / learn_one_rate if learn_one_rate else None
    row_us = 1e6 / row_rate if row_rate else None
    batch_rows = [r for r in rows if r["variant"].startswith("batch UDF") and r["records_per_s"]]
    best = max(batch_rows, key=lambda r: r["records_per_s"], default=None)
    best_rate = best["records_per_s"] if best else None
    detail = best["variant"] if best else "no batch variant ran"
    targets = [
        common.target("batch UDF records/s", best_rate, 20_000, ">=", detail),
        if_row_bound(common.target("batch UDF / row UDF", best["x_row_udf"] if best else None, 50,
                                   ">=", detail), learner_us, row_us, "the row UDF",
                     "what batch mode removes is the learner's per-call cost"),
        common.target("batch UDF / passthrough", best["ratio_to_passthrough"] if best else None, 0.5,
               ">=", detail),
        common.target("batch UDF / python passthrough",
                      best["ratio_to_python_passthrough"] if best else None, 0.5, ">=", detail),
    ]
    targets += _blas_targets(by_name, max(p.batch_sizes))
    shape = next((r for r in rows if r["variant"].startswith(SHAPE)), None)
    if shape and shape.get("ratio_to_python_passthrough") and best_rate:
        # what the batch UDF's shape leaves: its work (decode, learn, encode) can at most close
        # the gap between the batch UDF and this ceiling
        ceiling_share = shape["ratio_to_python_passthrough"]
        budget = 1e6 / (0.5 * py_ceiling) - 1e6 / shape["records_per_s"] if py_ceiling else None
        p.notes.append(
            f"the batch UDF's shape alone (an array of strings per record, unnested in the JVM; "
            f"no work) runs at {ceiling_share:.0%} of the Python passthrough; the batch UDF's "
            f"work (decode, learn, encode, metrics) costs "
            f"{1e6 / best_rate - 1e6 / shape['records_per_s']:.1f} µs a record on top of it "
            f"({detail}); 50% of the Python passthrough leaves that work "
            + (f"{budget:.1f} µs a record" if budget is not None else "no figure"))
        targets.append(common.target("python shape / python passthrough", ceiling_share, 0.5, ">=",
                                     "the ceiling of the batch UDF as it is built"))
    exec_targets, exec_words = execution_modes(by_name)
    targets += exec_targets
    p.notes.extend(exec_words)
    params = {k: v for k, v in vars(p).items() if k != "notes"}
    job_settings = Settings.from_env()
    params.update(parallelism=1, preload=loaded,
                  learner=getattr(job_settings, "learner", None),
                  learner_params=job_settings.learner_kwargs(),
                  max_predict_chunk=job_settings.max_predict_chunk)
    path = common.write_result("throughput", params, rows, targets, machine, started, smoke,
                        extra={"notes": p.notes})
    return common.finish(path, rows, targets, report(rows, targets, p.notes), smoke, quiet)


COLUMNS = [("variant", "variant", ""), ("records", "records", ""),
           ("seconds", "seconds", ".1f"), ("rec/s", "records_per_s", ",.0f"),
           ("steady rec/s", "steady_records_per_s", ",.0f"),
           ("CPU µs/rec", "cpu_us_per_record", ",.0f"),
           ("vs passthrough", "ratio_to_passthrough", ".1%"),
           ("vs py passthrough", "ratio_to_python_passthrough", ".1%"),
           ("x row UDF", "x_row_udf", ",.1f"),
           ("acc 1st pass", "acc_first_epoch", ".3f"), ("acc last 1797", "acc_last_epoch", ".3f"),
           ("startup s", "startup_s", ".0f"), ("job ports", "job_ports", ""),
           ("not loopback", "job_ports_not_loopback", "")]


def report(rows, targets, notes=()) -> str:
    return common.report("training throughput (Kafka -> Flink at parallelism 1 -> Kafka; python: "
                         "no Flink, no Kafka)", COLUMNS, rows, targets, notes)


def run_private(p: Params, smoke: bool = False, quiet: bool = False,
                jars: str | None = None) -> dict:
    """:func:`run` on a private stack instance (Redis, Kafka, Flink of its own, stopped and
    removed at the end): the stack on the default ports, which others use, is not touched."""
    from online_ml.harness.instance import Instance

    with Instance(jars=Path(jars) if jars else None) as inst:
        common.progress(f"throughput: private stack instance in {inst.env['ONLINE_ML_STATE']}")
        inst.up("redis", "kafka", "flink")
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(inst.env)  # Settings.from_env, `flink run` and the socket listing
        try:
            return run(p, smoke, quiet)
        finally:
            os.environ.clear()
            os.environ.update(saved)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--private", action="store_true",
                        help="on a private stack instance (default: the running stack, as "
                             "bench/run.py does)")
    parser.add_argument("--variants", nargs="+", choices=Params.all_variants,
                        help="variants to run (default: all)")
    parser.add_argument("--records", type=int, help="records preloaded into the source topic")
    parser.add_argument("--seconds", type=float, help="seconds of sink output per Flink variant")
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="BATCH_SIZE values")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (the numbers mean nothing)")
    parser.add_argument("--markdown", action="store_true", help="also print Markdown tables")
    parser.add_argument("--jars", help="jars fetched by `make install` (private instance)")
    parser.add_argument("--repeat", type=int, metavar="N",
                        help="N runs of row and row-thread only (a fresh instance each with "
                             "--private, the order alternating): a table of the runs, the median "
                             "ratio")
    args = parser.parse_args(argv)
    p = Params.smoke() if args.smoke else Params()
    for name in ("variants", "records", "seconds", "batch_sizes"):
        if getattr(args, name) is not None:
            setattr(p, name, tuple(getattr(args, name)) if name in ("variants", "batch_sizes")
                    else getattr(args, name))
    if args.repeat:
        p.variants = ("row", "row-thread")
        result = repeated(p, args.repeat, args.private, args.smoke,
                          run_private if args.private else run)
        columns = REPEAT_COLUMNS
    else:
        result = (run_private(p, args.smoke, jars=args.jars) if args.private
                  else run(p, args.smoke))
        columns = COLUMNS
    if args.markdown:
        print(common.markdown_table(columns, result["rows"]))
        print()
        print(common.markdown_targets(result["targets"]))
    return 0


if __name__ == "__main__":
    import logging
    import sys

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)
    sys.exit(main())
