"""Every entry point answers a bad setting with one clear line and exit code 2, no traceback."""
from __future__ import annotations

import os
import subprocess

import pytest

from online_ml.harness.paths import PY, ROOT

PROGRAMS = [["model_server.py"], ["kafka_producer.py", "--count", "1"], ["redis_clear.py"],
            ["stream.py"], ["-m", "online_ml.watcher"]]
BAD = [("REDIS_PORT", "abc", "REDIS_PORT"), ("UDF_MODE", "sideways", "UDF_MODE"),
       ("LEARNER_PARAMS", "{alpha", "LEARNER_PARAMS"), ("BATCH_SIZE", "0", "BATCH_SIZE"),
       ("BLAS_THREADS", "-1", "BLAS_THREADS")]


@pytest.mark.parametrize("name,value", [("LEARNER", "forest"),
                                        ("LEARNER_PARAMS", '{"alfa": 0.1}'),
                                        ("SYNC_MERGE_STEP", "cubic")])
def test_a_bad_learner_is_refused_before_the_job_is_submitted(name, value):
    done = subprocess.run([PY, "stream.py"], cwd=ROOT, env=dict(os.environ, **{name: value}),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("error: "), done.stderr


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p[0])
@pytest.mark.parametrize("name,value,named", BAD, ids=lambda v: str(v))
def test_bad_setting_is_one_clear_line(program, name, value, named):
    env = dict(os.environ, **{name: value})
    done = subprocess.run([PY, *program], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stderr.startswith("error: ") and named in done.stderr, done.stderr


def test_a_benchmark_that_needs_the_stack_says_so_without_it():
    """bench/request_cost.py stores a model in Redis: with no Redis there it says what to do (one
    line, exit code 2), not a traceback from inside redis-py."""
    from online_ml.harness.net import free_port

    done = subprocess.run([PY, "bench/request_cost.py", "--smoke"], cwd=ROOT,
                          env=dict(os.environ, REDIS_PORT=str(free_port())), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: Redis is not reachable") and "make up" in last, last
