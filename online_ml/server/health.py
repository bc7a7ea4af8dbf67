"""``GET /healthz``: are Redis and Kafka reachable? 200 when both are, 503 otherwise.

It also says whether the model still learns (``training``: the job watcher's view of the
training job, see ``online_ml.training_state``) and how old the newest model is. Those do not
change the status code: a server whose model no longer learns can still serve it.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from flask import current_app, jsonify

from .. import training_state
from ..feedback import kafka_status
from ..model_store import ModelStore
from .cache import ModelCache, redis_errors, redis_unreachable


class KafkaHealth:
    """Kafka reachability for /healthz, asked at most once per ``cache_seconds``."""

    def __init__(self, bootstrap_servers: str, timeout: float = 2.0, cache_seconds: float = 2.0,
                 clock=time.monotonic):
        self.bootstrap_servers = bootstrap_servers
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._answer: tuple[bool, str] | None = None
        self._until = 0.0

    def get(self) -> tuple[bool, str]:
        with self._lock:  # one check at a time; concurrent callers get its answer
            now = self.clock()
            if self._answer is None or now >= self._until:
                self._answer = kafka_status(self.bootstrap_servers, self.timeout)
                self._until = self.clock() + self.cache_seconds
            return self._answer


def healthz():
    """Are Redis and Kafka reachable? 200 when both are, 503 otherwise, JSON with each."""
    store: ModelStore = current_app.extensions["model_store"]
    cache: ModelCache = current_app.extensions["model_cache"]
    cached = cache.current
    body: dict[str, Any] = {"serving_version": cached.version if cached else None}
    problems = []
    meta = cached.meta if cached else None
    try:
        store.r.ping()
        meta = store.load_meta()
        body["model_version"] = int(meta["version"]) if meta and meta.get("version") else None
        body["redis"] = "ok"
    except redis_errors() as exc:
        body["redis"] = "unreachable"
        problems.append(redis_unreachable(exc))
    training = training_state.summary(store if not problems else None, meta,
                                      current_app.config["SETTINGS"])
    body["training"] = training["training"]
    body["model_age_seconds"] = training["model_age_seconds"]
    kafka_ok, detail = current_app.extensions["kafka_health"].get()
    body["kafka"] = "ok" if kafka_ok else "unreachable"
    if not kafka_ok:
        problems.append(detail)
    body["success"] = not problems
    if problems:
        body["error"] = "; ".join(problems)
        return jsonify(body), 503
    return jsonify(body)
