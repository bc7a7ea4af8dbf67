"""The whole way, on the real stack: producer -> Kafka -> job on the standalone cluster (submitted
with the flink CLI) -> predictions in Kafka -> model in Redis -> POST /predict -> Flink metrics."""
from __future__ import annotations

import base64
import json
import subprocess
import time

import pytest
import requests
from conftest import PY, ROOT, cancel_job, free_port, submit_job, wait_for
from flink_rest import FlinkRest
from kafka import KafkaConsumer

from online_ml.model_store import ModelStore

pytestmark = pytest.mark.integration

N_RECORDS = 400


def digit_svg(width: int = 300, height: int = 150) -> str:
    """A '1'-like stroke as the board's SVG data URL."""
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
           f'<path d="M 150 20 L 150 130" stroke="black" stroke-width="8" fill="none"/></svg>')
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


@pytest.mark.parametrize("mode", ["row", "batch"])
def test_stream_to_prediction_end_to_end(mode, job_env, settings, redis_client):
    job_env = dict(job_env, UDF_MODE=mode)
    flink = FlinkRest(settings.flink_rest_url)
    produced = subprocess.run(
        [PY, "kafka_producer.py", "--rate", "0", "--count", str(N_RECORDS),
         "--topic", job_env["SOURCE_TOPIC"], "--quiet"],
        cwd=ROOT, env=job_env, capture_output=True, text=True, timeout=120)
    assert produced.returncode == 0, produced.stderr

    job_id = submit_job(job_env)
    server = None
    try:
        wait_for(lambda: flink.state(job_id) == "RUNNING", 60, "the job to be RUNNING")

        # predictions arrive in the sink topic, one per record, in the sink contract
        consumer = KafkaConsumer(job_env["SINK_TOPIC"], bootstrap_servers=settings.kafka_bootstrap_servers,
                                 auto_offset_reset="earliest", consumer_timeout_ms=1000)
        predictions = []
        deadline = time.monotonic() + 120
        while len(predictions) < N_RECORDS and time.monotonic() < deadline:
            predictions += [json.loads(m.value) for m in consumer]
        consumer.close()
        assert len(predictions) == N_RECORDS, f"{len(predictions)} predictions of {N_RECORDS}"
        first = predictions[0]
        assert len(first["x"]) == 64 and first["actual_y"] in range(10)
        assert first["predict_y"] is None  # predicted before anything was learned
        late = predictions[-100:]
        accuracy = sum(p["predict_y"] == p["actual_y"] for p in late) / len(late)
        assert accuracy > 0.6, f"prequential accuracy over the last 100 records: {accuracy:.2f}"

        # a model lands in Redis within one backup interval (plus slack for a busy machine)
        store = ModelStore(redis_client, settings.model_key)
        meta = wait_for(store.load_meta, 10 + 5, "a model backup in Redis")
        assert meta["version"] >= 1 and meta["samples_seen"] == N_RECORDS

        # the prediction server answers a drawing with a digit from that model
        port = free_port()
        server = subprocess.Popen([PY, "model_server.py", "--port", str(port)], cwd=ROOT,
                                  env=job_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: requests.get(url + "/healthz", timeout=2).ok, 30, "the prediction server")
        answer = requests.post(url + "/predict", data={"imgStr": digit_svg()}, timeout=10).json()
        assert answer["success"] is True and answer["predict_result"] in range(10), answer

        # the UDF's metrics are readable from the Flink REST API
        metrics = wait_for(lambda: (m := flink.udf_metrics(job_id)).get("sample_count", "0") != "0" and m,
                           30, "sample_count in the Flink REST API")
        assert int(metrics["sample_count"]) == N_RECORDS
        # the tutorial's metrics, then ours (README, "Metrics")
        for name in ("prediction_acc", "metric_distribution_y", "total_10_sec", "right_10_sec",
                     "accuracy_permille", "rolling_accuracy_permille", "model_version",
                     "backups_succeeded", "backups_failed", "records_rejected",
                     "seconds_since_backup", "train_time_us", "alert_active", "alerts_fired"):
            assert name in metrics, f"metric {name} missing: {sorted(metrics)}"
        accuracy = int(metrics["accuracy_permille"])
        assert 500 < accuracy <= 1000 and abs(int(metrics["prediction_acc"]) - accuracy / 10) <= 1
        # PyFlink reports metrics once per bundle, i.e. with records: the backup above happened
        # after the last one, so the backup gauges show it once a few more records have passed
        more = subprocess.run(
            [PY, "kafka_producer.py", "--rate", "0", "--count", "20",
             "--topic", job_env["SOURCE_TOPIC"], "--quiet"],
            cwd=ROOT, env=job_env, capture_output=True, text=True, timeout=120)
        assert more.returncode == 0, more.stderr
        metrics = wait_for(
            lambda: (m := flink.udf_metrics(job_id)).get("sample_count") == str(N_RECORDS + 20)
            and int(m.get("backups_succeeded", 0)) >= 1 and m, 30, "the backup in the metrics")
        assert int(metrics["model_version"]) >= meta["version"]
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        cancel_job(flink, job_id)
