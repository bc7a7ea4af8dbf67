"""Shared fixtures. Services are real: started through the same stack scripts `make up` uses.

A service that was already running (e.g. after `make up`) is used and left running; one the test
session started is stopped at the end. Tests use Redis db 1 (flushed per test) and their own Kafka
topics and model keys, so they never touch the demo's data in db 0.

The whole suite runs against another stack instance through the stack's own variables, e.g.::

    ONLINE_ML_STATE=/tmp/stack2 REDIS_PORT=16379 KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 \
    KAFKA_CONTROLLER_PORT=19093 FLINK_REST_PORT=18081 FLINK_RPC_PORT=16123 pytest tests

(FLINK_REST_URL follows FLINK_REST_PORT; the `flink` CLI gets that instance's configuration.)
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from online_ml.config import Settings  # noqa: E402

TEST_REDIS_DB = 1
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
STATE = Path(os.environ.get("ONLINE_ML_STATE") or ROOT / ".state")
RUN = STATE / "run"
# another stack instance: its REST address, and its configuration for the `flink` CLI
if os.environ.get("FLINK_REST_PORT") and not os.environ.get("FLINK_REST_URL"):
    os.environ["FLINK_REST_URL"] = f"http://localhost:{os.environ['FLINK_REST_PORT']}"
if os.environ.get("ONLINE_ML_STATE"):
    os.environ.setdefault("FLINK_CONF_DIR", str(STATE / "flink" / "conf"))
    os.environ.setdefault("FLINK_LOG_DIR", str(STATE / "logs" / "flink"))


def _pid_alive(name: str) -> bool:
    f = RUN / f"{name}.pid"
    try:
        os.kill(int(f.read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


_PIDS = {"redis": ["redis"], "kafka": ["kafka"], "flink": ["flink-jobmanager", "flink-taskmanager"]}


class Stack:
    """Starts services on demand, remembers which ones this session started."""

    def __init__(self):
        self.started: list[str] = []

    def up(self, service: str) -> None:
        if not all(_pid_alive(n) for n in _PIDS[service]) and service not in self.started:
            self.started.append(service)  # ours to stop; one already running is left alone
        subprocess.run(["bash", str(ROOT / "stack" / "up.sh"), service], check=True, cwd=ROOT)

    def down(self) -> None:
        names = [n for s in reversed(self.started) for n in reversed(_PIDS[s])]
        if names:
            subprocess.run(["bash", str(ROOT / "stack" / "down.sh"), *names], check=False, cwd=ROOT)


@pytest.fixture(scope="session")
def stack():
    s = Stack()
    yield s
    s.down()


@pytest.fixture(scope="session")
def redis_service(stack):
    stack.up("redis")


@pytest.fixture(scope="session")
def kafka_service(stack):
    stack.up("kafka")


@pytest.fixture(scope="session")
def flink_service(stack):
    stack.up("flink")


@pytest.fixture
def settings(redis_service) -> Settings:
    """Settings for tests: the local stack, Redis db 1, a model key of its own."""
    return Settings.from_env(redis_db=TEST_REDIS_DB, model_key=f"test_model_{uuid.uuid4().hex[:8]}")


@pytest.fixture
def redis_client(settings):
    client = settings.redis_client()
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def unique_topics(kafka_service):
    """Fresh source, sink, dead-letter and alert topics for one test (deleted afterwards)."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    suffix = uuid.uuid4().hex[:8]
    names = {"source": f"test_src_{suffix}", "sink": f"test_sink_{suffix}",
             "dead": f"test_dead_{suffix}", "alerts": f"test_alerts_{suffix}"}
    admin = KafkaAdminClient(bootstrap_servers=Settings.from_env().kafka_bootstrap_servers)
    admin.create_topics([NewTopic(n, 1, 1) for n in names.values()])
    yield names
    try:
        admin.delete_topics(list(names.values()))
    finally:
        admin.close()


@pytest.fixture
def job_env(settings, unique_topics, flink_service) -> dict:
    """Environment for `flink run … stream.py` reading and writing this test's own topics and
    model key; tests override single settings with ``dict(job_env, NAME=value)``."""
    return dict(os.environ,
                SOURCE_TOPIC=unique_topics["source"], SINK_TOPIC=unique_topics["sink"],
                DEAD_LETTER_TOPIC=unique_topics["dead"], ALERT_TOPIC=unique_topics["alerts"],
                KAFKA_GROUP_ID=f"group_{unique_topics['source']}",
                MODEL_KEY=settings.model_key, REDIS_DB=str(settings.redis_db),
                BACKUP_INTERVAL_SECONDS="10",
                PATH=f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}")


def submit_job(env: dict) -> str:
    """Submit stream.py with the flink CLI, exactly as a user does; return the job id."""
    from urllib.parse import urlparse

    address = urlparse(Settings.from_env(env).flink_rest_url).netloc  # localhost:8081
    out = subprocess.run(["flink", "run", "-m", address, "-d", "-py", "stream.py"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, f"flink run failed:\n{out.stdout}\n{out.stderr}"
    job_id = out.stdout.strip().split()[-1]
    assert len(job_id) == 32, out.stdout
    return job_id


def cancel_job(flink, job_id: str) -> None:
    flink.cancel(job_id)
    wait_for(lambda: flink.state(job_id) == "CANCELED", 30, "the job to cancel")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    """Poll ``predicate`` until it returns a truthy value; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the thing may not be up yet
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}"
                         + (f" (last error: {last_exc})" if last_exc else ""))


def http_json(url: str, method: str = "GET", data: bytes | None = None, timeout: float = 5):
    req = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")
