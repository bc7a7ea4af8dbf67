"""Measurements a fault test takes, kept for the benchmark that aggregates them.

Why: the recovery figures in the README (how long until the job runs again after a TaskManager,
Kafka or JobManager fault, records lost, duplicates) come from the fault tests themselves, run
several times by ``bench/recovery.py``. A test calls :func:`record`; with
``ONLINE_ML_MEASUREMENTS`` set to a file, each call appends one JSON line to it (with the load
average), otherwise it does nothing.

>>> import json, os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "m.jsonl")
>>> os.environ["ONLINE_ML_MEASUREMENTS"] = path
>>> record("taskmanager_kill", running_s=12.5)
>>> json.loads(open(path).read())["running_s"]
12.5
>>> del os.environ["ONLINE_ML_MEASUREMENTS"]
>>> record("taskmanager_kill", running_s=1.0)  # nothing to write to: nothing happens
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

VARIABLE = "ONLINE_ML_MEASUREMENTS"


def record(kind: str, **values: Any) -> None:
    """Append ``{"kind": kind, **values, "load", "at"}`` to the file ``ONLINE_ML_MEASUREMENTS``
    names, if it does."""
    path = os.environ.get(VARIABLE)
    if not path:
        return
    line = dict(kind=kind, **values, load=round(os.getloadavg()[0], 1), at=time.time())
    with open(Path(path), "a") as f:
        f.write(json.dumps(line) + "\n")


def read(path: Path) -> list[dict]:
    """Every measurement in ``path`` (none if it does not exist)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
