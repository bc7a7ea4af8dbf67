"""The Flink REST client (online_ml/flink_rest.py): its decisions as plain functions, its CLI's
answers when Flink is not there, and the CLI against the session's real cluster.

Its calls against a running job (state, metrics, exceptions, checkpoints, cancel) are exercised by
the integration tests that submit jobs (test_end_to_end, test_job_robustness, test_recovery).
"""
from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from online_ml.flink_rest import FlinkRest, FlinkUnreachable, active, readiness, short_metric_names
from online_ml.harness.flink import job_id_in
from online_ml.harness.net import free_port
from online_ml.harness.paths import PY

OVERVIEW = {"taskmanagers": 1, "slots-total": 2, "slots-available": 0, "flink-version": "2.2.1"}


def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "online_ml.flink_rest", *args], env=dict(os.environ, **env),
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("overview, taskmanagers, free_slots, ready", [
    (OVERVIEW, 1, 0, True),
    (OVERVIEW, 2, 0, False),  # only one TaskManager registered
    (OVERVIEW, 1, 1, False),  # both slots taken by running jobs
    (dict(OVERVIEW, **{"slots-total": 0}), 1, 0, False),  # a TaskManager without slots yet
    ({"taskmanagers": 0, "slots-total": 0, "slots-available": 0}, 0, 0, True),  # REST answers
    ({}, 1, 0, False),
])
def test_readiness(overview, taskmanagers, free_slots, ready):
    ok, why = readiness(overview, taskmanagers, free_slots)
    assert ok is ready
    assert "TaskManager(s)" in why


def test_active_jobs_are_those_not_yet_stopped():
    states = ["CREATED", "RUNNING", "RESTARTING", "CANCELLING", "FINISHED", "CANCELED", "FAILED"]
    jobs = [{"jid": s.lower(), "state": s} for s in states]
    assert [j["jid"] for j in active(jobs)] == ["created", "running", "restarting", "cancelling"]


def test_udf_metric_names_are_shortened_to_their_group():
    ids = ["0.Calc.online_ml.sample_count", "0.numRecordsIn", "1.Calc.online_ml.model_version",
           "0.Calc.other.online_mlx"]
    assert short_metric_names(ids) == {"0.Calc.online_ml.sample_count": "sample_count",
                                       "1.Calc.online_ml.model_version": "model_version"}


def test_address_is_what_flink_run_m_takes():
    assert FlinkRest("http://localhost:8081/").address == "localhost:8081"
    assert FlinkRest("http://127.0.0.1:18081").base == "http://127.0.0.1:18081"


def test_job_id_from_flink_run_output():
    out = ("submitted 'Classifier Model Train' (row mode)\n"
           "Job has been submitted with JobID 7f3a9e0c5b1d4e2f8a6c3b9d0e1f2a3b\n")
    assert job_id_in(out) == "7f3a9e0c5b1d4e2f8a6c3b9d0e1f2a3b"
    assert job_id_in("Could not submit the job") is None


def test_client_names_the_address_when_flink_does_not_answer():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(FlinkUnreachable, match=url):
        FlinkRest(url).overview()
    assert FlinkRest(url).ready() is False


@pytest.mark.parametrize("command", [["ready"], ["job-running"], ["cancel-all"],
                                     ["ready", "--wait", "1"]])
def test_cli_without_flink_is_one_line_and_exit_1(command):
    url = f"http://127.0.0.1:{free_port()}"
    done = cli(*command, FLINK_REST_URL=url)
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1 and url in lines[0] and "does not answer" in lines[0], lines


def test_cli_bad_setting_is_exit_2():
    done = cli("ready", REDIS_PORT="abc")
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "REDIS_PORT" in done.stderr


@pytest.mark.integration
def test_cli_against_the_real_cluster(flink_service, settings):
    done = cli("ready", "--taskmanagers", "1", FLINK_REST_URL=settings.flink_rest_url)
    assert done.returncode == 0 and "is ready: 1 TaskManager(s)" in done.stdout, done
    done = cli("ready", "--taskmanagers", "99", FLINK_REST_URL=settings.flink_rest_url)
    assert done.returncode == 1 and "waiting for 99 TaskManager(s)" in done.stderr, done
    name = f"no such job {uuid.uuid4().hex[:8]}"
    done = cli("job-running", FLINK_REST_URL=settings.flink_rest_url, JOB_NAME=name)
    assert done.returncode == 1 and f"'{name}' is not running" in done.stdout, done
