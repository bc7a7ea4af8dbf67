"""The prediction server: a drawing board page and a JSON API over the newest model in Redis.

Flask application factory in the style of Flask's tutorial (flaskr): ``create_app()`` reads
:class:`~online_ml.config.Settings` from the environment, then a ``test_config`` mapping on top.
The parts: ``cache`` (the model cache and its announcement listener), ``predict`` (the board's
route), ``api`` (model, history, feedback), ``health`` (/healthz), ``metrics`` (Prometheus),
``errors`` (JSON errors), ``routes`` (the URL table).

Config keys (all optional in ``test_config``):

=========================  =================================================================
``SETTINGS``               a Settings instance (default ``Settings.from_env()``)
``REDIS_CLIENT``           a redis client to use instead of ``SETTINGS.redis_client()``
``VERSION_CHECK_INTERVAL`` seconds between version checks (default 0.5)
``REDIS_RETRY_INTERVAL``   seconds to wait after Redis failed before asking again (default 2)
``MAX_CONTENT_LENGTH``     request size limit in bytes (larger -> 413)
``WARM_UP``                render a tiny drawing at start so the first request is fast (True)
``LISTEN_FOR_ANNOUNCEMENTS`` subscribe to the store's new-version announcements (True)
``KAFKA_TIMEOUT``          seconds to wait for Kafka: feedback acks, health checks (default 5)
``HEALTH_CACHE_SECONDS``   how long a Kafka health answer is reused (default 2)
``FEEDBACK_SENDER``        a FeedbackSender to use instead of one built from SETTINGS
=========================  =================================================================

Routes: ``/`` (the board), ``POST /predict`` (the tutorial's, form field ``imgStr``),
``POST /api/feedback``, ``GET /api/feedback/<id>``, ``GET /api/model``,
``GET /api/metrics/history``, ``GET /healthz``, ``GET /metrics`` (Prometheus text format).
Every error is JSON ``{"success": false, "error": "..."}``.

An app starts a thread (the announcement listener) and may open a Kafka producer;
``app.extensions["online_ml"].close()`` stops both. It runs at interpreter exit for a real
server; tests call it when done with an app.
"""
from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from ..blas import limit_threads as limit_blas_threads
from ..config import Settings
from ..features import MAX_INPUT_CHARS, warm_up
from ..feedback import FeedbackSender
from ..feedback_limit import FeedbackLimit
from ..model_store import ModelStore
from .api import history_points
from .cache import NO_MODEL_MESSAGE, ModelCache, ModelUnavailable
from .errors import register_error_handlers
from .health import KafkaHealth
from .json_provider import OrjsonProvider
from .metrics import ServerMetrics, register_metrics_hooks
from .routes import bp

__all__ = ["DEFAULT_MAX_CONTENT_LENGTH", "NO_MODEL_MESSAGE", "AppResources", "KafkaHealth",
           "ModelCache", "ModelUnavailable", "ServerMetrics", "create_app", "history_points"]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Form encoding can grow base64 a little (%2B, %2F, %3D); leave room above the features limit.
DEFAULT_MAX_CONTENT_LENGTH = MAX_INPUT_CHARS * 3 // 2


class AppResources:
    """What an app started and must stop again: the listener thread, the Kafka producer.

    ``close()`` is idempotent and registered with ``atexit``; closing early (a test done with
    its app) also drops that registration, so closed apps are not kept alive until exit.
    """

    def __init__(self) -> None:
        self._closers: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self.closed = False
        atexit.register(self.close)

    def on_close(self, closer: Callable[[], None]) -> None:
        self._closers.append(closer)

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            closers, self._closers = self._closers, []
        atexit.unregister(self.close)
        for closer in reversed(closers):
            closer()


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the Flask app: config from Settings, then ``test_config`` on top."""
    app = Flask(__name__, template_folder=os.path.join(ROOT, "templates"),
                static_folder=os.path.join(ROOT, "static"))
    app.json = OrjsonProvider(app)  # the answers written by orjson: json_provider.py
    app.config.from_mapping(
        VERSION_CHECK_INTERVAL=0.5,
        REDIS_RETRY_INTERVAL=2.0,
        MAX_CONTENT_LENGTH=DEFAULT_MAX_CONTENT_LENGTH,
        WARM_UP=True,
        LISTEN_FOR_ANNOUNCEMENTS=True,
        KAFKA_TIMEOUT=5.0,
        HEALTH_CACHE_SECONDS=2.0,
    )
    if test_config is not None:
        app.config.update(test_config)
    if app.config.get("SETTINGS") is None:
        app.config["SETTINGS"] = Settings.from_env()
    # werkzeug also limits one form field's size (500 kB by default): keep one limit
    app.config.setdefault("MAX_FORM_MEMORY_SIZE", app.config["MAX_CONTENT_LENGTH"])
    settings: Settings = app.config["SETTINGS"]
    resources = app.extensions["online_ml"] = AppResources()

    client = app.config.get("REDIS_CLIENT")
    if client is None:
        # short timeouts: a dead Redis must not stall the page, the cache answers instead
        client = settings.redis_client(socket_connect_timeout=0.5, socket_timeout=1.0)
    store = ModelStore(client, prefix=settings.model_key, keep=settings.model_versions_kept)
    app.extensions["model_store"] = store
    cache = ModelCache(
        store, check_interval=float(app.config["VERSION_CHECK_INTERVAL"]),
        retry_interval=float(app.config["REDIS_RETRY_INTERVAL"]))
    app.extensions["model_cache"] = cache
    if app.config["LISTEN_FOR_ANNOUNCEMENTS"]:
        cache.listen_for_announcements()
        resources.on_close(cache.close)
    sender = app.config.get("FEEDBACK_SENDER")
    if sender is None:  # ours to close; one passed in belongs to the caller
        sender = FeedbackSender(settings.kafka_bootstrap_servers, settings.source_topic,
                                timeout=float(app.config["KAFKA_TIMEOUT"]))
        resources.on_close(sender.close)
    app.extensions["feedback_sender"] = sender
    app.extensions["feedback_limit"] = FeedbackLimit(
        client, settings.model_key, settings.feedback_limit, settings.feedback_window_seconds)
    app.extensions["kafka_health"] = KafkaHealth(
        settings.kafka_bootstrap_servers, timeout=min(2.0, float(app.config["KAFKA_TIMEOUT"])),
        cache_seconds=float(app.config["HEALTH_CACHE_SECONDS"]))
    app.extensions["server_metrics"] = ServerMetrics(cache, settings)

    if settings.trusted_proxies:  # the client's address from the proxies' X-Forwarded-For
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies)  # type: ignore[method-assign]
    app.register_blueprint(bp)
    register_error_handlers(app)
    register_metrics_hooks(app)
    limit_blas_threads(settings.blas_threads)  # online_ml/blas.py: halves a request's CPU
    if app.config["WARM_UP"]:
        warm_up()
    return app
