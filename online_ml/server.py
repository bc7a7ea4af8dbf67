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
=========================  =================================================================
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Mapping

import numpy as np
from flask import Blueprint, Flask, current_app, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .config import Settings
from .features import MAX_INPUT_CHARS, FeatureError, InputTooLarge, image_to_features, warm_up
from .model_store import ModelFormatError, ModelStore, StoredModel

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
            version = int(meta.get("version", 0)) if meta else 0
            if version == 0:
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


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the Flask app: config from Settings, then ``test_config`` on top."""
    app = Flask(__name__, template_folder=os.path.join(ROOT, "templates"),
                static_folder=os.path.join(ROOT, "static"))
    app.config.from_mapping(
        VERSION_CHECK_INTERVAL=0.5,
        REDIS_RETRY_INTERVAL=2.0,
        MAX_CONTENT_LENGTH=DEFAULT_MAX_CONTENT_LENGTH,
        WARM_UP=True,
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
    app.extensions["model_cache"] = ModelCache(
        store, check_interval=float(app.config["VERSION_CHECK_INTERVAL"]),
        retry_interval=float(app.config["REDIS_RETRY_INTERVAL"]))

    app.register_blueprint(bp)
    _register_error_handlers(app)
    if app.config["WARM_UP"]:
        warm_up()
    return app


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


def _top_probabilities(model: Any, x: np.ndarray, k: int = 3) -> list[dict] | None:
    """Top-k class probabilities, when the model has them (SGD with hinge loss has not)."""
    try:
        proba = model.predict_proba(x)[0]
    except (AttributeError, NotImplementedError):
        return None
    order = np.argsort(proba)[::-1][:k]
    classes = getattr(model, "classes_", np.arange(len(proba)))
    return [{"digit": int(classes[i]), "p": round(float(proba[i]), 4)} for i in order]


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
    digit = stored.model.predict(x)[0]
    answer: dict[str, Any] = {
        "success": True,
        "predict_result": int(digit),
        "model_version": stored.version,
        "samples_seen": stored.meta.get("samples_seen"),
    }
    probabilities = _top_probabilities(stored.model, x)
    if probabilities is not None:
        answer["probabilities"] = probabilities
    if "accuracy" in stored.meta:
        answer["accuracy"] = stored.meta["accuracy"]
    if stale:
        answer["stale"] = True
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
                       serving_version=cached.version)
    cached = cache.current
    body: dict[str, Any] = {"success": True, "model": meta,
                            "serving_version": cached.version if cached else None}
    if meta is None:
        body["message"] = NO_MODEL_MESSAGE
    return jsonify(body)


@bp.get("/healthz")
def healthz():
    """Is Redis reachable? 200 when it is, 503 when not (the server itself is up either way)."""
    store: ModelStore = current_app.extensions["model_store"]
    cache: ModelCache = current_app.extensions["model_cache"]
    cached = cache.current
    try:
        store.r.ping()
        version = store.current_version()
    except _redis_errors() as exc:
        return jsonify(success=False, redis="unreachable",
                       error=f"Redis is unreachable ({exc.__class__.__name__}: {exc})",
                       serving_version=cached.version if cached else None), 503
    return jsonify(success=True, redis="ok", model_version=version or None,
                   serving_version=cached.version if cached else None)
