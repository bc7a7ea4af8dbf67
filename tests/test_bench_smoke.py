"""`make bench` in miniature: each benchmark runs on the real stack and writes complete JSON.

Only the shape of the results is checked, never a number: timings on a shared CI machine say
nothing, and the benchmarks themselves report whether the targets are met.
"""
from __future__ import annotations

import json
import subprocess

import pytest

from online_ml.harness.paths import PY, ROOT

pytestmark = pytest.mark.integration

MACHINE_KEYS = {"cores", "memory_gb", "cpu", "os", "python", "packages", "services",
                "loadavg_at_start", "loadavg_at_end"}
PACKAGES = {"apache-flink", "scikit-learn", "kafka-python", "redis", "skops"}
TARGET_KEYS = {"target", "value", "limit", "op", "met"}


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory, redis_service, kafka_service, flink_service):
    out = tmp_path_factory.mktemp("bench")
    # each benchmark submits a few jobs, and one `flink run` took 1-2 minutes on the loaded
    # 2-core machine: the whole smoke run took 21 minutes there (scaleout: 4 of them)
    done = subprocess.run([PY, "bench/run.py", "--smoke", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=2400)
    assert done.returncode == 0, f"bench/run.py --smoke failed:\n{done.stdout}\n{done.stderr}"
    return out, done.stdout


def load(out, name: str) -> dict:
    path = out / f"{name}.json"
    assert path.exists(), f"{path.name} was not written"
    doc = json.loads(path.read_text())
    assert doc["benchmark"] == name and doc["smoke"] is True
    assert {"started_at", "duration_s", "command", "machine", "parameters", "results",
            "targets"} <= doc.keys()
    machine = doc["machine"]
    assert MACHINE_KEYS <= machine.keys(), MACHINE_KEYS - machine.keys()
    assert machine["cores"] >= 1 and machine["python"]
    assert PACKAGES <= {k for k, v in machine["packages"].items() if v}
    assert machine["services"]["flink"], machine["services"]
    assert doc["results"], "no results"
    for t in doc["targets"]:
        assert TARGET_KEYS <= t.keys(), t
    return doc


def test_tables_are_printed(smoke_results):
    _, stdout = smoke_results
    for title in ("training throughput", "serving: POST /predict", "freshness:", "scale-out:",
                  "handwriting:", "targets"):
        assert title in stdout, f"no {title!r} table in the output:\n{stdout}"


def test_throughput_json(smoke_results):
    doc = load(smoke_results[0], "throughput")
    rows = {r["variant"]: r for r in doc["results"]}
    batch = [v for v in rows if v.startswith("batch UDF B=")]
    python = [v for v in rows if v.startswith("python:")]
    py_pass = [v for v in rows if v.startswith("python passthrough")]
    shape = [v for v in rows if v.startswith("python shape")]
    assert "passthrough (no UDF)" in rows and "row UDF" in rows and batch and python and py_pass \
        and shape, list(rows)
    for row in rows.values():
        assert {"records", "seconds", "records_per_s", "ratio_to_passthrough",
                "ratio_to_python_passthrough", "x_row_udf"} <= row.keys(), row
        assert row["records"] > 0
    for name in ["row UDF", *batch, *python]:
        assert 0 <= rows[name]["acc_first_epoch"] <= 1, rows[name]
    b = max(doc["parameters"]["batch_sizes"])  # the BLAS variants run at the largest batch
    assert f"BLAS on every core (before 2026-12-04): batch UDF B={b}" in rows, list(rows)
    assert {t["target"] for t in doc["targets"]} == {
        "batch UDF records/s", "batch UDF / row UDF", "batch UDF / passthrough",
        "batch UDF / python passthrough", "python shape / python passthrough",
        f"batch UDF B={b}: one BLAS thread / every core, records/s",
        f"python: process_many B={b}: one BLAS thread / every core, CPU a record"}
    assert doc["parameters"]["preload"]["records"] == doc["parameters"]["records"]


def test_serving_json(smoke_results):
    doc = load(smoke_results[0], "serving")
    rows = {(r["server"], r["concurrency"]): r for r in doc["results"]}
    assert set(rows) == {(s, c) for s in ("project", "project-gunicorn", "project-waitress",
                                          "project-blas", "tutorial") for c in (1, 8, 32)}
    for row in rows.values():
        assert {"requests", "requests_per_s", "p50_ms", "p95_ms", "p99_ms", "errors",
                "status"} <= row.keys(), row
        assert row["requests"] > 0
        assert row["errors"] == 0, f"{row['server']} answered errors: {row['status']}"
    assert doc["targets"][0]["target"].startswith("project /predict p99 at concurrency 8")
    cpu = doc["targets"][1]
    assert cpu["target"].startswith("project server CPU per /predict at concurrency 1")
    assert cpu["value"] == rows[("project", 1)]["server_cpu_ms_per_request"] and cpu["limit"] == 2.5


def test_freshness_json(smoke_results):
    doc = load(smoke_results[0], "freshness")
    rows = {r["backup_interval_s"]: r for r in doc["results"]}
    assert set(rows) == {10, 1}
    for row in rows.values():
        assert row["trials"] == len(row["trial_details"]) >= 1
        assert {"median_s", "max_s", "min_s"} <= row.keys()
        for t in row["trial_details"]:
            assert t["served_version"] >= t["first_version_with_it"] >= 1, t
    assert len(doc["targets"]) == 2


def test_scaleout_json(smoke_results):
    doc = load(smoke_results[0], "scaleout")
    rows = {r["spec"]: r for r in doc["results"]}
    assert set(rows) == {"row-1", "row-2"}, list(rows)
    for row in rows.values():
        assert "error" not in row, row
        assert {"records", "records_per_s", "acc_pass1", "acc_last_pass", "served_accuracy",
                "samples_seen", "seen_ratio", "merges", "merges_per_s", "redis_commands_per_s",
                "record_to_served_s", "taskmanagers_used"} <= row.keys(), row
        assert row["records"] == doc["parameters"]["records"]
        assert 0 <= row["acc_pass1"] <= 1 and 0 <= row["served_accuracy"] <= 1, row
        assert row["samples_seen"] > 0 and row["parallelism"] == int(row["spec"][-1]), row
    assert {t["target"] for t in doc["targets"]} == {
        "row N=4 served accuracy - N=1 (points)", "row N=4 last-pass accuracy - N=1 (points)",
        "batch N=4 served accuracy - N=1 (points)", "batch N=4 last-pass accuracy - N=1 (points)",
        "row N=2 / N=1 records/s"}


def test_handwriting_json(smoke_results):
    doc = load(smoke_results[0], "handwriting")
    results = doc["results"]
    assert {r["form"] for r in results["accuracy"]} == {"board", "cropped", "traced"}
    assert any(r["pipeline"].startswith("tutorial") for r in results["accuracy"])
    assert results["ablation"] and results["uncertainty"] and len(results["per_digit"]) == 10
    assert {"real handwriting, board form, test accuracy",
            "real handwriting, cropped form, test accuracy"} <= {t["target"] for t in doc["targets"]}
