"""Scale-out: N learners merged into one served model, end to end through Kafka, Flink and Redis.

One source topic with ``partitions`` (4) partitions is preloaded by the project's producer with
three passes over sklearn's digits (3 x 1797 = 5,391 records, reshuffled each pass; the producer
spreads them randomly over the partitions). Each variant is then the training job (stream.py),
submitted with ``flink run`` as a user does, with ``PARALLELISM=N``, ``UDF_MODE=row|batch``,
``SYNC=merge|off``, its own ``MODEL_KEY``, consumer group and sink / dead-letter / alert topics,
reading the source from the earliest offset. The variants run one after another in one run, so
their ratios hold on a busy machine:

- parallelism 1, 2 and 4 in row and in batch mode on one TaskManager;
- parallelism 2 and 4 in row mode on two TaskManagers (``TASKMANAGERS=2 stack/up.sh flink``
  starts the second one before those variants; it is stopped again afterwards if this run
  started it);
- "N=4 independent, no sync" (``SYNC=off``): four learners that never merge and each back their
  own model up to the same key, the baseline that shows what the sync is for.

Per variant (sink records ordered by their Kafka timestamps, set when the job's Kafka writer sent
them):

- records/s: first .. last sink record (the job's start-up is not counted); steady: 10 % .. 90 %;
- prequential accuracy per pass: ``predict_y`` vs ``actual_y`` of the sink records of pass k
  (each record predicted before it was learned); the preload gives each record its place in the
  producer's sequence as its id (``kafka_producer.py --ids``), which the sink carries
  (``scaleout_readings.pass_accuracies``);
- the served model: the job runs on until the served model has seen every record (or a
  deadline), then it is cancelled (its learners hand over what they learned and the last one
  publishes) and, once ``samples_seen`` stops changing, ``ModelStore.load()`` is scored on all
  of digits; ``samples_seen`` / records shows what was lost (~1/N without the sync);
- merges: the served ``sync_round`` at the end; merges/s: the sync round when the sink had every
  record, over the records' span;
- Redis commands/s: ``INFO stats`` ``total_commands_processed`` when the first and when the last
  sink record had arrived, over that time (every client of the Redis server counts);
- record -> served: once the job is through the preloaded records (before, a new record waits
  behind them), one probe record with an id (as the board's feedback sends it) goes into the
  source; from then to the ``saved_at`` of the first served version whose
  ``recent_feedback_ids`` lists it. One sample per variant, at a random phase of the backup
  interval (bench/freshness.py measures the distribution at parallelism 1). The probes stay in
  the source topic, so each variant also learns those of the variants before it (they are left
  out of the accuracy and the record counts).

Measured from the sink's Kafka timestamps instead (each record's prediction to the first version
whose ``samples_seen`` covers its position), the delay came out negative by seconds on a loaded
machine: a prediction reaches the sink well after the record was learned (the Python worker's
outputs leave at the end of its bundle), so that way was dropped.
"""
from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import common
from scaleout_readings import (
    RECORD_IDS,
    pass_accuracies,
    redis_commands,
    send_probe,
    served_accuracy,
    settled_meta,
    sink_records,
    spreads_slots,
    start_taskmanagers,
    stop_taskmanagers,
    sync_round,
    taskmanagers_used,
)

from online_ml.config import Settings
from online_ml.harness.flink import FlinkJobs
from online_ml.harness.kafka import TopicReader, Topics, preload
from online_ml.harness.verdicts import if_row_bound
from online_ml.harness.waiting import GiveUp, WaitTimeout, wait_for
from online_ml.model_store import ModelStore

DEFAULT_VARIANTS = ("row-1", "row-2", "row-4", "batch-1", "batch-2", "batch-4", "row-4-off",
                    "row-2-2tm", "row-4-2tm")


@dataclass(frozen=True)
class Variant:
    """One job: ``<row|batch>-<N>[-off][-<k>tm]``, e.g. ``row-4``, ``row-4-off``, ``batch-2-2tm``."""

    spec: str
    mode: str
    n: int
    taskmanagers: int = 1
    sync: str = "merge"

    @classmethod
    def parse(cls, spec: str) -> Variant:
        m = re.fullmatch(r"(row|batch)-([1-9][0-9]*)(-off)?(?:-([1-9])tm)?", spec)
        if not m:
            raise ValueError(f"scaleout variant {spec!r}: want <row|batch>-<N>[-off][-<k>tm], "
                             f"e.g. row-4, row-4-off, batch-2-2tm")
        return cls(spec, m.group(1), int(m.group(2)), int(m.group(4) or 1),
                   "off" if m.group(3) else "merge")

    @property
    def name(self) -> str:
        extra = [f"{self.taskmanagers} TMs"] if self.taskmanagers > 1 else []
        extra += ["no sync"] if self.sync == "off" else []
        return f"{self.mode} N={self.n}" + (f" ({', '.join(extra)})" if extra else "")

    @property
    def slug(self) -> str:
        return self.spec.replace("-", "_")


@dataclass
class Params:
    passes: int = 3  # over digits, preloaded into the source topic
    records: int = 0  # 0: passes x 1797
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    partitions: int = 4  # of the source topic (>= the largest N)
    backup_interval: float = 10.0  # BACKUP_INTERVAL_SECONDS: the project's default
    seed: int = 42
    slots_timeout: float = 300.0  # for free task slots (other jobs may hold them)
    first_record_timeout: float = 300.0
    process_timeout: float = 900.0  # for every record in the sink
    settle_quiet: float = 5.0  # samples_seen unchanged this long: the final model is published
    settle_timeout: float = 90.0
    idle_seconds: float = 5.0  # Redis commands/s of the other clients, before the first variant
    # all jobs submitted at once (`flink run` in parallel), then measured one by one: only for
    # the smoke run (the jobs compete for the cores, so the numbers mean nothing), whose time is
    # the jobs' start-up
    concurrent: bool = False
    notes: list = field(default_factory=list)

    @classmethod
    def smoke(cls) -> Params:
        return cls(records=300, variants=("row-1", "row-2"), backup_interval=2.0, idle_seconds=1.0,
                   settle_quiet=3.0, concurrent=True)

    @property
    def total(self) -> int:
        return self.records or self.passes * common.EPOCH


# -- one variant ----------------------------------------------------------------------------------
_SETUP = threading.Lock()


@dataclass
class Running:
    """A submitted variant: its job, its store and sink, and the readings taken at submit."""

    v: Variant
    job: str
    store: ModelStore
    reader: TopicReader
    sink: str
    t_submit: float
    cmds_submit: int
    submit_s: float


def start_variant(v: Variant, p: Params, settings: Settings, flink: FlinkJobs, topics: Topics,
                  redis, source: str, rid: str, keys: list[str], slots: int | None = None) -> Running:
    """Create the variant's topics and submit its job (``flink run``, PARALLELISM=N, ...)."""
    tag = f"bench_{rid}_{v.slug}"
    with _SETUP:  # the smoke run starts its variants from threads
        keys.append(tag)
        sink = topics.create(f"{tag}_sink")
        env = {"SOURCE_TOPIC": source, "SINK_TOPIC": sink,
               "DEAD_LETTER_TOPIC": topics.create(f"{tag}_dead_letter"),
               "ALERT_TOPIC": topics.create(f"{tag}_alerts"),
               "KAFKA_GROUP_ID": topics.group(f"{tag}_group"), "MODEL_KEY": tag,
               "REDIS_DB": str(common.BENCH_REDIS_DB),
               "BACKUP_INTERVAL_SECONDS": f"{p.backup_interval:g}",
               "PARALLELISM": str(v.n), "UDF_MODE": v.mode, "SYNC": v.sync,
               "JOB_NAME": f"bench scaleout {v.name}"}
    slots = slots or v.n
    wait_for(lambda: flink.ready(v.taskmanagers, free_slots=slots), p.slots_timeout,
             f"{slots} free task slots on {v.taskmanagers} TaskManager(s)", interval=1)
    reader = TopicReader(settings, sink)
    common.progress(f"scaleout: submitting {v.name}")
    t_submit, cmds_submit = time.time(), redis_commands(redis)
    try:
        job = flink.submit("stream.py", env)
    except BaseException:
        reader.close()
        raise
    return Running(v, job, ModelStore(redis, tag), reader, sink, t_submit, cmds_submit,
                   round(time.time() - t_submit, 1))


def measure_variant(run: Running, p: Params, settings: Settings, flink: FlinkJobs, redis,
                    source: str, probes: list[str]) -> dict:
    """Wait for the variant's records, its served model and a probe record's way to the served
    model, cancel its job and score it. ``probes``: the probe records in the source so far (the
    variants after one read it too)."""
    v, job, store, reader = run.v, run.job, run.store, run.reader
    total = p.total + len(probes)  # records in the source for this job
    row: dict = {"variant": v.name, "spec": v.spec, "mode": v.mode, "parallelism": v.n,
                 "taskmanagers": v.taskmanagers, "sync": v.sync, "job_id": job,
                 "submit_s": run.submit_s, "record_to_served_s": None}
    try:
        def alive() -> None:
            state = flink.state(job)
            if state in ("FAILED", "CANCELED", "FINISHED"):
                raise GiveUp(f"job {v.name} is {state}: {flink.failure_if_any(job)}")

        def started() -> bool:
            alive()
            return reader.end_offset() > 0

        wait_for(started, p.first_record_timeout, f"the first record of {v.name} in {run.sink}",
                 interval=0.2)
        t_first, cmds_first = time.time(), redis_commands(redis)
        row["taskmanagers_used"] = taskmanagers_used(flink, job)
        try:
            running_at = flink.job(job).get("timestamps", {}).get("RUNNING")
            row["running_after_s"] = round(running_at / 1000 - run.t_submit, 1)
        except Exception:
            pass

        def all_in() -> bool:
            if reader.end_offset() >= total:
                return True
            alive()
            return False

        try:
            wait_for(all_in, p.process_timeout, f"all {total} records of {v.name} in {run.sink}",
                     interval=0.2)
        except WaitTimeout:
            p.notes.append(f"{v.name}: only {reader.end_offset()} of {total} records reached the "
                           f"sink within {p.process_timeout:.0f} s")
        t_all, cmds_all = time.time(), redis_commands(redis)
        row["round_when_all_in"] = sync_round(redis, store)
        count = reader.end_offset()  # the records of the source; the probe comes after them
        # from a record to a served model that includes it: one probe record, once the job is
        # through the backlog (before, a new record waits behind it), to the saved_at of the
        # first served version that lists its id (the job's own publishing, not the cancel's)
        fid, sent = send_probe(settings, source, p.seed + len(probes))
        probes.append(fid)
        try:
            meta = wait_for(lambda: (m := store.load_meta()) and fid in (
                m.get("recent_feedback_ids") or []) and m, 2 * p.backup_interval + 30,
                f"a served model of {v.name} with the probe record")
            row["record_to_served_s"] = round(meta["saved_at"] - sent, 2)
            row["probe_version"] = meta.get("version")
        except WaitTimeout:
            p.notes.append(f"{v.name}: no served version had the probe record within "
                           f"{2 * p.backup_interval + 30:.0f} s")
        if v.sync == "merge":  # every record learned by any learner, before the cancel
            try:
                wait_for(lambda: (store.load_meta() or {}).get("samples_seen", 0) >= count + 1,
                         2 * p.backup_interval + 30, f"a served model of {v.name} with every record")
            except WaitTimeout:
                p.notes.append(f"{v.name}: no served version had seen all {count + 1} records "
                               f"before the job was cancelled")
        row["job_restarts"] = flink.restarts_if_known(job)
        flink.cancel_and_wait(job)
    finally:
        if job in flink.submitted:  # this variant's job, if still running; never raises
            try:
                flink.cancel_and_wait(job)
            except Exception as exc:
                common.log.warning("could not cancel job %s: %s", job, exc)
    final = settled_meta(store, p.settle_quiet, p.settle_timeout) or {}
    t_end, cmds_end = time.time(), redis_commands(redis)

    recs = sink_records(reader, count)
    reader.close()
    row["records"] = len(recs)
    if len(recs) >= 2:
        span = (recs[-1][0] - recs[0][0]) / 1000
        lo, hi = int(len(recs) * 0.1), max(int(len(recs) * 0.9), int(len(recs) * 0.1) + 1)
        hi = min(hi, len(recs) - 1)
        steady = (recs[hi][0] - recs[lo][0]) / 1000
        row.update(seconds=round(span, 3),
                   records_per_s=round((len(recs) - 1) / span, 1) if span > 0 else None,
                   steady_records_per_s=round((hi - lo) / steady, 1) if steady > 0 else None)
    row["startup_s"] = round(recs[0][0] / 1000 - run.t_submit, 1) if recs else None
    passes = pass_accuracies(recs)
    row["acc_passes"] = passes
    for k, acc in enumerate(passes[:3], 1):
        row[f"acc_pass{k}"] = acc
    row["acc_last_pass"] = passes[-1] if passes else None
    # the served model
    row["served_version"] = final.get("version")
    row["samples_seen"] = final.get("samples_seen")
    row["seen_ratio"] = (round(final["samples_seen"] / (count + 1), 3)  # + the probe
                         if final.get("samples_seen") is not None and count else None)
    row["served_learners"] = final.get("learners")
    row["served_contributors"] = final.get("contributors")
    row["served_accuracy"] = served_accuracy(store)
    row["merges"] = final.get("sync_round")
    span = row.get("seconds")
    row["merges_per_s"] = (round(row["round_when_all_in"] / span, 2)
                           if v.sync == "merge" and span else None)
    window = t_all - t_first
    row["redis_commands_per_s"] = round((cmds_all - cmds_first) / window, 1) if window > 0 else None
    row["redis_commands_variant"] = cmds_end - run.cmds_submit
    row["redis_commands_per_s_variant"] = round((cmds_end - run.cmds_submit)
                                                / (t_end - run.t_submit), 1)
    if row.get("job_restarts"):
        p.notes.append(f"{v.name}: the job restarted {row['job_restarts']} time(s)")
    if row.get("taskmanagers_used") not in (None, v.taskmanagers) and v.n >= v.taskmanagers:
        p.notes.append(f"{v.name}: its subtasks ran on {row['taskmanagers_used']} TaskManager(s), "
                       f"not {v.taskmanagers}")
    return row


# -- the benchmark --------------------------------------------------------------------------------
def run(p: Params, smoke: bool = False, quiet: bool = False) -> dict:
    started = time.time()
    settings = Settings.from_env()
    machine = common.machine_info(settings)
    rid = common.run_id()
    variants = sorted((Variant.parse(s) for s in p.variants), key=lambda v: v.taskmanagers)
    if max(v.n for v in variants) > p.partitions:
        raise ValueError(f"a variant runs more learners than the source topic has partitions "
                         f"({p.partitions}): some would idle")
    flink = FlinkJobs(settings.flink_rest_url)
    redis = settings.redis_client(db=common.BENCH_REDIS_DB)
    keys: list[str] = []
    rows: list[dict] = []
    we_started: list[str] = []
    tms_before = flink.overview().get("taskmanagers")
    running_tms = 1
    with Topics(settings) as topics:
        try:
            source = topics.create(f"bench_{rid}_source", partitions=p.partitions)
            common.progress(f"scaleout: preloading {p.total:,} records into {source} "
                            f"({p.partitions} partitions)")
            loaded = preload(settings, source, p.total, p.seed, ids=RECORD_IDS)
            c0, t0 = redis_commands(redis), time.monotonic()
            time.sleep(p.idle_seconds)
            idle_rate = round((redis_commands(redis) - c0) / (time.monotonic() - t0), 1)
            probes: list[str] = []
            shared = dict(p=p, settings=settings, flink=flink, topics=topics, redis=redis,
                          source=source, rid=rid, keys=keys)

            def failed(v: Variant, exc: Exception) -> None:  # the others still run
                message = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}"
                rows.append({"variant": v.name, "spec": v.spec, "error": message})
                p.notes.append(f"{v.name} failed: {message}")
                common.progress(f"scaleout: {v.name} failed: {message}")

            if p.concurrent:  # smoke only: every job at once, then measured one by one
                if max(v.taskmanagers for v in variants) > running_tms:
                    we_started += start_taskmanagers(max(v.taskmanagers for v in variants))
                slots = sum(v.n for v in variants)
                started_jobs = []
                with ThreadPoolExecutor(len(variants)) as pool:  # `flink run` takes a minute
                    futures = [(v, pool.submit(start_variant, v, slots=slots, **shared))
                               for v in variants]
                    for v, future in futures:
                        try:
                            started_jobs.append(future.result())
                        except Exception as exc:
                            failed(v, exc)
                for r in started_jobs:
                    try:
                        rows.append(measure_variant(r, p, settings, flink, redis, source, probes))
                    except Exception as exc:
                        failed(r.v, exc)
            for v in variants if not p.concurrent else ():
                try:
                    if v.taskmanagers > running_tms:
                        we_started += start_taskmanagers(v.taskmanagers)
                        running_tms = v.taskmanagers
                        if spreads_slots(flink) is False:
                            p.notes.append(
                                "the running JobManager has no taskmanager.load-balance.mode "
                                "(it started before stack/flink/config.yaml set it): it may put "
                                "all of a job's subtasks on one TaskManager (see the TMs "
                                "column); `make down && make up` starts it with the setting")
                    rows.append(measure_variant(start_variant(v, **shared), p, settings, flink,
                                                redis, source, probes))
                except Exception as exc:
                    failed(v, exc)
        finally:
            flink.cancel_submitted()
            stop_taskmanagers(we_started)
            common.delete_model_keys(settings, keys)
            redis.close()

    by_spec = {r["spec"]: r for r in rows if "error" not in r}
    for r in rows:
        base = by_spec.get(f"{r.get('mode')}-1", {}).get("records_per_s")
        rate = r.get("records_per_s")
        r["x_n1"] = round(rate / base, 2) if rate and base else None

    def points(spec: str, key: str) -> float | None:
        a, b = by_spec.get(spec, {}).get(key), by_spec.get(spec.split("-")[0] + "-1", {}).get(key)
        return round((a - b) * 100, 2) if a is not None and b is not None else None

    def last_pass(spec: str) -> str:
        r = by_spec.get(spec, {})
        return f"pass {len(r.get('acc_passes') or [])}" if r else "did not run"

    targets = [common.target(f"{mode} N=4 {what} - N=1 (points)", points(f"{mode}-4", key), -1.0,
                             ">=", detail)
               for mode in ("row", "batch")
               for what, key, detail in (("served accuracy", "served_accuracy", "on all of digits"),
                                         ("last-pass accuracy", "acc_last_pass",
                                          f"prequential, {last_pass(mode + '-4')}"))]
    row1_rate = by_spec.get("row-1", {}).get("records_per_s")
    targets.append(if_row_bound(
        common.target("row N=2 / N=1 records/s", by_spec.get("row-2", {}).get("x_n1"), 1.7, ">=",
                      "one TaskManager, records/s first..last"),
        common.learn_one_us(settings), 1e6 / row1_rate if row1_rate else None,
        "the row UDF at N=1", "a second learner halves only the learner's share"))
    p.notes.append(f"Redis commands/s count every client of the Redis server (other sessions' "
                   f"tests and servers too): {idle_rate:,.0f}/s before the first variant")
    if any(v.mode == "batch" for v in variants):
        p.notes.append(f"batch mode passes the {p.total:,} records in a second or two: its "
                       f"records/s are coarse (bench/throughput.py measures batch mode on millions)")
    p.notes.append("rec->served: one probe record per variant, sent when the job is through the "
                   "preloaded records, to the saved_at of the first served version listing its "
                   "id: one sample of a random phase of the backup interval "
                   f"({p.backup_interval:g} s; bench/freshness.py has the distribution at N=1); "
                   "without the sync the next learner's backup serves a model without it again")
    if p.concurrent:
        p.notes.append("the jobs ran at the same time (smoke run): their rates are not comparable")
    if tms_before and tms_before > 1:
        p.notes.append(f"{tms_before} TaskManagers were running before this run: the one-TM "
                       f"variants may have been spread over them (see the TMs column)")
    params = {k: v for k, v in vars(p).items() if k != "notes"}
    job_settings = Settings.from_env()
    params.update(records=p.total, preload=loaded, learner=job_settings.learner,
                  learner_params=job_settings.learner_kwargs(),
                  sync_every_records=job_settings.sync_every_records,
                  sync_interval_seconds=job_settings.sync_interval_seconds,
                  batch_size=job_settings.batch_size, taskmanagers_before=tms_before,
                  taskmanagers_started=we_started)
    path = common.write_result("scaleout", params, rows, targets, machine, started, smoke,
                               extra={"notes": p.notes})
    return common.finish(path, rows, targets, report(rows, targets, p.notes), smoke, quiet)


COLUMNS = [("variant", "variant", ""), ("TMs", "taskmanagers_used", ""),
           ("records", "records", ""), ("seconds", "seconds", ".1f"),
           ("rec/s", "records_per_s", ",.0f"), ("steady rec/s", "steady_records_per_s", ",.0f"),
           ("x N=1", "x_n1", ".2f"), ("acc pass 1", "acc_pass1", ".3f"),
           ("acc pass 2", "acc_pass2", ".3f"), ("acc pass 3", "acc_pass3", ".3f"),
           ("served acc", "served_accuracy", ".3f"), ("seen/records", "seen_ratio", ".2f"),
           ("merges", "merges", ""), ("merges/s", "merges_per_s", ".2f"),
           ("redis cmd/s", "redis_commands_per_s", ",.0f"),
           ("rec->served s", "record_to_served_s", ".1f")]


def report(rows, targets, notes=()) -> str:
    title = ("scale-out: N learners, one served model (Kafka, 4 partitions -> Flink at "
             "parallelism N -> Redis)")
    return common.report(title, COLUMNS, rows, targets, notes)
