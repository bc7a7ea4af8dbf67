"""The JSON API under ``/api``: the newest model, the metric history, the user's feedback.

``GET /api/model`` and ``GET /api/metrics/history`` feed the page's model panel and charts;
``POST /api/feedback`` sends the user's label to Kafka as a training record and
``GET /api/feedback/<id>`` tells the page when a model that trained on it is live.
"""
from __future__ import annotations

import re
import time
from typing import Any

import numpy as np
from flask import current_app, jsonify, request

from .. import training_state
from ..features import FeatureError, InputTooLarge, image_to_features
from ..feedback import FeedbackSender, KafkaUnavailable
from ..feedback_limit import FeedbackLimit, FeedbackLimited
from ..model_store import HISTORY_LENGTH, ModelStore
from ..schema import BadRecord, encode_record
from .cache import NO_MODEL_MESSAGE, ModelCache, redis_errors, redis_unreachable
from .errors import error
from .metrics import server_metrics


def model_summary(meta: dict | None) -> dict[str, Any]:
    """What the page shows about a model: version, samples trained, accuracies, age."""
    if not meta:
        return {}
    out = {k: meta.get(k) for k in ("samples_seen", "accuracy", "rolling_accuracy",
                                     "rolling_window", "saved_at", "feedback_seen",
                                     "learners", "contributors")
           if meta.get(k) is not None}
    saved_at = meta.get("saved_at")
    if isinstance(saved_at, (int, float)):
        out["age_seconds"] = round(max(0.0, time.time() - saved_at), 1)
    return out


def model_meta():
    """Metadata of the newest model (null when there is none yet), and whether it still learns:
    the training fields of :func:`online_ml.training_state.summary` (``training``,
    ``training_since``, ``training_action``, ``model_age_seconds``, ``records_age_seconds``,
    ``training_problem``: why the board shows its banner, or null)."""
    cache: ModelCache = current_app.extensions["model_cache"]
    store: ModelStore = current_app.extensions["model_store"]
    settings = current_app.config["SETTINGS"]
    try:
        meta = store.load_meta()
    except redis_errors() as exc:
        cached = cache.current
        if cached is None:
            return error(redis_unreachable(exc), 503)
        return jsonify(success=True, model=cached.meta, stale=True,
                       serving_version=cached.version,
                       age_seconds=model_summary(cached.meta).get("age_seconds"),
                       **training_state.summary(store, cached.meta, settings))
    cached = cache.current
    body: dict[str, Any] = {"success": True, "model": meta,
                            "serving_version": cached.version if cached else None}
    if meta is None:
        body["message"] = NO_MODEL_MESSAGE
    else:
        body["age_seconds"] = model_summary(meta).get("age_seconds")
    body.update(training_state.summary(store, meta, settings))
    return jsonify(body)


# -- monitoring -----------------------------------------------------------------------------------
HISTORY_FIELDS = ("time", "version", "samples_seen", "accuracy", "rolling_accuracy",
                  "feedback_seen")
DEFAULT_HISTORY_POINTS = 500


def history_points(rows: list[dict]) -> list[dict]:
    """Chartable points from the store's snapshots (oldest first), with throughput.

    Throughput is records/s between consecutive snapshots: the difference of ``samples_seen``
    over the difference of their save times. Undefined (None) for the first point, and across a
    restart from scratch or a rollback, where ``samples_seen`` goes down.

    >>> [p["throughput"] for p in history_points([{"time": 10, "samples_seen": 100},
    ...                                           {"time": 20, "samples_seen": 150},
    ...                                           {"time": 30, "samples_seen": 0}])]
    [None, 5.0, None]
    """
    points = []
    previous = None
    for row in rows:
        point = {k: row.get(k) for k in HISTORY_FIELDS}
        throughput = None
        try:
            if previous is not None:
                dt = float(row["time"]) - float(previous["time"])
                dn = float(row["samples_seen"]) - float(previous["samples_seen"])
                if dt > 0 and dn >= 0:
                    throughput = round(dn / dt, 3)
        except (KeyError, TypeError, ValueError):
            throughput = None
        point["throughput"] = throughput
        points.append(point)
        previous = row
    return points


class _BadArgument(ValueError):
    pass


def _number_arg(name: str, kind, default, low=None, high=None):
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise _BadArgument(f"query parameter {name}={raw!r} is not a valid {kind.__name__}") from None
    if (low is not None and value < low) or (high is not None and value > high):
        raise _BadArgument(f"query parameter {name}={raw!r} must be between {low} and {high}")
    return value


def metrics_history():
    """The model store's metric snapshots for the monitoring panel, oldest first.

    ``limit`` (default 500) caps the number of points; ``since`` (a snapshot ``time``) returns
    only newer points, so a page that polls gets a few points each time, not the whole history.
    """
    store: ModelStore = current_app.extensions["model_store"]
    try:
        limit = _number_arg("limit", int, DEFAULT_HISTORY_POINTS, 1, HISTORY_LENGTH)
        since = _number_arg("since", float, None, 0, 1e12)
    except _BadArgument as exc:
        return error(str(exc), 400)
    try:
        rows = None
        if since is not None:
            # polling: the few newest snapshots (plus one older, for the throughput) suffice
            few = store.history(min(limit + 1, 10))
            if few and float(few[0].get("time") or 0) <= since:
                rows = few
        if rows is None:
            rows = store.history(limit + 1)
    except redis_errors() as exc:
        return error(redis_unreachable(exc), 503)
    points = history_points(rows)
    if since is not None:
        points = [p for p in points if float(p.get("time") or 0) > since]
    points = points[-limit:]
    newest = rows[-1] if rows else {}
    body: dict[str, Any] = {
        "success": True,
        "history": points,
        "label_distribution": newest.get("label_distribution") or {},
        "rolling_window": newest.get("rolling_window"),
        "now": time.time(),
    }
    if not rows:
        body["message"] = NO_MODEL_MESSAGE
    return jsonify(body)


# -- feedback -------------------------------------------------------------------------------------
_FEEDBACK_ID = re.compile(r"^[0-9A-Za-z-]{1,100}$")


def feedback():
    """The user's label for a drawing -> a training record on the source topic.

    JSON ``{"imgStr": <data URL>, "label": 0..9}`` or ``{"x": [64 ints 0..16], "label": n}``.
    Answers ``{"success": true, "id": ...}`` once Kafka acknowledged the record; the page then
    polls ``GET /api/feedback/<id>`` until a model that trained on it is live. Past the client
    address's allowance (``FEEDBACK_LIMIT`` in ``FEEDBACK_WINDOW_SECONDS``, counted in Redis:
    online_ml/feedback_limit.py) 429 with ``Retry-After``, and nothing is sent.
    """
    metrics = server_metrics()

    def invalid(message: str, status: int = 400):
        metrics.feedback.labels("invalid").inc()
        return error(message, status)

    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return invalid('expected a JSON object {"imgStr": "data:image/svg+xml;base64,...", '
                       '"label": 0..9} (or "x": [64 integers 0..16] instead of imgStr)')
    label = body.get("label")
    if type(label) is not int or not 0 <= label <= 9:
        return invalid(f"label must be an integer 0..9, got {label!r}"[:120])
    has_img, has_x = body.get("imgStr") is not None, body.get("x") is not None
    if has_img == has_x:
        return invalid("give exactly one of imgStr (the drawing as a data URL) or x "
                       "(64 integers 0..16)")
    if has_img:
        if not isinstance(body["imgStr"], str):
            return invalid("imgStr must be a string: the drawing as a data URL")
        try:
            x = np.rint(image_to_features(body["imgStr"])).astype(int).tolist()
        except InputTooLarge as exc:
            return invalid(str(exc), 413)
        except FeatureError as exc:
            return invalid(str(exc))
    else:
        x = body["x"]
    try:
        encode_record(x, label)  # refused before it counts against the client's limit
    except BadRecord as exc:
        return invalid(str(exc))
    limit: FeedbackLimit = current_app.extensions["feedback_limit"]
    try:
        counted = limit.take(request.remote_addr or "unknown")
    except FeedbackLimited as exc:
        metrics.feedback.labels("limited").inc()
        response, status = error(str(exc), 429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response, status
    except redis_errors() as exc:
        metrics.feedback.labels("redis_unavailable").inc()
        return error("feedback not stored, try again later: the count of corrections per "
                     f"client is kept in Redis ({redis_unreachable(exc)})", 503)
    sender: FeedbackSender = current_app.extensions["feedback_sender"]
    try:
        record_id = sender.send(x, label)
    except KafkaUnavailable as exc:
        metrics.feedback.labels("kafka_unavailable").inc()
        try:
            limit.give_back(counted)
        except redis_errors():
            pass  # the count expires with its window
        return error(f"feedback not stored, try again later: {exc}", 503)
    metrics.feedback.labels("sent").inc()
    return jsonify(success=True, id=record_id, label=label, topic=sender.topic)


def feedback_status(record_id: str):
    """Is the newest model trained on feedback ``record_id``? (its id is in the model's
    ``recent_feedback_ids``, written by the job at each backup)."""
    if not _FEEDBACK_ID.match(record_id):
        return error("feedback id must be 1..100 letters, digits or '-'", 400)
    store: ModelStore = current_app.extensions["model_store"]
    try:
        meta = store.load_meta()
    except redis_errors() as exc:
        return error(redis_unreachable(exc), 503)
    ids = (meta or {}).get("recent_feedback_ids") or []
    included = isinstance(ids, list) and record_id in ids
    newest = int(meta["version"]) if meta and meta.get("version") else None
    return jsonify(success=True, id=record_id, included=included,
                   model_version=newest if included else None, newest_version=newest,
                   feedback_seen=(meta or {}).get("feedback_seen"))
