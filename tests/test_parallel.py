"""The job at parallelism 2 on the real stack: two learners, one served model that counts every
record (online_ml/sync_protocol.py), submitted with the flink CLI as a user does."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic
from sklearn.datasets import load_digits

from online_ml.model_store import ModelStore

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
N_RECORDS = 900


def _poll(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _flink(*args: str, env: dict) -> str:
    out = subprocess.run(["flink", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, f"flink {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def test_two_learners_one_model(settings, redis_client, kafka_service, flink_service):
    suffix = uuid.uuid4().hex[:8]
    topics = {"SOURCE_TOPIC": f"test_par_src_{suffix}", "SINK_TOPIC": f"test_par_sink_{suffix}",
              "DEAD_LETTER_TOPIC": f"test_par_dead_{suffix}",
              "ALERT_TOPIC": f"test_par_alerts_{suffix}"}
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    admin.create_topics([NewTopic(topics["SOURCE_TOPIC"], 2, 1)]
                        + [NewTopic(t, 1, 1) for k, t in topics.items() if k != "SOURCE_TOPIC"])
    venv_bin = str(Path(sys.executable).parent)
    env = dict(os.environ, **topics, KAFKA_GROUP_ID=f"group_{suffix}",
               MODEL_KEY=settings.model_key, REDIS_DB=str(settings.redis_db), PARALLELISM="2",
               SYNC_INTERVAL_SECONDS="1", BACKUP_INTERVAL_SECONDS="2",
               PATH=f"{venv_bin}:{os.environ['PATH']}")
    job_id = None
    try:
        produced = subprocess.run(
            [sys.executable, "kafka_producer.py", "--rate", "0", "--count", str(N_RECORDS),
             "--topic", topics["SOURCE_TOPIC"], "--quiet"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert produced.returncode == 0, produced.stderr
        address = settings.flink_rest_url.split("://", 1)[-1]
        out = _flink("run", "-m", address, "-d", "-py", "stream.py", env=env)
        job_id = out.strip().split()[-1]

        # every record is predicted once, by one of the two learners
        consumer = KafkaConsumer(topics["SINK_TOPIC"],
                                 bootstrap_servers=settings.kafka_bootstrap_servers,
                                 auto_offset_reset="earliest", consumer_timeout_ms=1000)
        predictions: list[dict] = []
        deadline = time.monotonic() + 180
        while len(predictions) < N_RECORDS and time.monotonic() < deadline:
            predictions += [json.loads(m.value) for m in consumer]
        consumer.close()
        assert len(predictions) == N_RECORDS

        # one served model, merged from both learners, that has seen every record
        store = ModelStore(redis_client, settings.model_key)
        meta = _poll(lambda: (m := store.load_meta()) and m.get("samples_seen") == N_RECORDS
                     and m, 60, f"a served model that has seen all {N_RECORDS} records")
        assert meta["learners"] == 2, meta
        history = [h["version"] for h in store.history()]
        assert history == sorted(history) and len(history) >= 2
        X, y = load_digits(return_X_y=True)
        accuracy = (store.load().model.predict(X) == y).mean()
        print(f"parallelism 2, {N_RECORDS} records: served model accuracy on digits {accuracy:.3f},"
              f" {meta['version']} versions")
        # measured: 0.930 at parallelism 2 after these 900 records, 0.928 for one learner on the
        # same stream; two learners that never merged score ~0.84 here. The margin is for the
        # producer's random partitioning and the timing of the merges
        assert accuracy > 0.88, accuracy
    finally:
        if job_id:
            subprocess.run(["flink", "cancel", "-m", settings.flink_rest_url.split("://", 1)[-1],
                            job_id], cwd=ROOT, env=env, capture_output=True, timeout=60)
        admin.delete_topics(list(topics.values()))
        admin.close()
