"""The JobManager JVM killed with -9 under a running job, with the job watcher watching; and a job
cancelled on purpose that the watcher leaves alone.

A standalone Flink cluster without high availability forgets its jobs when the JobManager dies;
the stack's supervisor restarts the JobManager, and the watcher (``python -m online_ml.watcher``,
started here as a subprocess with this test's settings and a job name of its own, not the
stack's watcher of the demo's job) submits the job again. Asserted as a user would notice it:
the job RUNNING again within 60 s of the JobManager being back, predictions continue, every
acknowledged record is predicted (at-least-once), the model's version never goes backwards,
/healthz showed the outage while it lasted (and kept answering 200), and one training_stopped /
training_resumed pair reached the alert topic.

This kills the JobManager of the stack it runs on: run it against a private stack instance (see
tests/conftest.py), not a cluster other people use. It leaves the stack healthy (``stack/up.sh
flink``). ``pytest -s`` prints the measured times (README "Recovery without loss").
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from online_ml import training_state
from online_ml.config import Settings
from online_ml.flink_rest import TERMINAL, FlinkRest
from online_ml.harness.kafka import consume_json
from online_ml.harness.measurements import record
from online_ml.harness.paths import LOGS, PY, ROOT
from online_ml.harness.stack import service_pid, stack_script
from online_ml.harness.streams import PacedProducer, SinkTally, StoreTrail
from online_ml.harness.waiting import wait_for
from online_ml.model_store import ModelStore
from online_ml.server import create_app

pytestmark = pytest.mark.integration

# Issue 8: "after the JobManager comes back, the job runs again within 60 s" (measured from the
# JobManager's REST API answering again: its own restart is the supervisor's and the JVM's, and
# took 28-49 s alone on this machine under load; README "Recovery without loss"). Measured:
# 23-38 s at load average 12-18 on 2 cores.
RECOVERY_DEADLINE = 60
INTERVAL = 2.0  # WATCH_INTERVAL_SECONDS


# -- helpers -------------------------------------------------------------------------------------
@contextlib.contextmanager
def watcher_process(env: dict, name: str) -> Iterator[subprocess.Popen]:
    """``python -m online_ml.watcher`` as the stack runs it, with this test's settings; stopped
    (its whole process group: a `flink run` it started, too) when the block ends."""
    log_path = LOGS / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([PY, "-u", "-m", "online_ml.watcher"], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


class HealthLog(threading.Thread):
    """Asks /healthz of a server app (Flask test client, this test's model key) twice a second;
    keeps (monotonic time, status code, training) of every answer."""

    def __init__(self, app):
        super().__init__(daemon=True)
        self.client = app.test_client()
        self.answers: list[tuple[float, int, str]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.5):
            response = self.client.get("/healthz")
            body = response.get_json() or {}
            self.answers.append((time.monotonic(), response.status_code, body.get("training", "")))

    def states_between(self, start: float, end: float) -> list[str]:
        return [s for t, _, s in self.answers if start <= t <= end]

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=10)


def active_jobs(flink: FlinkRest, name: str) -> list[dict]:
    return [j for j in flink.jobs_named(name) if j["state"] not in TERMINAL]


def running_job(flink: FlinkRest, name: str, not_id: str | None = None) -> str | None:
    """The id of a job of that name that runs with every task running (not ``not_id``)."""
    for job in active_jobs(flink, name):
        if job["jid"] != not_id and flink.fully_running(job["jid"]):
            return job["jid"]
    return None


def cancel_named(flink: FlinkRest, name: str) -> None:
    """Cancel every job of that name (the watcher's resubmissions too); never raises."""
    try:
        for job in active_jobs(flink, name):
            flink.cancel(job["jid"])
        flink.wait_stopped([j["jid"] for j in flink.jobs_named(name)], timeout=60)
    except Exception as exc:
        print(f"could not cancel the jobs named {name!r}: {exc}")


def training_record(store: ModelStore) -> dict:
    return training_state.read(store) or {}


def jobmanager_pid() -> int:
    pid = service_pid("flink-jobmanager")
    assert pid is not None, (
        "supervisord has no running flink-jobmanager: the JobManager is not supervised "
        "(restart the stack with `make down && make up`)")
    return pid


@pytest.fixture
def watched_env(job_env, redis_client) -> dict:
    return dict(job_env, UDF_MODE="row", WATCH_INTERVAL_SECONDS=str(INTERVAL),
                PYTHONUNBUFFERED="1")


# -- the tests -----------------------------------------------------------------------------------
def test_jobmanager_killed_the_watcher_brings_the_job_back(watched_env, settings, unique_topics,
                                                           redis_client, flink):
    name = watched_env["JOB_NAME"]
    job_settings = Settings.from_env(watched_env)
    store = ModelStore(redis_client, settings.model_key)
    app = create_app({"TESTING": True, "SETTINGS": job_settings, "REDIS_CLIENT": redis_client,
                      "WARM_UP": False, "LISTEN_FOR_ANNOUNCEMENTS": False})
    health = HealthLog(app)
    bootstrap = settings.kafka_bootstrap_servers
    try:
        with PacedProducer(bootstrap, unique_topics["source"], rate=10) as producer, \
                SinkTally(bootstrap, unique_topics["sink"]) as sink, StoreTrail(store) as trail, \
                watcher_process(watched_env, f"test-watcher-{unique_topics['source']}") as watcher:
            first = flink.submit("stream.py", watched_env)
            wait_for(lambda: flink.fully_running(first), 90, "the job to be RUNNING")
            health.start()
            wait_for(lambda: sink.total() >= 100, 90, "the first 100 predictions")
            wait_for(lambda: trail.latest()[0] >= 1, 30, "a first model backup")
            wait_for(lambda: training_record(store).get("watched_job") == first, 30,
                     "the watcher to see the job running")
            checkpoints = flink.completed_checkpoints(first)
            wait_for(lambda: flink.completed_checkpoints(first) > checkpoints, 30,
                     "a checkpoint (the Kafka offsets committed)")
            wait_for(lambda: health.answers and health.answers[-1][2] == "running", 15,
                     "/healthz to say the training is running")

            samples_at_kill = trail.latest()[1]
            old_jm = jobmanager_pid()
            os.kill(old_jm, signal.SIGKILL)
            killed, killed_at = time.monotonic(), time.time()

            # each step waits longer than the deadline, so that a slow recovery (a loaded
            # machine) is measured, printed and checked to the end; the deadline is asserted last
            new_jm = wait_for(lambda: (p := jobmanager_pid_or_none()) not in (None, old_jm) and p,
                              60, "the supervisor to start a new JobManager")
            wait_for(lambda: FlinkRest(flink.base, timeout=2).overview(), 3 * RECOVERY_DEADLINE,
                     "the REST API to answer again")
            rest_back = time.monotonic() - killed
            second = wait_for(lambda: running_job(flink, name, not_id=first), 4 * RECOVERY_DEADLINE,
                              "the watcher's resubmitted job to be RUNNING")
            running_again = time.monotonic() - killed
            listed = time.monotonic()
            wait_for(lambda: sink.first_after(listed), 60, "predictions from the new job")
            first_prediction = sink.first_after(listed) - killed
            resubmitted = training_record(store)["last_submit_at"] - killed_at
            accepted = next(j["start-time"] for j in flink.jobs_named(name)
                            if j["jid"] == second) / 1000 - killed_at
            print(f"\nJobManager killed (pid {old_jm} -> {new_jm}): REST API back after "
                  f"{rest_back:.1f} s, `flink run` started after {resubmitted:.1f} s, the job "
                  f"accepted after {accepted:.1f} s, RUNNING after {running_again:.1f} s "
                  f"({running_again - rest_back:.1f} s after the REST API was back), first "
                  f"new prediction after {first_prediction:.1f} s (load average "
                  f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
            wait_for(lambda: health.answers[-1][2] == "running", 3 * INTERVAL + 5,
                     "/healthz to say the training runs again")
            back = time.monotonic()

            # a little more stream after the recovery, then every acknowledged record is predicted
            n = len(producer.acknowledged())
            wait_for(lambda: len(producer.acknowledged()) >= n + 100, 60, "the producer to go on")
            producer.stop()
            acked = producer.acknowledged()
            assert not producer.failures, producer.failures[:3]
            wait_for(lambda: acked <= sink.ids(), 120,
                     f"predictions for all {len(acked)} acknowledged records")
            wait_for(lambda: trail.latest()[1] >= samples_at_kill + 100, 60,
                     "a backup of the model learning again, from where it was")
            assert watcher.poll() is None, "the watcher exited"
            print(f"predictions stopped for {sink.longest_gap(killed):.1f} s at most; "
                  f"{len(acked)} records acknowledged, all predicted, {sink.duplicates()} "
                  f"predicted twice; model versions {trail.trail[0][0]} -> {trail.latest()[0]}")
            assert trail.backwards() == [], trail.trail

        health.stop()
        outage = health.states_between(killed, back)
        assert any(s != "running" for s in outage), f"/healthz never showed the outage: {outage}"
        assert health.states_between(back, time.monotonic())[-1:] == ["running"]
        assert {code for _, code, _ in health.answers} == {200}, "Redis and Kafka stayed up"
        print(f"/healthz training during the outage: {sorted(set(outage))}")

        alerts = [a for a in consume_json(bootstrap, unique_topics["alerts"], 2, 30)
                  if a.get("kind", "").startswith("training_")]
        assert [a["kind"] for a in alerts] == ["training_stopped", "training_resumed"], alerts
        assert alerts[0]["previous_state"] == "running" and alerts[0]["job_name"] == name
        assert alerts[1]["job_id"] == second and alerts[1]["model_key"] == settings.model_key
        after_back = running_again - rest_back
        assert after_back < RECOVERY_DEADLINE, (
            f"the job ran again {after_back:.0f} s after the JobManager was back ({running_again:.0f} s "
            f"after the kill; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
        record("jobmanager_kill", running_s=running_again, after_jm_s=after_back,
               rest_back_s=rest_back, prediction_s=first_prediction, acked=len(acked), lost=0,
               duplicates=sink.duplicates())
    finally:
        health.halt.set()
        app.extensions["online_ml"].close()
        cancel_named(flink, name)
        stack_script("up.sh", "flink")  # healthy again for the next tests


def jobmanager_pid_or_none() -> int | None:
    return service_pid("flink-jobmanager")


def test_a_cancelled_job_is_not_brought_back(watched_env, settings, unique_topics, redis_client,
                                            flink):
    """Cancelled with the REST API (what `flink cancel` does): the watcher says so, alerts once,
    and neither it nor a restarted watcher submits the job again."""
    name = watched_env["JOB_NAME"]
    store = ModelStore(redis_client, settings.model_key)
    log_name = f"test-watcher-{unique_topics['source']}"
    try:
        with watcher_process(watched_env, log_name):
            job_id = flink.submit("stream.py", watched_env)
            wait_for(lambda: training_record(store).get("watched_job") == job_id, 120,
                     "the watcher to see the job running")
            flink.cancel_and_wait(job_id)
            wait_for(lambda: training_record(store).get("state") == "canceled", 10 * INTERVAL,
                     "the watcher to see the job cancelled")
            assert training_record(store)["cancelled"] is True
            waited = time.monotonic()
            while time.monotonic() - waited < 3 * INTERVAL + 1:  # three looks, and then some
                assert active_jobs(flink, name) == [], "the watcher brought back a cancelled job"
                time.sleep(0.5)
        checked = training_record(store)["checked_at"]
        with watcher_process(watched_env, log_name):  # a new watcher reads the same memory
            wait_for(lambda: training_record(store)["checked_at"] > checked, 60,
                     "the restarted watcher to report")
            waited = time.monotonic()
            while time.monotonic() - waited < 3 * INTERVAL + 1:
                assert active_jobs(flink, name) == [], "a restarted watcher resurrected the job"
                time.sleep(0.5)
            assert training_record(store)["state"] == "canceled"
        alerts = [a for a in consume_json(settings.kafka_bootstrap_servers,
                                          unique_topics["alerts"], 1, 20)
                  if a.get("kind", "").startswith("training_")]
        assert [a["kind"] for a in alerts] == ["training_stopped"], alerts  # one, not one a look
        assert alerts[0]["state"] in ("cancelling", "canceled")
    finally:
        cancel_named(flink, name)
