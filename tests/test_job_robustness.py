"""The job under abuse, on the real stack (submitted with `flink run` like the end-to-end test):
bad records are dead-lettered while good ones keep flowing, an accuracy drop raises one alert and
then a recovery record, and Redis can go away and come back under a running job."""
from __future__ import annotations

import collections
import subprocess

import pytest

from online_ml.config import Settings
from online_ml.flink_rest import FlinkRest
from online_ml.harness.kafka import consume_json, produce, producer_command
from online_ml.harness.processes import stop_process
from online_ml.harness.records import BAD, good_records, shifted
from online_ml.harness.redis_server import PrivateRedis
from online_ml.harness.waiting import wait_for
from online_ml.model_store import ModelStore

pytestmark = pytest.mark.integration

BOOTSTRAP = Settings.from_env().kafka_bootstrap_servers
GOOD = list(good_records())


def read(topic: str, expected: int, timeout: float) -> list[dict]:
    return consume_json(BOOTSTRAP, topic, expected, timeout)


# failures of the cluster itself (a TaskManager that died, was killed or is restarting), not of
# the job: the shared local cluster sees those when another test kills its TaskManager
INFRASTRUCTURE = ("TaskExecutor is shutting down", "NoResourceAvailableException",
                  "TaskManager with id", "is no longer reachable", "heartbeat of TaskManager")


def job_failures(flink: FlinkRest, job_id: str) -> list[str]:
    """The job's own failures (its exception history, minus the cluster's), as short texts."""
    return [e["stacktrace"][:2000] for e in flink.exception_history(job_id)
            if not any(marker in e["stacktrace"] for marker in INFRASTRUCTURE)]


@pytest.mark.parametrize("mode", ["row", "batch"])
def test_bad_records_are_dead_lettered_and_accuracy_alerts_fire(mode, job_env, settings,
                                                                redis_client, flink):
    bad = list(BAD)  # one of each kind, a tombstone and bytes that are not UTF-8 included
    # 600 good records with the bad ones in between (warm-up), 100 with wrong labels (the
    # accuracy over the last 50 falls below 0.5: one alert), 500 good ones again (it recovers)
    stream = []
    for i, value in enumerate(GOOD[:600]):
        stream.append(value)
        if i % 20 == 10 and i // 20 < len(bad):
            stream.append(bad[i // 20][1])
    assert len(stream) == 600 + len(bad)
    stream += [shifted(v) for v in GOOD[600:700]] + GOOD[700:1200]
    n_good = 1200
    env = dict(job_env, UDF_MODE=mode, ALERT_WINDOW="50", ALERT_WARMUP="300",
               ALERT_THRESHOLD="0.5", ALERT_HYSTERESIS="0.1")
    produce(BOOTSTRAP, env["SOURCE_TOPIC"], stream)

    job_id = flink.submit("stream.py", env)
    try:
        wait_for(lambda: flink.state(job_id) == "RUNNING", 60, "the job to be RUNNING")
        predictions = read(env["SINK_TOPIC"], n_good, 90)
        assert len(predictions) == n_good, f"{len(predictions)} predictions of {n_good}"
        assert all(set(p) >= {"x", "actual_y", "predict_y", "ts"} for p in predictions)

        letters = read(env["DEAD_LETTER_TOPIC"], len(bad), 30)
        assert len(letters) == len(bad), letters
        assert (collections.Counter(letter["reason"] for letter in letters)
                == collections.Counter(reason for reason, _ in bad))
        raws = {(v.decode("utf-8", "replace") if isinstance(v, bytes) else v or "")
                for _, v in bad}
        assert {letter["raw"] for letter in letters} == raws
        assert all(letter["error"] and letter["ts"] for letter in letters)

        alerts = read(env["ALERT_TOPIC"], 2, 30)
        assert [a["kind"] for a in alerts] == ["accuracy_drop", "recovered"], alerts
        drop, up = alerts
        # the job's ALERT_* settings at work: over a window of 50 the rolling accuracy moves in
        # steps of 1/50, so the alarm fires at the first record below the threshold (24 of the
        # last 50 right) and clears only at threshold + hysteresis (30 of 50), not at 0.5
        assert drop["threshold"] == 0.5 and drop["window"] == 50
        assert drop["rolling_accuracy"] == pytest.approx(24 / 50)
        assert up["rolling_accuracy"] == pytest.approx(30 / 50)
        assert 600 < drop["samples_seen"] <= 700 < up["samples_seen"]

        metrics = wait_for(
            lambda: (m := flink.udf_metrics(job_id)).get("sample_count") == str(n_good) and m,
            30, "sample_count in the Flink REST API")
        assert metrics["records_rejected"] == str(len(bad))
        assert metrics["alerts_fired"] == "1" and metrics["alert_active"] == "0"
        assert flink.state(job_id) == "RUNNING"
        failures = job_failures(flink, job_id)
        assert not failures, f"the job failed {len(failures)} time(s), first:\n{failures[0]}"
    finally:
        flink.cancel_and_wait(job_id)  # the UDF's close() writes its last backup
    # the counts per reason are part of the stored model's metadata
    meta = ModelStore(redis_client, settings.model_key).load_meta()
    assert meta["records_rejected"] == len(bad)
    assert sum(meta["rejected_by_reason"].values()) == len(bad)


@pytest.mark.parametrize("mode", ["row", "batch"])
def test_redis_stopped_and_restarted_under_a_running_job(mode, job_env, settings, flink):
    redis = PrivateRedis().start()
    env = dict(job_env, UDF_MODE=mode, REDIS_PORT=str(redis.port),
               REDIS_PASSWORD=redis.password, REDIS_DB="1", BACKUP_INTERVAL_SECONDS="2")
    store = ModelStore(redis.client(), settings.model_key)
    producer = subprocess.Popen(producer_command(settings, env["SOURCE_TOPIC"], rate=50), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        job_id = flink.submit("stream.py", env)
        wait_for(lambda: flink.state(job_id) == "RUNNING", 60, "the job to be RUNNING")
        wait_for(store.load_meta, 60, "a first model backup in the private Redis")

        redis.stop()
        during = wait_for(lambda: (m := flink.udf_metrics(job_id)).get("backups_failed", "0")
                          != "0" and m, 40, "backups_failed > 0 while Redis is down")
        # still learning: the sample count goes on growing while Redis is away
        wait_for(lambda: int(flink.udf_metrics(job_id)["sample_count"])
                 > int(during["sample_count"]), 30, "training to continue during the outage")
        assert flink.state(job_id) == "RUNNING"

        redis.start()
        before = store.load_meta()  # what was saved before the outage (data kept by the restart)
        after = wait_for(lambda: (m := store.load_meta())["version"] > before["version"] and m,
                         40, "a new model version after Redis is back")
        assert after["samples_seen"] > before["samples_seen"]
        metrics = wait_for(lambda: int((m := flink.udf_metrics(job_id))["model_version"])
                           >= after["version"] and m, 30, "model_version after the outage")
        assert int(metrics["backups_failed"]) >= 1
        assert flink.state(job_id) == "RUNNING"
        failures = job_failures(flink, job_id)
        assert not failures, f"the job failed {len(failures)} time(s), first:\n{failures[0]}"
    finally:
        stop_process(producer)
        flink.cancel_submitted()
        redis.close()
