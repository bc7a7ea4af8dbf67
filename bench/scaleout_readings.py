"""What bench/scaleout.py reads while a variant runs and after: Redis's command count and the
served sync round, which TaskManagers a job's subtasks use, the served metadata once it settles,
the sink's records and their prequential accuracy per pass, the probe record (record -> served
model), the served model's accuracy on digits; and the extra TaskManagers it starts and stops.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import common

from online_ml.config import Settings
from online_ml.harness.flink import FlinkJobs
from online_ml.harness.kafka import TopicReader
from online_ml.harness.paths import ROOT
from online_ml.harness.stack import pid_alive, stack_script
from online_ml.model_store import ModelStore

RECORD_IDS = "scaleout"  # the preloaded records' ids: scaleout-<place in the producer's sequence>
PROBE_PREFIX = "bench-probe-"  # ids of the probe records (record -> served model)


# -- Redis and Flink readings -----------------------------------------------------------------------
def redis_commands(client) -> int:
    """Commands the Redis server processed so far (all clients, all databases)."""
    return int(client.info("stats")["total_commands_processed"])


def sync_round(client, store: ModelStore) -> int:
    return int(client.get(store.sync_key("round")) or 0)


def taskmanagers_used(flink: FlinkJobs, job: str) -> int | None:
    """How many TaskManagers the job's subtasks run on (REST: each subtask's taskmanager-id)."""
    try:
        ids = set()
        for vertex in flink.job(job)["vertices"]:
            detail = flink._call(f"/jobs/{job}/vertices/{vertex['id']}")
            ids |= {s.get("taskmanager-id") or s.get("host", "") for s in detail["subtasks"]}
        return len(ids - {""}) or None
    except Exception:
        return None


def settled_meta(store: ModelStore, quiet: float, timeout: float) -> dict | None:
    """The served metadata once ``samples_seen`` has not changed for ``quiet`` seconds (the
    cancelled job's learners hand over and the last one publishes after the job stopped)."""
    last: tuple | None = None
    since = time.monotonic()
    deadline = since + timeout
    meta = None
    while time.monotonic() < deadline:
        meta = store.load_meta()
        now = (meta or {}).get("samples_seen"), (meta or {}).get("version")
        if now != last:
            last, since = now, time.monotonic()
        elif meta is not None and time.monotonic() - since >= quiet:
            return meta
        time.sleep(0.5)
    return meta


# -- what the sink says ---------------------------------------------------------------------------
def sink_records(reader: TopicReader, count: int) -> list[tuple[int, int, int | None, int, int]]:
    """(timestamp ms, offset, predict_y, actual_y, n) of the sink records of the preloaded source
    records (not the probes), in timestamp order; ``n`` is the record's place in the producer's
    sequence (its id ``<RECORD_IDS>-<n>``, ``kafka_producer.py --ids``)."""
    out = []
    for rec in reader.read(0, count, timeout=120):
        try:
            doc = json.loads(rec.value)
            prefix, _, n = str(doc.get("id", "")).rpartition("-")
            if prefix != RECORD_IDS:
                continue  # a probe
            out.append((rec.timestamp, rec.offset, doc.get("predict_y"), doc["actual_y"], int(n)))
        except (ValueError, KeyError, TypeError):
            continue
    return sorted(out)


def pass_accuracies(recs: list[tuple]) -> list[float | None]:
    """Prequential accuracy of each pass over digits, each record counted in the pass it was
    produced in (its place in the producer's sequence // 1,797). Cutting the sink's time order
    into blocks of 1,797 instead mixed the passes at N > 1: a learner faster than the others
    reaches pass 3 of its partitions while they are still in pass 2, and in batch mode a
    learner's predictions leave together at the end of its Arrow batch.

    >>> pass_accuracies([(0, 0, 1, 1, 0), (1, 1, 2, 2, 1797), (2, 2, 0, 1, 5)])
    [0.5, 1.0]
    """
    by_pass: list[list[tuple]] = []
    for r in recs:
        k = r[4] // common.EPOCH
        while len(by_pass) <= k:
            by_pass.append([])
        by_pass[k].append((r[2], r[3]))
    return [common.accuracy(pairs) for pairs in by_pass]


def send_probe(settings: Settings, topic: str, seed: int) -> tuple[str, float]:
    """One labelled record with an id, as the board's feedback sends it: (id, time sent)."""
    from online_ml.harness.kafka import produce
    from online_ml.producer import iter_records
    from online_ml.schema import encode_record

    fid = f"{PROBE_PREFIX}{uuid.uuid4().hex[:12]}"
    x, y = next(iter_records(seed=seed, epochs=1))
    sent = time.time()
    produce(settings.kafka_bootstrap_servers, topic,
            [encode_record(x, y, source="feedback", id=fid)])
    return fid, sent


def served_accuracy(store: ModelStore) -> float | None:
    from sklearn.datasets import load_digits

    stored = store.load()
    if stored is None:
        return None
    X, y = load_digits(return_X_y=True)
    return round(float((stored.model.predict(X) == y).mean()), 4)


# -- TaskManagers ---------------------------------------------------------------------------------
def start_taskmanagers(k: int) -> list[str]:
    """``TASKMANAGERS=k stack/up.sh flink``; returns the TaskManagers this started."""
    names = [f"flink-taskmanager-{i}" for i in range(2, k + 1)]
    missing = [n for n in names if not pid_alive(n)]
    common.progress(f"scaleout: TASKMANAGERS={k} stack/up.sh flink"
                    + (f" (starts {', '.join(missing)})" if missing else " (already running)"))
    done = subprocess.run(["bash", str(ROOT / "stack" / "up.sh"), "flink"], cwd=ROOT,
                          env=dict(os.environ, TASKMANAGERS=str(k)), capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"TASKMANAGERS={k} stack/up.sh flink failed ({done.returncode}):\n"
                           f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return missing


def spreads_slots(flink: FlinkJobs) -> bool | None:
    """Whether the running JobManager spreads a job's slots over the TaskManagers
    (``taskmanager.load-balance.mode``, read at its start: stack/flink/config.yaml)."""
    try:
        config = {e["key"]: e["value"] for e in flink._call("/jobmanager/config")}
    except Exception:
        return None
    return config.get("taskmanager.load-balance.mode", "").upper() in ("SLOTS", "TASKS")


def stop_taskmanagers(names: list[str]) -> None:
    if names:
        common.progress(f"scaleout: stack/down.sh {' '.join(names)}")
        done = stack_script("down.sh", *names)
        if done.returncode != 0:
            common.log.warning("stack/down.sh %s failed: %s", names, done.stderr[-1000:])
