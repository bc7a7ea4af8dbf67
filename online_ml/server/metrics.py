"""Prometheus metrics: requests, latency, errors, predictions, feedback, the served model.

``GET /metrics`` answers in the Prometheus text format. Each app has a registry of its own, so
several apps in one process (as in the tests) do not share counters.
"""
from __future__ import annotations

import time

from flask import Flask, Response, current_app, g, request

from .. import training_state
from ..config import Settings
from .cache import ModelCache


def _age(meta: dict) -> float:
    saved_at = meta.get("saved_at")
    return max(0.0, time.time() - saved_at) if isinstance(saved_at, (int, float)) else 0.0


def _training_up(store, settings: Settings) -> float:
    """Read at each scrape: one GET of the watcher's record (0 when Redis cannot say)."""
    try:
        record = training_state.read(store)
    except Exception:
        return 0.0
    seen = training_state.view(record, time.time(), settings.watch_interval_seconds)
    return 1.0 if seen["training"] == training_state.RUNNING else 0.0


class ServerMetrics:
    """Prometheus metrics of one app, in a registry of its own (several apps in one process, as
    in the tests, must not share counters)."""

    def __init__(self, cache: ModelCache, settings: Settings | None = None):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "online_ml_http_requests", "HTTP requests answered, by route, method and status",
            ["endpoint", "method", "status"], registry=self.registry)
        self.errors = Counter(
            "online_ml_http_errors", "HTTP responses with status >= 400, by route and status",
            ["endpoint", "status"], registry=self.registry)
        self.exceptions = Counter(
            "online_ml_unhandled_exceptions", "exceptions that reached the catch-all handler "
            "(answered 500)", registry=self.registry)
        self.latency = Histogram(
            "online_ml_http_request_duration_seconds", "time to answer a request, by route",
            ["endpoint"], registry=self.registry,
            buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0))
        self.predictions = Counter(
            "online_ml_predictions", "predictions answered, by predicted digit", ["digit"],
            registry=self.registry)
        self.feedback = Counter(
            "online_ml_feedback", "feedback requests, by result (sent, invalid, limited, "
            "kafka_unavailable, redis_unavailable)",
            ["result"], registry=self.registry)
        version = Gauge("online_ml_model_version",
                        "version of the model being served (0: none loaded)",
                        registry=self.registry)
        version.set_function(lambda: cache.current.version if cache.current else 0)
        samples = Gauge("online_ml_model_samples_seen",
                        "records the served model was trained on", registry=self.registry)
        samples.set_function(
            lambda: float(cache.current.meta.get("samples_seen") or 0) if cache.current else 0)
        stale = Gauge("online_ml_model_stale",
                      "1 while answering with a cached model because Redis is unreachable",
                      registry=self.registry)
        stale.set_function(lambda: 1 if cache.stale else 0)
        age = Gauge("online_ml_model_age_seconds",
                    "seconds since the served model was saved by the job (0: none loaded)",
                    registry=self.registry)
        age.set_function(lambda: _age(cache.current.meta) if cache.current else 0)
        if settings is not None:
            up = Gauge("online_ml_training_up",
                       "1 while the job watcher reports the training job running; 0 when it is "
                       "not, or when no watcher reports (unknown)", registry=self.registry)
            up.set_function(lambda: _training_up(cache.store, settings))

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)
        if status >= 400:
            self.errors.labels(endpoint, str(status)).inc()

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def server_metrics() -> ServerMetrics:
    """The current app's metrics."""
    return current_app.extensions["server_metrics"]


def register_metrics_hooks(app: Flask) -> None:
    """Time and count every request, by route rule (``<unmatched>`` for a 404)."""
    metrics: ServerMetrics = app.extensions["server_metrics"]

    @app.before_request
    def start_timer():
        g.started = time.perf_counter()

    @app.after_request
    def count(response):
        started = g.pop("started", None)
        if started is not None:
            rule = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
            metrics.observe(rule, request.method, response.status_code,
                            time.perf_counter() - started)
        return response


def prometheus_metrics():
    """Prometheus text format: requests, latency, errors, the served model's version."""
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(server_metrics().render(), mimetype=None, content_type=CONTENT_TYPE_LATEST)
