"""The prediction server: a drawing board page and a JSON API over the newest model in Redis.

Flask application factory in the style of Flask's tutorial (flaskr): ``create_app()`` reads
:class:`~online_ml.config.Settings` from the environment, then a ``test_config`` mapping on top.

Why a model cache: the job backs the model up every 10 s, but a page may predict many times a
second. Each request does at most one cheap ``GET`` of the metadata (and not even that if the
last check is younger than ``VERSION_CHECK_INTERVAL``); the model blob is loaded only when the
version changed. If Redis goes away, the last good model keeps answering, flagged
``"stale": true``, instead of the page going dead.

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
"""
from __future__ import annotations

import atexit
import logging
import os
import re
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from flask import Blueprint, Flask, Response, current_app, g, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .config import Settings
from .features import MAX_INPUT_CHARS, FeatureError, InputTooLarge, image_to_features, warm_up
from .feedback import FeedbackSender, KafkaUnavailable, kafka_status
from .model_store import HISTORY_LENGTH, ModelFormatError, ModelStore, StoredModel
from .schema import BadRecord

log = logging.getLogger(__name__)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_MODEL_MESSAGE = ("no model yet: start the training job "
                    "(flink run -m localhost:8081 -py stream.py)")
# Form encoding can grow base64 a little (%2B, %2F, %3D); leave room above the features limit.
DEFAULT_MAX_CONTENT_LENGTH = MAX_INPUT_CHARS * 3 // 2

bp = Blueprint("board", __name__)


class ModelUnavailable(Exception):
    """No model can be served right now; the message tells the user why (503)."""


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.RedisError, OSError)


class ModelCache:
    """The newest model from a ModelStore, kept in memory and reloaded only on a new version.

    Thread-safe: the development server answers requests in threads.
    """

    def __init__(self, store: ModelStore, check_interval: float = 0.5,
                 retry_interval: float = 2.0, clock=time.monotonic):
        self.store = store
        self.check_interval = check_interval
        self.retry_interval = retry_interval
        self.clock = clock
        self._lock = threading.Lock()
        self._current: StoredModel | None = None
        self._next_check = 0.0
        self._stale = False
        self._problem = ""  # why the answer is stale
        self._bad_key: tuple | None = None  # (version, saved_at) of a blob that failed to load

    @property
    def current(self) -> StoredModel | None:
        return self._current

    @property
    def stale(self) -> bool:
        return self._stale

    def get(self) -> tuple[StoredModel, bool]:
        """(model, stale). Raises ModelUnavailable when there is nothing to serve."""
        with self._lock:
            now = self.clock()
            if self._current is not None and now < self._next_check:
                return self._current, self._stale
            try:
                # one GET, like current_version(); the save time also tells apart a version
                # number reused after Redis restarted empty
                meta = self.store.load_meta()
            except _redis_errors() as exc:
                return self._redis_down(exc, now)
            if not meta or int(meta.get("version", 0)) == 0:
                if self._current is not None:
                    log.warning("the model was removed from Redis; no longer serving version %s",
                                self._current.version)
                self._current, self._stale = None, False
                self._next_check = now + self.check_interval
                raise ModelUnavailable(NO_MODEL_MESSAGE)
            self._next_check = now + self.check_interval
            if self._current is None or _model_key(meta) != _model_key(self._current.meta):
                if _model_key(meta) != self._bad_key:
                    self._load(meta, now)
                elif self._current is None:
                    raise ModelUnavailable(f"{self._problem}; waiting for a newer model")
            else:
                self._stale, self._problem = False, ""
            if self._current is None:  # _load failed and said why
                raise ModelUnavailable(self._problem or NO_MODEL_MESSAGE)
            return self._current, self._stale

    def _load(self, meta: dict, now: float) -> None:
        version = meta.get("version")
        try:
            stored = self.store.load()
        except _redis_errors() as exc:
            self._redis_down(exc, now)  # raises when there is no model, else marks stale
            return
        except ModelFormatError as exc:
            log.error("stored model version %s cannot be loaded: %s", version, exc)
            self._bad_key = _model_key(meta)
            self._problem = f"the stored model (version {version}) cannot be loaded: {exc}"
            if self._current is None:
                raise ModelUnavailable(self._problem) from None
            self._stale = True
            return
        if stored is None:  # removed between the version check and the load
            self._current, self._stale = None, False
            raise ModelUnavailable(NO_MODEL_MESSAGE)
        previous = self._current.version if self._current else None
        self._current, self._stale, self._problem = stored, False, ""
        log.info("loaded model version %s (was %s)", stored.version, previous)

    def listen_for_announcements(self) -> threading.Thread:
        """Subscribe to the store's announcements, so a new version is loaded on the very next
        request instead of after the next periodic check (freshness). Runs in a daemon thread;
        while Redis is unreachable it retries, and the periodic check still works."""
        def run() -> None:
            delay = 1.0
            while True:
                pubsub = None
                try:
                    pubsub = self.store.r.pubsub(ignore_subscribe_messages=True)
                    pubsub.subscribe(self.store.channel)
                    delay = 1.0
                    while True:
                        if pubsub.get_message(timeout=1.0) is not None:
                            self._next_check = 0.0  # the next get() asks Redis
                except Exception as exc:  # Redis down or restarted: subscribe again later
                    log.debug("model announcements unavailable (%s); retrying in %.0f s",
                              exc, delay)
                finally:
                    if pubsub is not None:
                        try:
                            pubsub.close()
                        except Exception:
                            pass
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

        thread = threading.Thread(target=run, name="model-announcements", daemon=True)
        thread.start()
        return thread

    def _redis_down(self, exc: BaseException, now: float) -> tuple[StoredModel, bool]:
        self._next_check = now + self.retry_interval
        self._problem = f"Redis is unreachable ({exc.__class__.__name__}: {exc})"
        if self._current is None:
            log.warning("no model to serve: %s", self._problem)
            raise ModelUnavailable(f"no model available: {self._problem}") from None
        if not self._stale:
            log.warning("serving cached model version %s: %s", self._current.version,
                        self._problem)
        self._stale = True
        return self._current, True


def _model_key(meta: dict) -> tuple:
    """Identity of a stored model: the version, and the save time because a Redis restarted
    without persistence starts counting versions at 1 again."""
    return meta.get("version"), meta.get("saved_at")


class ServerMetrics:
    """Prometheus metrics of one app, in a registry of its own (several apps in one process, as
    in the tests, must not share counters)."""

    def __init__(self, cache: ModelCache):
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
            "online_ml_feedback", "feedback requests, by result (sent, invalid, kafka_unavailable)",
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

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)
        if status >= 400:
            self.errors.labels(endpoint, str(status)).inc()

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the Flask app: config from Settings, then ``test_config`` on top."""
    app = Flask(__name__, template_folder=os.path.join(ROOT, "templates"),
                static_folder=os.path.join(ROOT, "static"))
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
    sender = app.config.get("FEEDBACK_SENDER")
    if sender is None:
        sender = FeedbackSender(settings.kafka_bootstrap_servers, settings.source_topic,
                                timeout=float(app.config["KAFKA_TIMEOUT"]))
        atexit.register(sender.close)
    app.extensions["feedback_sender"] = sender
    app.extensions["kafka_health"] = KafkaHealth(
        settings.kafka_bootstrap_servers, timeout=min(2.0, float(app.config["KAFKA_TIMEOUT"])),
        cache_seconds=float(app.config["HEALTH_CACHE_SECONDS"]))
    app.extensions["server_metrics"] = ServerMetrics(cache)

    app.register_blueprint(bp)
    _register_error_handlers(app)
    _register_metrics_hooks(app)
    if app.config["WARM_UP"]:
        warm_up()
    return app


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


def _register_metrics_hooks(app: Flask) -> None:
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


def _error(message: str, status: int):
    return jsonify(success=False, error=message), status


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc):
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        return _error(f"request too large (limit {limit} bytes)", 413)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return _error(f"{exc.name}: {exc.description}", exc.code or 500)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        app.extensions["server_metrics"].exceptions.inc()
        log.exception("unexpected error on %s %s", request.method, request.path)
        return _error("internal server error; see the server log", 500)


# -- routes ----------------------------------------------------------------------------------------
@bp.get("/")
def index():
    settings: Settings = current_app.config["SETTINGS"]
    return render_template("index.html", flink_url=settings.flink_rest_url)


def _image_field() -> str | None:
    if request.is_json:
        body = request.get_json(silent=True)
        if isinstance(body, dict) and isinstance(body.get("imgStr"), str):
            return body["imgStr"]
        return None
    return request.form.get("imgStr")


def _predict(model: Any, x: np.ndarray, k: int = 3) -> tuple[int, list[dict] | None]:
    """The predicted digit and the top-k class probabilities, when the model has them (SGD with
    hinge loss has not). One scoring pass: the digit is the most probable class."""
    try:
        proba = model.predict_proba(x)[0]
    except (AttributeError, NotImplementedError):
        return int(model.predict(x)[0]), None
    order = np.argsort(proba)[::-1][:k]
    classes = getattr(model, "classes_", np.arange(len(proba)))
    return int(classes[order[0]]), [{"digit": int(classes[i]), "p": round(float(proba[i]), 4)}
                                    for i in order]


def _model_summary(meta: dict | None) -> dict[str, Any]:
    """What the page shows about a model: version, samples trained, accuracies, age."""
    if not meta:
        return {}
    out = {k: meta.get(k) for k in ("samples_seen", "accuracy", "rolling_accuracy",
                                     "rolling_window", "saved_at", "feedback_seen")
           if meta.get(k) is not None}
    saved_at = meta.get("saved_at")
    if isinstance(saved_at, (int, float)):
        out["age_seconds"] = round(max(0.0, time.time() - saved_at), 1)
    return out


@bp.post("/predict")
def predict():
    data = _image_field()
    if not data:
        return _error("missing form field imgStr: the drawing as a data URL "
                      "(data:image/svg+xml;base64,...)", 400)
    started = time.perf_counter()
    try:
        features = image_to_features(data)
    except InputTooLarge as exc:
        return _error(str(exc), 413)
    except FeatureError as exc:
        log.info("bad drawing: %s", exc)
        return _error(str(exc), 400)
    feature_ms = (time.perf_counter() - started) * 1000

    try:
        stored, stale = current_app.extensions["model_cache"].get()
    except ModelUnavailable as exc:
        return _error(str(exc), 503)

    x = features.reshape(1, -1)
    expected = getattr(stored.model, "n_features_in_", x.shape[1])
    if expected != x.shape[1]:
        log.error("model version %s expects %s features, not %s", stored.version, expected,
                  x.shape[1])
        return _error(f"the stored model expects {expected} features, the board gives "
                      f"{x.shape[1]}", 500)
    digit, probabilities = _predict(stored.model, x)
    answer: dict[str, Any] = {
        "success": True,
        "predict_result": digit,
        "model_version": stored.version,
        "samples_seen": stored.meta.get("samples_seen"),
    }
    if probabilities is not None:
        answer["probabilities"] = probabilities
    for key, value in _model_summary(stored.meta).items():
        answer.setdefault(key, value)
    if stale:
        answer["stale"] = True
    current_app.extensions["server_metrics"].predictions.labels(str(answer["predict_result"])).inc()
    log.info("predicted %s with model version %s (features %.1f ms)%s", answer["predict_result"],
             stored.version, feature_ms, " [stale]" if stale else "")
    return jsonify(answer)


@bp.get("/api/model")
def model_meta():
    """Metadata of the newest model (null when there is none yet)."""
    cache: ModelCache = current_app.extensions["model_cache"]
    store: ModelStore = current_app.extensions["model_store"]
    try:
        meta = store.load_meta()
    except _redis_errors() as exc:
        cached = cache.current
        if cached is None:
            return _error(f"Redis is unreachable ({exc.__class__.__name__}: {exc})", 503)
        return jsonify(success=True, model=cached.meta, stale=True,
                       serving_version=cached.version,
                       age_seconds=_model_summary(cached.meta).get("age_seconds"))
    cached = cache.current
    body: dict[str, Any] = {"success": True, "model": meta,
                            "serving_version": cached.version if cached else None}
    if meta is None:
        body["message"] = NO_MODEL_MESSAGE
    else:
        body["age_seconds"] = _model_summary(meta).get("age_seconds")
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


class _BadArgument(ValueError):
    pass


@bp.get("/api/metrics/history")
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
        return _error(str(exc), 400)
    try:
        rows = None
        if since is not None:
            # polling: the few newest snapshots (plus one older, for the throughput) suffice
            few = store.history(min(limit + 1, 10))
            if few and float(few[0].get("time") or 0) <= since:
                rows = few
        if rows is None:
            rows = store.history(limit + 1)
    except _redis_errors() as exc:
        return _error(f"Redis is unreachable ({exc.__class__.__name__}: {exc})", 503)
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


@bp.get("/metrics")
def prometheus_metrics():
    """Prometheus text format: requests, latency, errors, the served model's version."""
    from prometheus_client import CONTENT_TYPE_LATEST

    metrics: ServerMetrics = current_app.extensions["server_metrics"]
    return Response(metrics.render(), mimetype=None, content_type=CONTENT_TYPE_LATEST)


@bp.get("/healthz")
def healthz():
    """Are Redis and Kafka reachable? 200 when both are, 503 otherwise, JSON with each."""
    store: ModelStore = current_app.extensions["model_store"]
    cache: ModelCache = current_app.extensions["model_cache"]
    cached = cache.current
    body: dict[str, Any] = {"serving_version": cached.version if cached else None}
    problems = []
    try:
        store.r.ping()
        body["model_version"] = store.current_version() or None
        body["redis"] = "ok"
    except _redis_errors() as exc:
        body["redis"] = "unreachable"
        problems.append(f"Redis is unreachable ({exc.__class__.__name__}: {exc})")
    kafka_ok, detail = current_app.extensions["kafka_health"].get()
    body["kafka"] = "ok" if kafka_ok else "unreachable"
    if not kafka_ok:
        problems.append(detail)
    body["success"] = not problems
    if problems:
        body["error"] = "; ".join(problems)
        return jsonify(body), 503
    return jsonify(body)


# -- feedback -------------------------------------------------------------------------------------
_FEEDBACK_ID = re.compile(r"^[0-9A-Za-z-]{1,100}$")


@bp.post("/api/feedback")
def feedback():
    """The user's label for a drawing -> a training record on the source topic.

    JSON ``{"imgStr": <data URL>, "label": 0..9}`` or ``{"x": [64 ints 0..16], "label": n}``.
    Answers ``{"success": true, "id": ...}`` once Kafka acknowledged the record; the page then
    polls ``GET /api/feedback/<id>`` until a model that trained on it is live.
    """
    metrics: ServerMetrics = current_app.extensions["server_metrics"]
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        metrics.feedback.labels("invalid").inc()
        return _error('expected a JSON object {"imgStr": "data:image/svg+xml;base64,...", '
                      '"label": 0..9} (or "x": [64 integers 0..16] instead of imgStr)', 400)
    label = body.get("label")
    if type(label) is not int or not 0 <= label <= 9:
        metrics.feedback.labels("invalid").inc()
        return _error(f"label must be an integer 0..9, got {label!r}"[:120], 400)
    has_img, has_x = body.get("imgStr") is not None, body.get("x") is not None
    if has_img == has_x:
        metrics.feedback.labels("invalid").inc()
        return _error("give exactly one of imgStr (the drawing as a data URL) or x "
                      "(64 integers 0..16)", 400)
    if has_img:
        if not isinstance(body["imgStr"], str):
            metrics.feedback.labels("invalid").inc()
            return _error("imgStr must be a string: the drawing as a data URL", 400)
        try:
            x = np.rint(image_to_features(body["imgStr"])).astype(int).tolist()
        except InputTooLarge as exc:
            metrics.feedback.labels("invalid").inc()
            return _error(str(exc), 413)
        except FeatureError as exc:
            metrics.feedback.labels("invalid").inc()
            return _error(str(exc), 400)
    else:
        x = body["x"]
    sender: FeedbackSender = current_app.extensions["feedback_sender"]
    try:
        record_id = sender.send(x, label)
    except BadRecord as exc:
        metrics.feedback.labels("invalid").inc()
        return _error(str(exc), 400)
    except KafkaUnavailable as exc:
        metrics.feedback.labels("kafka_unavailable").inc()
        return _error(f"feedback not stored, try again later: {exc}", 503)
    metrics.feedback.labels("sent").inc()
    return jsonify(success=True, id=record_id, label=label, topic=sender.topic)


@bp.get("/api/feedback/<record_id>")
def feedback_status(record_id: str):
    """Is the newest model trained on feedback ``record_id``? (its id is in the model's
    ``recent_feedback_ids``, written by the job at each backup)."""
    if not _FEEDBACK_ID.match(record_id):
        return _error("feedback id must be 1..100 letters, digits or '-'", 400)
    store: ModelStore = current_app.extensions["model_store"]
    try:
        meta = store.load_meta()
    except _redis_errors() as exc:
        return _error(f"Redis is unreachable ({exc.__class__.__name__}: {exc})", 503)
    ids = (meta or {}).get("recent_feedback_ids") or []
    included = isinstance(ids, list) and record_id in ids
    newest = int(meta["version"]) if meta and meta.get("version") else None
    return jsonify(success=True, id=record_id, included=included,
                   model_version=newest if included else None, newest_version=newest,
                   feedback_seen=(meta or {}).get("feedback_seen"))
