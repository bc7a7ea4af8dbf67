"""The model cache: the newest model from the store, in memory, reloaded only on a new version.

Why: the job backs the model up every 10 s, but a page may predict many times a second. Each
request does at most one cheap ``GET`` of the metadata (and not even that if the last check is
younger than ``check_interval``); the model blob is loaded only when the version changed. If Redis
goes away, the last good model keeps answering, flagged stale, instead of the page going dead.

The announcement listener makes a new version show up on the very next request; it runs in a
thread until :meth:`ModelCache.close` (the app's ``close()``), so an app that is done leaves no
thread behind.
"""
from __future__ import annotations

import logging
import threading
import time

from ..model_store import ModelFormatError, ModelStore, StoredModel

log = logging.getLogger(__name__)

NO_MODEL_MESSAGE = ("no model yet: start the training job "
                    "(flink run -m localhost:8081 -py stream.py)")
# How long the listener waits for a message before it looks at its stop event again: the most
# that closing an app waits for the thread.
LISTEN_POLL_SECONDS = 0.25


class ModelUnavailable(Exception):
    """No model can be served right now; the message tells the user why (503)."""


def redis_errors() -> tuple[type[BaseException], ...]:
    """What a Redis call raises when Redis is unreachable (redis imported lazily)."""
    import redis

    return (redis.RedisError, OSError)


def redis_unreachable(exc: BaseException) -> str:
    return f"Redis is unreachable ({exc.__class__.__name__}: {exc})"


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
        self._stop = threading.Event()
        self.listener: threading.Thread | None = None

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
            except redis_errors() as exc:
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
        except redis_errors() as exc:
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
        self._problem = redis_unreachable(exc)
        if self._current is None:
            log.warning("no model to serve: %s", self._problem)
            raise ModelUnavailable(f"no model available: {self._problem}") from None
        if not self._stale:
            log.warning("serving cached model version %s: %s", self._current.version,
                        self._problem)
        self._stale = True
        return self._current, True

    # -- announcements -----------------------------------------------------------------------
    def listen_for_announcements(self) -> threading.Thread:
        """Subscribe to the store's announcements, so a new version is loaded on the very next
        request instead of after the next periodic check (freshness). Runs in a daemon thread
        until :meth:`close`; while Redis is unreachable it retries, and the periodic check
        still works. Calling it again while the listener runs returns the same thread."""
        if self.listener is None or not self.listener.is_alive():
            self._stop.clear()
            self.listener = threading.Thread(target=self._listen, name="model-announcements",
                                             daemon=True)
            self.listener.start()
        return self.listener

    def close(self, timeout: float = 5.0) -> None:
        """Stop the announcement listener and wait (at most ``timeout``) until it has ended."""
        self._stop.set()
        thread = self.listener
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("the model announcement listener did not stop within %.1f s", timeout)

    def _listen(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self.store.r.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.store.channel)
                delay = 1.0
                while not self._stop.is_set():
                    if pubsub.get_message(timeout=LISTEN_POLL_SECONDS) is not None:
                        self._next_check = 0.0  # the next get() asks Redis
            except Exception as exc:  # Redis down or restarted: subscribe again later
                log.debug("model announcements unavailable (%s); retrying in %.0f s", exc, delay)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:
                        pass
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, 30.0)


def _model_key(meta: dict) -> tuple:
    """Identity of a stored model: the version, and the save time because a Redis restarted
    without persistence starts counting versions at 1 again."""
    return meta.get("version"), meta.get("saved_at")
