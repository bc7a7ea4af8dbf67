"""Freshness: from a labelled record entering Kafka to the first /predict answered by a model that
learned it.

For each backup interval a complete pipeline of its own runs: its topics, the producer streaming
10 records/s (the demo's rate) so the job is training all along, the training job (stream.py) with
``BACKUP_INTERVAL_SECONDS`` set, and the project's server under waitress. All pipelines are set up
first (their start-up overlaps), then the trials run one after another.

A trial sends a feedback record (``"source": "feedback"`` and a fresh ``"id"``, as the drawing
board's feedback does) and notes the time; it then POSTs a board drawing to /predict every
``poll`` seconds until the answer's ``model_version`` is a version whose metadata lists the id in
``recent_feedback_ids`` (online_ml/trainer.py). Also reported, from the same trial: when the job
had trained on it (the Kafka timestamp of its prediction in the sink topic) and when the first
model containing it was saved (``saved_at`` in that version's metadata). Trials start at a random
moment within the backup interval, so they sample the whole backup cycle.
"""
from __future__ import annotations

import http.client
import json
import random
import statistics
import subprocess
import time
import uuid
from dataclasses import dataclass

import common

from online_ml.config import Settings
from online_ml.harness.drawings import drawings
from online_ml.harness.flink import FlinkJobs
from online_ml.harness.http_load import connect, post
from online_ml.harness.kafka import TopicReader, Topics, producer_command
from online_ml.harness.processes import Server, stop_process
from online_ml.harness.waiting import GiveUp, wait_for


@dataclass
class Params:
    intervals: tuple[float, ...] = (10.0, 1.0)
    trials: int = 5
    mode: str | None = None  # UDF_MODE of the jobs; None: the project's default
    producer_rate: float = 10.0  # background stream, the demo's rate
    poll: float = 0.05  # seconds between /predict calls while waiting
    random_phase: bool = True
    startup_timeout: float = 300.0
    seed: int = 11

    @classmethod
    def smoke(cls) -> Params:
        return cls(trials=2, random_phase=False)


class Pipeline:
    """Topics, background producer, training job and server for one backup interval."""

    def __init__(self, interval: float, p: Params, settings: Settings, topics: Topics,
                 flink: FlinkJobs, rid: str):
        tag = f"bench_{rid}_fresh{str(interval).replace('.', 'p')}"
        self.interval = interval
        self.settings = settings
        self.key = tag
        self.source = topics.create(f"{tag}_source")
        self.sink = topics.create(f"{tag}_sink")
        self.env = {
            "SOURCE_TOPIC": self.source, "SINK_TOPIC": self.sink,
            "DEAD_LETTER_TOPIC": topics.create(f"{tag}_dead_letter"),
            "ALERT_TOPIC": topics.create(f"{tag}_alerts"),
            "KAFKA_GROUP_ID": topics.group(f"{tag}_group"), "MODEL_KEY": self.key,
            "JOB_NAME": f"bench {tag}",  # never taken for the demo's job by the job watcher
            "REDIS_DB": str(common.BENCH_REDIS_DB), "BACKUP_INTERVAL_SECONDS": f"{interval:g}",
        }
        if p.mode:
            self.env["UDF_MODE"] = p.mode
        self.p = p
        self.flink = flink
        self.producer: subprocess.Popen | None = None
        self.job: str | None = None
        self.server: Server | None = None

    def start(self) -> None:
        p, settings, interval = self.p, self.settings, self.interval
        self.producer = subprocess.Popen(
            producer_command(settings, self.source, rate=p.producer_rate),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        common.progress(f"freshness: submitting the job with a {interval:g} s backup")
        self.job = self.flink.submit("stream.py", self.env)
        self.server = Server(call="online_ml.server:create_app", env=self.env,
                             name=f"fresh-server-{interval:g}", log_dir=common.RESULTS)

    def close(self) -> None:
        """Stop the producer and the server (the job: ``FlinkJobs.cancel_submitted``)."""
        if self.producer is not None:
            stop_process(self.producer, grace=15)
        if self.server is not None:
            self.server.__exit__(None, None, None)


def _predict_version(conn_box: list, url: str, body: bytes) -> int | None:
    if not conn_box:
        conn_box.append(connect(url, timeout=10))
    try:
        status, data = post(conn_box[0], body)
    except (OSError, http.client.HTTPException):
        conn_box.pop().close()
        return None
    return json.loads(data).get("model_version") if status == 200 else None


def trial(pl: Pipeline, p: Params, producer, store, body: bytes, rng: random.Random) -> dict:
    from online_ml.producer import iter_records
    from online_ml.schema import encode_record

    if p.random_phase:
        time.sleep(rng.uniform(0, pl.interval))  # a random point of the backup cycle
    fid = f"bench-{uuid.uuid4().hex[:12]}"
    x, y = next(iter_records(seed=rng.randrange(2**31), epochs=1))
    value = encode_record(x, y, source="feedback", id=fid)
    reader = TopicReader(pl.settings, pl.sink)
    sink_from = reader.end_offset()
    t0 = time.time()
    producer.send(pl.source, value=value)
    producer.flush()
    includes: dict[int, bool] = {}
    conn: list = []
    deadline = time.monotonic() + pl.interval * 3 + 60
    served_at = version = None
    while time.monotonic() < deadline:
        v = _predict_version(conn, pl.server.url, body)
        if v is not None:
            if v not in includes:
                meta = store.load_meta(v) or store.load_meta() or {}
                includes[v] = fid in (meta.get("recent_feedback_ids") or [])
            if includes[v]:
                served_at, version = time.time(), v
                break
        time.sleep(p.poll)
    if conn:
        conn[0].close()
    if served_at is None:
        reader.close()
        raise TimeoutError(f"no /predict answered by a model with feedback {fid} within "
                           f"{pl.interval * 3 + 60:.0f} s (interval {pl.interval:g} s)")
    # the first version with the record, and when it was saved
    first_version, saved_at = version, None
    v = version
    while v >= 1:
        meta = store.load_meta(v)
        if not meta or fid not in (meta.get("recent_feedback_ids") or []):
            break
        first_version, saved_at = v, meta.get("saved_at")
        v -= 1
    # when the job trained on it: its prediction's timestamp in the sink
    trained_at = None
    end = reader.end_offset()
    for rec in reader.read(sink_from, end - sink_from):
        if fid.encode() in rec.value:
            trained_at = rec.timestamp / 1000
            break
    reader.close()
    return {
        "id": fid,
        "served_s": round(served_at - t0, 3),
        "saved_s": round(saved_at - t0, 3) if saved_at else None,
        "trained_s": round(trained_at - t0, 3) if trained_at else None,
        "served_version": version,
        "first_version_with_it": first_version,
    }


def run(p: Params, smoke: bool = False, quiet: bool = False) -> dict:
    from kafka import KafkaProducer

    from online_ml.model_store import ModelStore

    started = time.time()
    settings = Settings.from_env()
    machine = common.machine_info(settings)
    rid = uuid.uuid4().hex[:8]
    rng = random.Random(p.seed)
    body = drawings(1, p.seed)[0][1]
    flink = FlinkJobs(settings.flink_rest_url)
    pipelines: list[Pipeline] = []
    rows: list[dict] = []
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all",
                             linger_ms=0)
    with Topics(settings) as topics:
        try:
            for interval in p.intervals:
                pipelines.append(Pipeline(interval, p, settings, topics, flink, rid))
                pipelines[-1].start()
            for pl in pipelines:
                store = ModelStore(settings.redis_client(db=common.BENCH_REDIS_DB), pl.key)

                def ready(pl=pl, store=store):
                    state = flink.state(pl.job)
                    if state in ("FAILED", "CANCELED", "FINISHED"):
                        raise GiveUp(f"job is {state}: {flink.failure_if_any(pl.job)}")
                    return store.load_meta() is not None

                wait_for(ready, p.startup_timeout,
                         f"the first model of the {pl.interval:g} s job", interval=0.5)
                pl.server.wait_ready()
                trials = []
                for i in range(p.trials):
                    common.progress(f"freshness: {pl.interval:g} s backup, trial {i + 1}/{p.trials}")
                    trials.append(trial(pl, p, producer, store, body, rng))
                served = [t["served_s"] for t in trials]
                saved = [t["saved_s"] for t in trials if t["saved_s"] is not None]
                trained = [t["trained_s"] for t in trials if t["trained_s"] is not None]
                rows.append({
                    "backup_interval_s": pl.interval,
                    "trials": len(trials),
                    "median_s": round(statistics.median(served), 3),
                    "max_s": round(max(served), 3),
                    "min_s": round(min(served), 3),
                    "median_trained_s": round(statistics.median(trained), 3) if trained else None,
                    "median_saved_s": round(statistics.median(saved), 3) if saved else None,
                    "udf_mode": pl.env.get("UDF_MODE") or settings.udf_mode,
                    "job_restarts": flink.restarts_if_known(pl.job),
                    "trial_details": trials,
                })
        finally:
            producer.close(timeout=5)
            for pl in pipelines:
                pl.close()
            flink.cancel_submitted()
            common.delete_model_keys(settings, [pl.key for pl in pipelines])

    targets = [common.target(f"freshness max at {r['backup_interval_s']:g} s backup (s)", r["max_s"],
                      r["backup_interval_s"] + 1, "<=", f"median {r['median_s']:.2f} s")
               for r in rows]
    params = dict(vars(p), server_version_check_s=0.5)
    path = common.write_result("freshness", params, rows, targets, machine, started, smoke)
    return common.finish(path, rows, targets, report(rows, targets), smoke, quiet)


COLUMNS = [("backup interval s", "backup_interval_s", "g"), ("trials", "trials", "d"),
           ("median s", "median_s", ".2f"), ("max s", "max_s", ".2f"), ("min s", "min_s", ".2f"),
           ("in sink (median) s", "median_trained_s", ".2f"),
           ("in Redis (median) s", "median_saved_s", ".2f"), ("UDF", "udf_mode", ""),
           ("job restarts", "job_restarts", "")]


def report(rows, targets) -> str:
    return common.report("freshness: feedback record into Kafka -> first /predict by a model "
                         "that learned it", COLUMNS, rows, targets)
