"""PYTHON_EXECUTION_MODE: where the job's Python UDF runs (issue 9, point 6).

Flink's thread mode runs the row UDF inside the TaskManager JVM; it has no pandas UDFs, so the
batch UDF with thread mode is refused before anything is submitted, with one line naming both
settings. No services: the job's tables are declared in a local TableEnvironment (a JVM of its
own, a few seconds), nothing connects to Kafka.
"""
from __future__ import annotations

import os
import subprocess

import pytest

from online_ml.config import Settings
from online_ml.harness.paths import PY, ROOT


def test_process_mode_is_the_default():
    assert Settings.from_env({}).python_execution_mode == "process"
    assert Settings.from_env({"PYTHON_EXECUTION_MODE": "thread"}).python_execution_mode == "thread"


@pytest.mark.parametrize("environ,named", [
    ({"PYTHON_EXECUTION_MODE": "thread", "UDF_MODE": "batch"}, "UDF_MODE=batch"),
    ({"PYTHON_EXECUTION_MODE": "threads"}, "PYTHON_EXECUTION_MODE"),
])
def test_a_mode_flink_cannot_run_is_refused(environ, named):
    with pytest.raises(ValueError, match=named):
        Settings.from_env(environ)


def test_batch_udf_in_thread_mode_is_one_clear_line_before_submission():
    env = dict(os.environ, UDF_MODE="batch", PYTHON_EXECUTION_MODE="thread")
    done = subprocess.run([PY, "stream.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr + done.stdout, done.stderr
    assert done.stderr.startswith("error: PYTHON_EXECUTION_MODE=thread"), done.stderr
    assert "UDF_MODE=batch" in done.stderr and done.stderr.count("\n") == 1, done.stderr


@pytest.fixture(scope="module")
def new_table_env():
    pytest.importorskip("pyflink")
    from pyflink.table import EnvironmentSettings, TableEnvironment

    return lambda: TableEnvironment.create(EnvironmentSettings.in_streaming_mode())


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_the_job_carries_the_execution_mode(mode, new_table_env):
    import stream

    t_env = new_table_env()
    stream.build_job(t_env, Settings(python_execution_mode=mode))
    assert t_env.get_config().get("python.execution-mode", "") == mode


def test_a_hand_made_batch_thread_settings_is_refused_by_build_job(new_table_env):
    import stream

    with pytest.raises(ValueError, match="UDF_MODE=batch"):
        stream.build_job(new_table_env(), Settings(udf_mode="batch",
                                                   python_execution_mode="thread"))
