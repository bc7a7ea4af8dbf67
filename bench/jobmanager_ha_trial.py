"""One trial of bench/jobmanager_ha.py: a fresh Flink cluster on the private instance, the training
job under a paced producer, ``kill -9`` of the JobManager JVM, and what came back when; then,
when asked, a cancelled job and a FAILED job on the same cluster.

Why apart: the benchmark's comparison and verdicts are pure arithmetic on these rows; the trial is
the part that drives processes, and each stays readable on its own.
"""
from __future__ import annotations

import os
import re
import time
from typing import Any

import common

from online_ml import training_state
from online_ml.config import Settings
from online_ml.flink_rest import TERMINAL, FlinkRest
from online_ml.harness.flink import FlinkJobs
from online_ml.harness.instance import Instance
from online_ml.harness.kafka import Topics
from online_ml.harness.streams import PacedProducer, SinkTally, StoreTrail
from online_ml.harness.waiting import GiveUp, wait_for
from online_ml.model_store import ModelStore

WATCH_INTERVAL = 2.0  # WATCH_INTERVAL_SECONDS of the watcher variant (the stack's default)


def running_job(flink: FlinkRest, name: str, not_id: str | None = None) -> str | None:
    """A job of that name with every task RUNNING (not ``not_id``), or None."""
    for job in flink.jobs_named(name):
        if job["state"] not in TERMINAL and job["jid"] != not_id and flink.fully_running(job["jid"]):
            return job["jid"]
    return None


def active_jobs(flink: FlinkRest, name: str) -> list[str]:
    return [j["jid"] for j in flink.jobs_named(name) if j["state"] not in TERMINAL]


def cancel_named(flink: FlinkRest, name: str) -> None:
    """Cancel every job of that name (resubmitted and recovered ones too); never raises."""
    try:
        for jid in active_jobs(flink, name):
            flink.cancel(jid)
        flink.wait_stopped([j["jid"] for j in flink.jobs_named(name)], timeout=60)
    except Exception as exc:
        common.log.warning("could not cancel the jobs named %r: %s", name, exc)


def rest_back(flink: FlinkRest) -> dict | None:
    return FlinkRest(flink.base, timeout=2).overview()


def moving_parts(inst: Instance) -> dict:
    """The instance's running services, their listening ports and memory, and its folders."""
    services = inst.running()
    dirs = [d for d in ("flink/ha", "zookeeper/data") if any((inst.root / d).glob("*"))]
    return {"services": services, "ports": {s: inst.listening_ports(s) for s in services},
            "rss_mb": {s: inst.rss_mb(s) for s in services}, "dirs": dirs}


def session_timeout_ms(variant: str, default: int | None) -> int | None:
    """Flink's ZooKeeper session timeout for a variant: ``zookeeper-10s`` asks for 10 s,
    ``zookeeper`` for ``default`` (None: Flink's own, 60 s, which ZooKeeper caps at 20 ticks).

    >>> session_timeout_ms("zookeeper-10s", None), session_timeout_ms("zookeeper", 5000)
    (10000, 5000)
    """
    m = re.fullmatch(r"zookeeper-(\d+)s", variant)
    return int(m.group(1)) * 1000 if m else default


def job_environment(inst: Instance, variant: str, topics: Topics, tag: str, key: str,
                    default_timeout: int | None) -> dict:
    env = dict(inst.env, JOB_NAME=f"bench {tag}", UDF_MODE="row", PYTHONUNBUFFERED="1",
               SOURCE_TOPIC=topics.create(f"{tag}_source"), SINK_TOPIC=topics.create(f"{tag}_sink"),
               DEAD_LETTER_TOPIC=topics.create(f"{tag}_dead"),
               ALERT_TOPIC=topics.create(f"{tag}_alerts"),
               KAFKA_GROUP_ID=topics.group(f"{tag}_group"), MODEL_KEY=key,
               REDIS_DB=str(common.BENCH_REDIS_DB), BACKUP_INTERVAL_SECONDS="10",
               WATCH_INTERVAL_SECONDS=f"{WATCH_INTERVAL:g}")
    if variant.startswith("zookeeper"):
        env["FLINK_HA_ZOOKEEPER_QUORUM"] = f"127.0.0.1:{inst.port('ZOOKEEPER_PORT')}"
        env["FLINK_HA_CLUSTER_ID"] = f"/{tag}"
        timeout = session_timeout_ms(variant, default_timeout)
        if timeout:
            env["FLINK_HA_ZOOKEEPER_SESSION_TIMEOUT"] = str(timeout)
    return env


def crash_trial(inst: Instance, variant: str, n: int, p: Any, extras: bool) -> tuple[dict, dict]:
    """One kill -9 of the JobManager under the running job: the row, and what else was found
    (the moving parts, the machine, the extras)."""
    rid = common.run_id()
    tag = f"bench_{rid}_jmha_{variant.replace('-', '_')}"
    row: dict[str, Any] = {"variant": variant, "trial": n}
    found: dict[str, Any] = {}
    settings = inst.settings(redis_db=common.BENCH_REDIS_DB, model_key=tag)
    with Topics(settings) as topics:
        env = job_environment(inst, variant, topics, tag, tag, p.session_timeout_ms)
        try:
            common.progress(f"{variant}: starting a Flink cluster")
            inst.up("flink", env=env)  # the watcher it starts watches this trial's job
            if variant != "watcher":
                inst.down("watcher")
            found["machine"] = common.machine_info(settings)
            with FlinkJobs(settings.flink_rest_url) as flink:
                try:
                    measure(inst, flink, env, settings, row, found, p)
                    if extras:
                        found["extras"] = extra_checks(inst, flink, env, p, variant)
                finally:
                    cancel_named(flink, env["JOB_NAME"])
        except Exception as exc:  # one failed trial is reported, the others still run
            row["error"] = f"{exc.__class__.__name__}: {str(exc)[:600]}"
            common.progress(f"{variant}: trial {n} failed: {row['error']}")
        finally:
            try:
                inst.down("flink")
            except Exception as exc:
                common.progress(f"stack/down.sh flink failed: {exc}")
            common.delete_model_keys(settings, [tag])
    return row, found


def measure(inst: Instance, flink: FlinkJobs, env: dict, settings, row: dict, found: dict,
            p: Any) -> None:
    name = env["JOB_NAME"]
    store = ModelStore(settings.redis_client(), settings.model_key)
    bootstrap = settings.kafka_bootstrap_servers
    with PacedProducer(bootstrap, env["SOURCE_TOPIC"], rate=p.rate) as producer, \
            SinkTally(bootstrap, env["SINK_TOPIC"]) as sink, StoreTrail(store) as trail:
        common.progress("submitting the training job")
        first = flink.submit("stream.py", env)
        wait_for(lambda: flink.fully_running(first), 300, "the job to be RUNNING")
        wait_for(lambda: sink.total() >= 50, 120, "the first 50 predictions")
        wait_for(lambda: trail.latest()[0] >= 1, 60, "a first model backup")
        checkpoints = flink.completed_checkpoints(first)
        wait_for(lambda: flink.completed_checkpoints(first) > checkpoints, 60, "a checkpoint")
        if row["variant"] == "watcher":
            wait_for(lambda: (training_state.read(store) or {}).get("watched_job") == first, 60,
                     "the watcher to see the job running")
        found["parts"] = moving_parts(inst)
        samples_at_kill = trail.latest()[1]

        old = inst.kill("flink-jobmanager")
        killed = time.monotonic()
        if row["variant"] == "watcher":
            flink.submitted.remove(first)  # gone with the JobManager (cancel_named does the rest)
        common.progress(f"killed the JobManager (pid {old}); waiting for the job")
        wait_for(lambda: rest_back(flink), 300, "the REST API to answer again", interval=0.25)
        row["rest_back_s"] = time.monotonic() - killed
        jid = wait_for(lambda: running_job(flink, name), 300, "the job to be RUNNING again",
                       interval=0.25)
        row["running_s"] = time.monotonic() - killed
        row["after_jm_s"] = row["running_s"] - row["rest_back_s"]
        row["same_job"] = jid == first
        row["load"] = os.getloadavg()[0]

        acked_then = len(producer.acknowledged())
        wait_for(lambda: len(producer.acknowledged()) >= acked_then + 100, 120,
                 "the producer to go on")
        producer.stop()
        acked = producer.acknowledged()
        try:
            wait_for(lambda: acked <= sink.ids(), 180, "a prediction for every acknowledged record")
        except TimeoutError:
            pass  # counted below
        wait_for(lambda: trail.latest()[1] > samples_at_kill, 60, "a backup of the model learning on")
        resumed = sink.resumed_after(killed)
        row["predictions_s"] = None if resumed is None else resumed - killed
        row.update(acked=len(acked), lost=len(acked - sink.ids()), duplicates=sink.duplicates(),
                   backwards=len(trail.backwards()), failures=len(producer.failures),
                   versions=f"{trail.trail[0][0]}->{trail.latest()[0]}" if trail.trail else "")
        common.progress(f"back: REST {row['rest_back_s']:.1f} s, RUNNING {row['running_s']:.1f} s, "
                        f"predictions {common.fmt(row['predictions_s'])} s, lost {row['lost']}")


def extra_checks(inst: Instance, flink: FlinkJobs, env: dict, p: Any, variant: str) -> dict:
    """A cancelled job and a FAILED job: which of them comes back."""
    name = env["JOB_NAME"]
    out: dict[str, Any] = {}
    try:
        jid = running_job(flink, name)
        if jid is None:
            raise RuntimeError("no running job to cancel")
        flink.cancel_and_wait(jid)
        time.sleep(3 * WATCH_INTERVAL)  # the watcher looks (and must see it cancelled)
        inst.kill("flink-jobmanager")
        killed = time.monotonic()
        wait_for(lambda: rest_back(flink), 300, "the REST API to answer again")
        out["cancel_rest_back_s"] = time.monotonic() - killed
        came_back = None
        deadline = time.monotonic() + p.observe
        while time.monotonic() < deadline and not came_back:
            came_back = active_jobs(flink, name)
            time.sleep(1)
        out["cancelled_stayed"] = not came_back
        cancel_named(flink, name)

        failing = flink.submit("stream.py", env, flink_options=["-D", "restart-strategy.type=none"])
        wait_for(lambda: flink.fully_running(failing), 300, "the job to fail to be RUNNING")
        if variant == "watcher":
            store = ModelStore(Settings.from_env(env).redis_client(), env["MODEL_KEY"])
            wait_for(lambda: (training_state.read(store) or {}).get("watched_job") == failing, 60,
                     "the watcher to see the job running")
        inst.kill("flink-taskmanager")

        def failed() -> bool:
            state = flink.state(failing)
            if state in TERMINAL and state != "FAILED":
                raise GiveUp(f"the job ended {state}, not FAILED")
            return state == "FAILED"

        wait_for(failed, 120, "the job to end FAILED")
        flink.submitted.remove(failing)  # nothing to cancel any more
        failed_at = time.monotonic()
        back = None
        try:
            back = wait_for(lambda: running_job(flink, name, not_id=failing), p.observe,
                            "a job of that name to run again")
        except TimeoutError:
            pass
        out["failed_back_s"] = time.monotonic() - failed_at if back else None
        common.progress(f"{variant}: cancelled job stayed cancelled: {out['cancelled_stayed']}; "
                        f"FAILED job back after {common.fmt(out['failed_back_s'])} s")
    except Exception as exc:
        out["error"] = f"{exc.__class__.__name__}: {str(exc)[:300]}"
        common.progress(f"{variant}: extra checks failed: {out['error']}")
    return out

