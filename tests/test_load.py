"""Load: 32 concurrent clients on /predict for a minute, 1% bad payloads, while the job keeps
training and publishing new model versions. Zero 5xx, no error besides the bad payloads' 4xx, and
the server's memory does not keep growing. Then the server is killed under load and restarted.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from online_ml import procfs
from online_ml.harness.drawings import (
    BILLION_LAUGHS,
    EMPTY_BOARD,
    drawings,
    form_body,
    svg_data_url,
)
from online_ml.harness.http_load import load
from online_ml.harness.kafka import producer_command
from online_ml.harness.processes import Server
from online_ml.harness.waiting import wait_for
from online_ml.model_store import ModelStore

pytestmark = pytest.mark.integration

SECONDS = float(os.environ.get("LOAD_TEST_SECONDS", "60"))
CLIENTS = 32


def bad_bodies() -> list[bytes]:
    urls = ["data:image/svg+xml;base64,!!!not base64!!!", svg_data_url(BILLION_LAUGHS),
            svg_data_url(EMPTY_BOARD), svg_data_url("hello", prefix="data:text/plain;base64,")]
    return [form_body(u) for u in urls]


def served(url: str) -> float:
    """Requests the server has answered, from its own Prometheus /metrics."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("online_ml_http_requests_total{"))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def training_job(job_env, settings, unique_topics, redis_client, flink):
    """A batch-mode job with 1 s backups, fed 200 records/s for the whole test."""
    env = dict(job_env, BACKUP_INTERVAL_SECONDS="1", UDF_MODE="batch")
    producer = subprocess.Popen(producer_command(settings, unique_topics["source"], rate=200),
                                env=env)
    flink.submit("stream.py", env)
    try:
        store = ModelStore(redis_client, settings.model_key)
        wait_for(lambda: store.current_version() >= 2, 90, "the job's first model versions")
        yield env, store
    finally:
        producer.send_signal(signal.SIGINT)
        producer.wait(30)


def test_predict_under_load_while_the_model_changes(training_job):
    env, store = training_job
    good = [body for _, body in drawings(99, seed=7)]
    bodies = good + bad_bodies()[:1]           # 1 bad payload in 100
    more_bad = bad_bodies()
    with Server("online_ml.server:create_app",
                env={k: env[k] for k in ("MODEL_KEY", "REDIS_DB", "SOURCE_TOPIC")},
                threads=8, name="load-server") as server:
        server.wait_ready(path="/api/model")
        samples: list[tuple[float, int]] = []
        stop = threading.Event()

        def watch_memory():
            while not stop.wait(2):
                samples.append((time.monotonic(), rss_kib(server.proc.pid)))

        watcher = threading.Thread(target=watch_memory, daemon=True)
        version_before = store.current_version()
        watcher.start()
        # the 4 kinds of bad payload each appear at 1% in turn
        result = {"status": {}}
        for bad in more_bad:
            part = load(server.url, good + [bad], CLIENTS, SECONDS / len(more_bad))
            for code, n in part["status"].items():
                result["status"][code] = result["status"].get(code, 0) + n
        stop.set()
        watcher.join()
        version_after = store.current_version()

        status = result["status"]
        total = sum(status.values())
        print(f"\nload: {total} requests in {SECONDS:.0f} s by {CLIENTS} clients: {status}; "
              f"model versions {version_before} -> {version_after}; RSS KiB "
              f"{samples[0][1] if samples else '?'} -> {samples[-1][1] if samples else '?'}")
        assert set(status) <= {"200", "400"}, f"unexpected answers: {status}"
        assert 0 < status.get("400", 0) <= total * 0.03, status  # 1 % sent; measured 1.0 %
        # measured: 37 new versions in the minute (1 s backups)
        assert version_after >= version_before + 10, "the job did not publish new versions meanwhile"
        # memory: after warm-up (first third), growth over the rest stays small
        assert len(samples) >= 6
        third = len(samples) // 3
        warm = max(kib for _, kib in samples[:third])
        late = max(kib for _, kib in samples[-third:])
        # measured: +5 MB over the minute (246 -> 251 MB); a leak per request grows far faster
        assert late - warm < 40 * 1024, f"RSS grew from {warm} to {late} KiB"

        # killed under load, a restarted server answers again at once (the demo's supervisor
        # restarts it; here the test does)
        hammer = threading.Thread(target=load, args=(server.url, bodies, 8, 5), daemon=True)
        before = served(server.url)
        hammer.start()
        wait_for(lambda: served(server.url) >= before + 20, 10, "the load to start")
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
        hammer.join()
        log = server.log_path.read_text(errors="replace")
        assert "Traceback" not in log, log[-2000:]
    with Server("online_ml.server:create_app",
                env={k: env[k] for k in ("MODEL_KEY", "REDIS_DB", "SOURCE_TOPIC")},
                threads=8, name="load-server-restarted") as again:
        again.wait_ready(path="/api/model")
        after = load(again.url, good[:10], 2, 2)
        assert after["status"] == {"200": after["requests"]}, after["status"]


def test_the_production_server_replaces_a_killed_worker_while_the_other_answers(
        settings, redis_client):
    """``make demo``'s server (granian, 2 workers, ``--respawn-failed-workers``): a worker killed
    under load costs at most the requests in flight on its connections, the other worker goes
    on answering, and a new worker takes the dead one's place (tried without the option:
    granian exits, and 21,180 of 21,852 requests failed); stopped, the server leaves no
    process behind, even stopped while a replacement is starting (without
    ``--workers-kill-timeout`` granian 2.8.9 then hung on TERM, and a KILL left that worker
    running)."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import SGDClassifier

    digits = load_digits()
    ModelStore(redis_client, settings.model_key).save(
        SGDClassifier(loss="log_loss", random_state=0).fit(digits.data, digits.target))
    good = [body for _, body in drawings(20, seed=7)]
    clients = 4
    with Server("online_ml.server:create_app", workers=2, wsgi="granian", name="granian-server",
                env={"MODEL_KEY": settings.model_key, "REDIS_DB": str(settings.redis_db)}) as server:
        server.wait_ready(path="/api/model", until=lambda answer: answer["model"])
        first = wait_for(lambda: len(w := server.workers()) == 2 and w, 30,
                         "granian's two workers")
        result: dict = {}
        hammer = threading.Thread(target=lambda: result.update(load(server.url, good, clients, 6)),
                                  daemon=True)
        hammer.start()
        time.sleep(2)
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        hammer.join()
        status = result["status"]
        print(f"\ngranian, a worker killed under {clients} clients: {status}")
        # a failed request is one that was on the dead worker's connections (-1), then the
        # client reconnects and reaches the living one
        assert set(status) <= {"200", "-1"}, status
        assert status.get("-1", 0) <= 2 * clients, status
        assert status["200"] > 10 * clients, status
        after = wait_for(lambda: len(w := server.workers()) == 2 and victim not in w and w,
                         15, "a new worker in the dead one's place")
        assert server.proc.poll() is None and len(after - first) == 1
        again = load(server.url, good, 2, 1)
        assert again["status"] == {"200": again["requests"]}, again["status"]
        # stopped while a replacement is still starting (importing the app takes seconds)
        os.kill(min(after), signal.SIGKILL)
        last = wait_for(lambda: len(w := server.workers()) == 2 and not w <= first | after and w,
                        15, "another new worker")
        stopping = time.monotonic()
    # TERM: granian stops its workers, the starting one too, before the harness would KILL it
    # (10 s); measured without --workers-kill-timeout: it waited for that worker forever
    assert time.monotonic() - stopping < 9
    seen = first | after | last
    # (a process just signalled takes a moment to go: look for up to 5 s)
    wait_for(lambda: not [pid for pid in seen if procfs.alive(pid)], 5,
             f"granian's workers {sorted(seen)} to be gone")
