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

``python bench/throughput.py --private`` runs it all on a private stack instance
(online_ml.harness.instance: state folder and ports of its own), not on the running stack.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import re
import statistics
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import common

from online_ml.config import Settings
from online_ml.harness.flink import FlinkJobs
from online_ml.harness.kafka import TopicReader, Topics, preload
from online_ml.harness.net import is_loopback, listening_sockets
from online_ml.harness.paths import STATE
from online_ml.harness.verdicts import if_row_bound
from online_ml.harness.waiting import GiveUp, wait_for

EPOCH = 1797  # images in sklearn's digits: one pass = every image seen once
ROW_THREAD = "row UDF, thread mode"
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
                                 "batch", "python")
    all_variants = ("passthrough", "python-passthrough", "python-shape", "python-flat", "row",
                    "row-thread", "batch", "python")
    notes: list = field(default_factory=list)

    @classmethod
    def smoke(cls) -> Params:
        return cls(records=400, seconds=3.0, batch_sizes=(1000,), python_seconds=0.0,
                   python_pool=400, preload_procs=1)


def _accuracy(rows) -> float | None:
    rows = [r for r in rows if r is not None]
    if not rows:
        return None
    return round(sum(p == a for p, a in rows) / len(rows), 4)


def _predictions(records) -> list[tuple[int | None, int]]:
    out = []
    for rec in records:
        try:
            doc = json.loads(rec.value)
            out.append((doc.get("predict_y"), doc["actual_y"]))
        except (ValueError, KeyError, TypeError):
            continue
    return out


TASKMANAGER_MAIN = "org.apache.flink.runtime.taskexecutor.TaskManagerRunner"


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process /proc lets us read."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        out[int(stat.parent.name)] = (ppid, cmd)
    return out


def taskmanager_sockets(state: Path) -> list[dict]:
    """The listening sockets of the TaskManagers of the stack instance in ``state`` and of every
    process they started (PyFlink's Python workers), found by command line and parent, so that
    it holds whichever process manager started them."""
    procs = _processes()
    tms = {pid for pid, (_, cmd) in procs.items() if TASKMANAGER_MAIN in cmd and str(state) in cmd}

    def in_tree(pid: int | None) -> bool:
        for _ in range(64):  # up the parent chain
            if pid is None or pid <= 1:
                return False
            if pid in tms:
                return True
            pid = procs.get(pid, (None, ""))[0]
        return False

    return [s for s in listening_sockets() if in_tree(s["pid"])]


def stack_state() -> Path:
    """The state folder of the stack instance the environment names (as stack/env.sh does)."""
    return Path(os.environ.get("ONLINE_ML_STATE") or STATE).resolve()


def added_sockets(before: list[dict], during: list[dict]) -> dict:
    """What a job added to the TaskManager's listening sockets: count, how many not on
    loopback, and ``address:port command`` of each (for the JSON)."""
    old = {(s["address"], s["port"]) for s in before}
    new = [s for s in during if (s["address"], s["port"]) not in old]
    return {"job_ports": len(new),
            "job_ports_not_loopback": sum(not is_loopback(s["address"]) for s in new),
            "job_sockets": [f"{s['address']}:{s['port']} pid {s['pid']} {s['command'][:80]}"
                            for s in new]}


def run_flink_variant(name: str, script: str, env: dict, args: list[str], p: Params,
                      settings: Settings, flink: FlinkJobs, topics: Topics, rid: str,
                      predicts: bool, flink_options: tuple[str, ...] = (),
                      sockets: Callable[[], list[dict]] | None = None) -> dict:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", name.split(" (")[0]).strip("_")
    sink = topics.create(f"bench_{rid}_{slug}_sink")
    env = dict(env, SINK_TOPIC=sink)
    reader = TopicReader(settings, sink)
    sockets = sockets or (lambda: taskmanager_sockets(stack_state()))
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
        k = min(EPOCH, count)
        row["acc_first_epoch"] = _accuracy(_predictions(reader.read(0, k)))
        row["acc_last_epoch"] = _accuracy(_predictions(reader.read(count - k, k)))
    reader.close()
    if restarts:
        p.notes.append(f"{name}: the job restarted {restarts} time(s) during the measurement")
    if row["exhausted_topic"] and span < p.seconds:
        p.notes.append(f"{name} passed the whole topic on in {span:.1f} s (< {p.seconds:g} s): "
                       f"preload more records (--records)")
    return row


def _python_loop(name: str, pool: list, step, p: Params, chunk: int = 1) -> dict:
    """Run ``step(values) -> [(pred, actual)]`` over the pool (cycled) for python_seconds."""
    first: list = []
    last: deque = deque(maxlen=EPOCH)
    n = 0
    started = time.perf_counter()
    deadline = started + p.python_seconds
    for i in itertools.cycle(range(0, len(pool), chunk)):
        results = step(pool[i:i + chunk])
        n += len(results)
        if len(first) < EPOCH:
            first.extend(results[:EPOCH - len(first)])
        last.extend(results)
        if n >= min(len(pool), EPOCH) and time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - started
    return {"variant": name, "kind": "python", "records": n, "seconds": round(elapsed, 3),
            "records_per_s": round(n / elapsed, 1), "acc_first_epoch": _accuracy(first),
            "acc_last_epoch": _accuracy(last)}


def _sink_values(out, sink_topic: str) -> list[str]:
    """The prediction(s) in one process_many output: a JSON string, or (topic, value) pairs."""
    if out is None:
        return []
    if isinstance(out, (str, bytes)):
        return [out]
    return [value for topic, value in out if topic == sink_topic]


def run_python_variants(p: Params, settings: Settings, rid: str, keys: list[str]) -> list[dict]:
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
    return rows


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


def default_kept(ratio: float, how: str) -> str:
    """The default execution mode, from the measured ratio thread / process and what thread mode
    cannot do (README, "Python execution mode")."""
    return ("default kept: process mode -- thread mode " + (
        f"makes the row UDF x{ratio:.2f} as fast ({how}), but " if ratio >= 1.05 else
        f"does not make the row UDF faster (x{ratio:.2f}, {how}), and ")
        + "it runs no pandas UDF (the batch UDF), its UDF metrics do not reach Flink, a cancel "
        "skips the UDF's close(), and PyFlink 2.2.1 on Java 17 runs it in one job per "
        "TaskManager JVM")


def execution_modes(by_name: dict[str, dict]) -> tuple[list[dict], list[str]]:
    """Targets and words on PyFlink's execution modes for the row UDF: what thread mode does to
    the throughput, and which ports each mode's job opens on the TaskManager."""
    proc, thread = by_name.get("row UDF"), by_name.get(ROW_THREAD)
    targets: list[dict] = []
    words: list[str] = []
    if thread is None:  # not asked for: the default run's targets stay as they are
        return targets, words
    if thread.get("error"):
        return targets, [f"execution mode: the row UDF in thread mode did not run: {thread['error']}"]
    exposed = [r for r in by_name.values() if r.get("kind") == "flink"
               and r.get("job_ports_not_loopback")]
    python_jobs = [r for r in by_name.values() if r.get("kind") == "flink"
                   and not r["variant"].startswith("passthrough (")]
    targets.append(common.target(
        "Python UDF jobs: ports opened not on loopback", sum(
            r.get("job_ports_not_loopback", 0) for r in python_jobs) if python_jobs else None, 0,
        "<=", ", ".join(r["variant"] for r in exposed) or "every port the jobs opened is loopback"))
    if thread:
        targets.append(common.target("row UDF, thread mode: ports the job opens",
                                     thread.get("job_ports"), 0, "<=",
                                     "no Python worker, no gRPC endpoints"))
    if proc and thread and proc.get("records_per_s") and thread.get("records_per_s"):
        ratio = thread["records_per_s"] / proc["records_per_s"]
        words.append(
            f"execution mode: the row UDF in thread mode ran at {thread['records_per_s']:,.0f} "
            f"records/s, x{ratio:.2f} process mode's {proc['records_per_s']:,.0f} "
            f"({'faster' if ratio > 1.05 else 'slower' if ratio < 0.95 else 'the same, within 5%'}"
            f"); the job opened {proc.get('job_ports')} port(s) on the TaskManager in process "
            f"mode ({proc.get('job_ports_not_loopback')} not on loopback), "
            f"{thread.get('job_ports')} in thread mode")
        words.append(default_kept(ratio, "this run"))
    return targets, words


COLUMNS = [("variant", "variant", ""), ("records", "records", ""),
           ("seconds", "seconds", ".1f"), ("rec/s", "records_per_s", ",.0f"),
           ("steady rec/s", "steady_records_per_s", ",.0f"),
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


REPEAT_COLUMNS = [("run", "run", ""), ("first", "first", ""),
                  ("process rec/s", "process_rec_s", ",.0f"), ("thread rec/s", "thread_rec_s", ",.0f"),
                  ("thread / process", "ratio", ".2f"), ("ports, process", "process_ports", ""),
                  ("ports, thread", "thread_ports", ""), ("not loopback", "not_loopback", ""),
                  ("load", "load", ".1f")]


def repeated(p: Params, runs: int, private: bool, smoke: bool) -> dict:
    """``runs`` runs of row and row-thread, each on a fresh instance when ``private``, the order
    alternating (drift on a shared machine cancels out); the ratio's median is the verdict."""
    started = time.time()
    out = []
    for i in range(runs):
        pi = dataclasses.replace(p, thread_first=bool(i % 2), notes=[])
        res = run_private(pi, smoke, quiet=True) if private else run(pi, smoke, quiet=True)
        by_name = {r["variant"]: r for r in res["rows"]}
        proc, thread = by_name.get("row UDF", {}), by_name.get(ROW_THREAD, {})
        rates = proc.get("records_per_s"), thread.get("records_per_s")
        out.append({"run": i + 1, "first": "thread" if pi.thread_first else "process",
                    "process_rec_s": rates[0], "thread_rec_s": rates[1],
                    "ratio": round(rates[1] / rates[0], 3) if all(rates) else None,
                    "process_ports": proc.get("job_ports"), "thread_ports": thread.get("job_ports"),
                    "not_loopback": (proc.get("job_ports_not_loopback") or 0)
                    + (thread.get("job_ports_not_loopback") or 0),
                    "load": (common.loadavg() or [None])[0],
                    "error": thread.get("error") or proc.get("error")})
    ratios = sorted(r["ratio"] for r in out if r["ratio"] is not None)
    median = statistics.median(ratios) if ratios else None
    targets = [common.target("row UDF, thread mode: ports the job opens (worst run)",
                             max((r["thread_ports"] for r in out if r["thread_ports"] is not None),
                                 default=None), 0, "<="),
               common.target("Python UDF jobs: ports opened not on loopback",
                             sum(r["not_loopback"] for r in out), 0, "<=")]
    words = [f"{r['run']}: {r['error']}" for r in out if r["error"]]
    if median is not None:
        words.append(
            f"thread mode / process mode, row UDF, median of {len(ratios)} run(s): x{median:.2f} "
            f"(from x{ratios[0]:.2f} to x{ratios[-1]:.2f}); "
            + ("thread mode is faster in every run" if ratios[0] > 1 else
               "thread mode is slower in every run" if ratios[-1] < 1 else
               "neither mode is faster in every run"))
        words.append(default_kept(median, "median"))
    path = common.write_result("throughput_execution_mode", dict(vars(p), runs=runs,
                                                                 private=private),
                               out, targets, common.machine_info(), started, smoke,
                               extra={"verdict": words})
    text = common.report("row UDF: PyFlink process mode vs thread mode (each run on a fresh "
                         "private instance)" if private else "row UDF: process vs thread mode",
                         REPEAT_COLUMNS, out, targets, words)
    return common.finish(path, out, targets, text, smoke, quiet=False)


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
        result = repeated(p, args.repeat, args.private, args.smoke)
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
