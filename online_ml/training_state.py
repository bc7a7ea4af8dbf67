"""Is the model still learning? The training job's state, as the job watcher last saw it.

Why a record in Redis: the server (every replica, every worker process) and the board must tell
their users when training has stopped, but they should not each ask Flink's REST API, and after
a JobManager crash Flink itself no longer knows the job. The watcher (``online_ml.watcher``)
asks Flink every ``WATCH_INTERVAL_SECONDS`` and writes one JSON record under the model store's
``training_key()``; readers trust it only while it is fresh.

Public fields of the record (the rest is the watcher's memory)::

    {"state": "running", "job_id": "…", "since": 1700000000.0, "checked_at": 1700000012.0,
     "job_name": "Classifier Model Train", "action": null, "records_at": 1700000011.5}

``state`` is Flink's job state in lower case (``running``, ``restarting``, ``failed``,
``canceled``, …), ``absent`` when the cluster lists no job of that name (a JobManager that came
back empty), ``unreachable`` when Flink's REST API does not answer. ``action`` is
``"resubmitting"`` while the watcher brings the job back. ``records_at`` is when the source
topic last grew (the watcher reads its end offsets), so a reader can tell "the model is old
because nothing arrives" from "the model is old although records keep arriving".

>>> view({"state": "running", "checked_at": 100.0, "since": 50.0}, now=104.0, interval=2.0)["training"]
'running'
>>> view({"state": "running", "checked_at": 100.0}, now=107.0, interval=2.0)["training"]  # > 3 intervals
'unknown'
>>> problem("absent", model_age=5.0, records_age=1.0, backup_interval=10.0)
'not_running'
>>> problem("running", model_age=45.0, records_age=1.0, backup_interval=10.0)
'model_stale'
>>> problem("running", model_age=45.0, records_age=60.0, backup_interval=10.0) is None  # no input
True
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any

log = logging.getLogger(__name__)

RUNNING = "running"
ABSENT = "absent"
UNREACHABLE = "unreachable"
UNKNOWN = "unknown"
RESUBMITTING = "resubmitting"
#: A record older than this many watch intervals is not believed (the watcher is gone or stuck).
FRESH_INTERVALS = 3
#: A model older than this many backup intervals while records arrive: training has stalled.
STALE_BACKUPS = 3


def read(store) -> dict | None:
    """The watcher's record from the store's Redis (None when there is none or it is not JSON).
    Redis errors propagate: the caller decides what an unreachable Redis means."""
    raw = store.r.get(store.training_key())
    if raw is None:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        log.error("the training record under %s is not JSON; ignoring it", store.training_key())
        return None
    return record if isinstance(record, dict) else None


def write(store, record: dict) -> None:
    store.r.set(store.training_key(), json.dumps(record, sort_keys=True))


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def view(record: dict | None, now: float, interval: float) -> dict[str, Any]:
    """What readers show: ``training`` (the state, or ``unknown`` when the record is missing or
    older than :data:`FRESH_INTERVALS` watch intervals), when that state began, the watcher's
    current action, and how long ago the source topic last grew (None when not known)."""
    checked_at = _number((record or {}).get("checked_at"))
    if record is None or checked_at is None or now - checked_at > FRESH_INTERVALS * interval:
        return {"training": UNKNOWN, "training_since": None, "training_action": None,
                "records_age_seconds": None}
    records_at = _number(record.get("records_at"))
    return {
        "training": str(record.get("state") or UNKNOWN),
        "training_since": _number(record.get("since")),
        "training_action": record.get("action"),
        "records_age_seconds": None if records_at is None else round(max(0.0, now - records_at), 1),
    }


def problem(state: str, model_age: float | None, records_age: float | None,
            backup_interval: float) -> str | None:
    """Why the board should warn its user, or None.

    ``not_running``: the watcher says the job is not running (``unknown`` is not enough: without
    a watcher, e.g. the tutorial's commands by hand, the page would warn forever).
    ``model_stale``: the newest model is older than :data:`STALE_BACKUPS` backup intervals while
    the source topic grew within that time: records arrive, but nothing learns from them.
    """
    if state not in (RUNNING, UNKNOWN):
        return "not_running"
    window = STALE_BACKUPS * backup_interval
    if model_age is not None and model_age > window and records_age is not None \
            and records_age <= window:
        return "model_stale"
    return None


def summary(store, meta: dict | None, settings, now: float | None = None) -> dict[str, Any]:
    """The training fields of ``/healthz`` and ``/api/model``: the state (``unknown`` also when
    Redis cannot be read; ``store=None``: known to be unreachable), the newest model's age, and
    the board's warning (``training_problem``)."""
    now = time.time() if now is None else now
    record = None
    try:
        record = read(store) if store is not None else None
    except Exception as exc:  # Redis down: the caller reports Redis itself
        log.debug("training state unavailable: %s", exc)
    out = view(record, now, settings.watch_interval_seconds)
    saved_at = _number((meta or {}).get("saved_at"))
    model_age = None if saved_at is None else round(max(0.0, now - saved_at), 1)
    out["model_age_seconds"] = model_age
    out["training_problem"] = problem(out["training"], model_age, out["records_age_seconds"],
                                      settings.backup_interval_seconds)
    return out
