"""Versioned model persistence in Redis, and the only module that knows the key names.

Why not pickle: anyone who can write to Redis could make ``pickle.loads`` run code in the job and
in the server. Models are serialised with skops and loaded with an explicit list of trusted types,
so a blob naming any other type is refused instead of executed.

Layout, for a prefix ``P`` (default ``online_ml_model``, the tutorial's key):

=====================  ====================================================================
``P``                  newest model blob (skops bytes)
``P:meta``             JSON metadata of that blob (version, samples seen, accuracy, ...)
``P:version``          newest version number (int, only ever increases)
``P:v:<n>``            blob of version n, the last ``keep`` versions are kept for rollback
``P:meta:<n>``         metadata of version n
``P:versions``         sorted set of kept versions (score = version)
``P:history``          capped list of JSON metric snapshots, newest first
``P:updates``          pub/sub channel: the new version's metadata is published after each save
``P:sync:global``      parallel learners (online_ml/sync_protocol.py): the merged model (skops)
``P:sync:global:meta`` its JSON metadata (round, counters, contributors)
``P:sync:global:state`` its arrays (online_ml/sync_wire.py), what the learners adopt
``P:sync:round``       number of merges so far (int, only ever increases)
``P:sync:learners``    sorted set: learner id -> time of its last heartbeat
``P:sync:c:<id>``      one learner's pending contribution (expires when not merged in time)
``P:sync:lease``       who merges and publishes: ``<learner id>:<fencing token>``, with a TTL
``P:sync:fence``       fencing token counter (INCR at each lease acquisition)
``P:training``         JSON: the training job's state and the job watcher's memory
                       (online_ml/watcher.py writes it, the server reads it)
=====================  ====================================================================
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import skops.io as sio

log = logging.getLogger(__name__)

FORMAT = "skops"
HISTORY_LENGTH = 2000

# Types a model blob may contain. Everything else makes loading fail (ModelFormatError).
TRUSTED_TYPES = [
    "sklearn.linear_model._stochastic_gradient.SGDClassifier",
    "sklearn.linear_model._perceptron.Perceptron",
    "sklearn.linear_model._passive_aggressive.PassiveAggressiveClassifier",
    "sklearn.naive_bayes.MultinomialNB",
    "sklearn.naive_bayes.GaussianNB",
    "sklearn.naive_bayes.BernoulliNB",
    "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss._loss.CyHalfMultinomialLoss",
    "sklearn.linear_model._sgd_fast.Hinge",
    "sklearn.linear_model._sgd_fast.Log",
    "sklearn.linear_model._sgd_fast.ModifiedHuber",
    "sklearn.linear_model._sgd_fast.SquaredHinge",
    # LEARNER=softmax: plain numpy arrays and floats in an sklearn-style estimator of ours
    "online_ml.softmax.OnlineSoftmax",
    "numpy.dtype",
    "numpy.ndarray",
    "builtins.int",
    "builtins.float",
    "builtins.str",
    "builtins.tuple",
    "builtins.list",
    "builtins.dict",
]


class ModelFormatError(ValueError):
    """A stored blob is corrupt, of an unknown format, or contains untrusted types."""


class FencedOut(RuntimeError):
    """A fenced write found the lease held by someone else (or expired): nothing was written."""


@dataclass(frozen=True)
class StoredModel:
    model: Any
    meta: dict

    @property
    def version(self) -> int:
        return int(self.meta.get("version", 0))


def dumps(model: Any) -> bytes:
    return sio.dumps(model)


def loads(blob: bytes) -> Any:
    """Load a blob without executing anything it names; raise ModelFormatError on any problem."""
    try:
        untrusted = sio.get_untrusted_types(data=blob)
    except Exception as exc:  # corrupt zip, not a skops file, ...
        raise ModelFormatError(f"model blob is not a readable skops file: {exc}") from None
    refused = [t for t in untrusted if t not in TRUSTED_TYPES]
    if refused:
        raise ModelFormatError(f"model blob contains untrusted types: {', '.join(refused)}")
    try:
        return sio.loads(blob, trusted=untrusted)
    except Exception as exc:
        raise ModelFormatError(f"model blob could not be loaded: {exc}") from None


class ModelStore:
    """Save and load versioned models under one key prefix."""

    def __init__(self, redis_client, prefix: str = "online_ml_model", keep: int = 10):
        self.r = redis_client
        self.prefix = prefix
        self.keep = max(1, int(keep))

    # -- key names: the single place that knows them ------------------------------------------
    @property
    def blob_key(self) -> str:
        return self.prefix

    @property
    def meta_key(self) -> str:
        return f"{self.prefix}:meta"

    @property
    def version_key(self) -> str:
        return f"{self.prefix}:version"

    @property
    def versions_key(self) -> str:
        return f"{self.prefix}:versions"

    @property
    def history_key(self) -> str:
        return f"{self.prefix}:history"

    @property
    def channel(self) -> str:
        return f"{self.prefix}:updates"

    def sync_key(self, name: str) -> str:
        """Keys of the parallel learners' protocol: ``global``, ``global:meta``, ``round``,
        ``learners``, ``lease``, ``fence`` (see the table above)."""
        return f"{self.prefix}:sync:{name}"

    def contribution_key(self, learner: str) -> str:
        return f"{self.prefix}:sync:c:{learner}"

    def training_key(self) -> str:
        """The job watcher's record: training state for the server, memory for the watcher."""
        return f"{self.prefix}:training"

    def version_blob_key(self, version: int) -> str:
        return f"{self.prefix}:v:{version}"

    def version_meta_key(self, version: int) -> str:
        return f"{self.prefix}:meta:{version}"

    def project_keys(self) -> list[str]:
        """Every key of this store that exists now (for redis_clear.py)."""
        keys = {k.decode() if isinstance(k, bytes) else k
                for k in self.r.scan_iter(match=f"{self.prefix}:*", count=500)}
        if self.r.exists(self.blob_key):
            keys.add(self.blob_key)
        return sorted(keys)

    # -- writing -------------------------------------------------------------------------------
    def save(self, model: Any, meta: dict | None = None, snapshot: dict | None = None) -> dict:
        """Serialise ``model`` and store it as a new version (see :meth:`save_blob`)."""
        return self.save_blob(dumps(model), meta, snapshot)

    def save_blob(self, blob: bytes, meta: dict | None = None, snapshot: dict | None = None,
                  fence: tuple[str, str] | None = None) -> dict:
        """Write an already serialised model as a new version; return its metadata.

        The version number comes from INCR, so it only ever increases even with several writers.
        Blob, metadata, kept copy and history entry land in one MULTI/EXEC transaction, so a reader
        never sees a blob with another version's metadata.

        ``fence=(key, value)``: write only while ``key`` holds ``value`` (the parallel learners'
        publishing lease): the check, the version number and the write are one transaction, so
        a writer whose lease expired cannot publish (raises :class:`FencedOut`).
        """
        if fence is not None:
            return self._save_fenced(blob, meta, snapshot, fence)
        version = int(self.r.incr(self.version_key))
        return self._write(self.r.pipeline(transaction=True), version, blob, meta, snapshot)

    def _save_fenced(self, blob: bytes, meta: dict | None, snapshot: dict | None,
                     fence: tuple[str, str]) -> dict:
        import redis

        key, value = fence
        with self.r.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key, self.version_key)
                held = pipe.get(key)
                if held is None or (held.decode() if isinstance(held, bytes) else held) != value:
                    raise FencedOut(f"the lease {key} is no longer {value!r}")
                version = int(pipe.get(self.version_key) or 0) + 1
                pipe.multi()
                pipe.set(self.version_key, version)
                return self._write(pipe, version, blob, meta, snapshot)
            except redis.WatchError:
                raise FencedOut(f"the lease {key} or the version changed while publishing") from None

    def _write(self, pipe, version: int, blob: bytes, meta: dict | None,
               snapshot: dict | None) -> dict:
        full_meta = dict(meta or {})
        full_meta.update(
            version=version,
            saved_at=time.time(),
            format=FORMAT,
            size_bytes=len(blob),
        )
        meta_json = json.dumps(full_meta, sort_keys=True)
        pipe.set(self.blob_key, blob)
        pipe.set(self.meta_key, meta_json)
        pipe.set(self.version_blob_key(version), blob)
        pipe.set(self.version_meta_key(version), meta_json)
        pipe.zadd(self.versions_key, {str(version): version})
        if snapshot is not None:
            entry = dict(snapshot, version=version, time=full_meta["saved_at"])
            pipe.lpush(self.history_key, json.dumps(entry, sort_keys=True))
            pipe.ltrim(self.history_key, 0, HISTORY_LENGTH - 1)
        pipe.execute()
        self._prune()
        try:
            self.r.publish(self.channel, meta_json)
        except Exception:  # an announcement is an optimisation; readers also poll the version
            log.warning("could not publish model version %s", version, exc_info=True)
        return full_meta

    def _prune(self) -> None:
        old = self.r.zrange(self.versions_key, 0, -self.keep - 1)
        if not old:
            return
        pipe = self.r.pipeline(transaction=True)
        for raw in old:
            v = int(raw)
            pipe.delete(self.version_blob_key(v), self.version_meta_key(v))
            pipe.zrem(self.versions_key, raw)
        pipe.execute()

    # -- reading -------------------------------------------------------------------------------
    def current_version(self) -> int:
        """Version of the newest stored model (0 when there is none). One cheap GET."""
        meta = self.load_meta()
        return int(meta["version"]) if meta else 0

    def load_meta(self, version: int | None = None) -> dict | None:
        key = self.meta_key if version is None else self.version_meta_key(version)
        raw = self.r.get(key)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            log.error("metadata under %s is not JSON; ignoring it", key)
            return None

    def load(self, version: int | None = None) -> StoredModel | None:
        """Newest (or a kept) model, or None when there is none.

        Raises ModelFormatError when the stored blob cannot be trusted or read.
        """
        keys = (self.blob_key, self.meta_key) if version is None else (
            self.version_blob_key(version), self.version_meta_key(version))
        blob, meta_raw = self.r.mget(keys)
        if blob is None:
            return None
        meta = {}
        if meta_raw is not None:
            try:
                meta = json.loads(meta_raw)
            except ValueError:
                log.error("metadata under %s is not JSON; loading the blob without it", keys[1])
        return StoredModel(model=loads(blob), meta=meta)

    def kept_versions(self) -> list[int]:
        return [int(v) for v in self.r.zrange(self.versions_key, 0, -1)]

    def history(self, limit: int = 500) -> list[dict]:
        """Metric snapshots, oldest first."""
        rows = self.r.lrange(self.history_key, 0, max(0, limit - 1))
        out = []
        for raw in reversed(rows):
            try:
                out.append(json.loads(raw))
            except ValueError:
                continue
        return out

    def rollback(self, version: int | None = None) -> dict:
        """Make a kept version the newest again, as a new version number (history stays linear)."""
        kept = self.kept_versions()
        if version is None:
            current = self.current_version()
            older = [v for v in kept if v < current]
            if not older:
                raise LookupError("no older kept version to roll back to")
            version = older[-1]
        stored = self.load(version)
        if stored is None:
            raise LookupError(f"version {version} is not kept (kept: {kept or 'none'})")
        meta = dict(stored.meta, rolled_back_from=version)
        meta.pop("version", None)
        return self.save(stored.model, meta)
