"""The Redis side of the parallel learners' protocol (:mod:`online_ml.sync_protocol`).

One :class:`SyncStore` per learner: heartbeats in a sorted set, the merger's lease (``SET NX PX``
with a fencing token from ``INCR``, renewed and released only by its holder, in Lua), one pending
contribution per learner (``SET NX PX``), and the merge committed in one ``MULTI``/``EXEC`` under
``WATCH`` of the lease, the round and the merged contributions. Key names come from
:class:`online_ml.model_store.ModelStore`.
"""
from __future__ import annotations

import json
from typing import Any

from online_ml import sync
from online_ml.model_store import ModelStore, loads

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""


_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


# one heartbeat: mark the learner alive, drop the learners silent for the learner timeout, and
# those silent for the shorter ``silent`` time that have nothing pending (a learner that died
# without leaving: its job restarted after a crash); the live learners with their last heartbeat.
# It reads the contribution keys by name (ARGV[5] is their prefix), not through KEYS: fine on
# one Redis server (this project's), not on a Redis Cluster.
_HEARTBEAT = """
redis.call('zadd', KEYS[1], ARGV[2], ARGV[1])
redis.call('zremrangebyscore', KEYS[1], '-inf', ARGV[3])
for _, m in ipairs(redis.call('zrangebyscore', KEYS[1], '-inf', ARGV[4])) do
  if redis.call('exists', ARGV[5] .. m) == 0 then
    redis.call('zrem', KEYS[1], m)
  end
end
return redis.call('zrange', KEYS[1], 0, -1, 'withscores')
"""


CONTRIBUTION_TTL_TIMEOUTS = 10
COMMITTED, LEASE_LOST, RETRY = "committed", "lease lost", "retry"


class SyncStore:
    """The Redis side: key names come from :class:`ModelStore`."""

    def __init__(self, store: ModelStore, learner_timeout: float, lease_ttl: float,
                 silent_timeout: float | None = None):
        self.store = store
        self.r = store.r
        self.learner_timeout = learner_timeout
        # a learner heartbeats at least every second while it runs, idle or not (the backup
        # thread ticks); silent this long with nothing pending, it is gone
        self.silent_timeout = min(learner_timeout, silent_timeout or learner_timeout)
        self.lease_ttl_ms = max(1000, int(lease_ttl * 1000))
        # a pending contribution outlives its learner's heartbeat by far: the merger reads only
        # the live learners' contributions, so a dead learner's is not merged (it expires later,
        # as garbage), while a live learner's survives a merger that stalled past the timeout
        self.contribution_ttl_ms = max(60_000, int(CONTRIBUTION_TTL_TIMEOUTS * learner_timeout
                                                   * 1000))
        self.k_learners = store.sync_key("learners")
        self.k_lease = store.sync_key("lease")
        self.k_fence = store.sync_key("fence")
        self.k_round = store.sync_key("round")
        self.k_global = store.sync_key("global")
        self.k_global_meta = store.sync_key("global:meta")
        self.k_global_state = store.sync_key("global:state")
        self._renew = self.r.register_script(_RENEW)
        self._heartbeat = self.r.register_script(_HEARTBEAT)

    def heartbeat(self, learner: str, now: float) -> dict[str, float]:
        """Mark ``learner`` alive; return the live learners (sorted) with their last heartbeat.
        Dropped: those silent for the learner timeout, and those silent for ``silent_timeout``
        with no contribution pending (one pending keeps its learner listed until it is merged:
        the merger reads the listed learners' contributions)."""
        raw = self._heartbeat(
            keys=[self.k_learners],
            args=[learner, repr(float(now)), repr(float(now - self.learner_timeout)),
                  repr(float(now - self.silent_timeout)), self.store.contribution_key("")])
        pairs = zip(raw[::2], raw[1::2])
        return dict(sorted((m.decode() if isinstance(m, bytes) else m, float(t)) for m, t in pairs))

    def leave(self, learner: str, lease: str | None) -> None:
        """Leave the live set and give up our lease (only if it is still ours). With a
        contribution still pending we stay listed until the timeout, so the merger finds it."""
        if not self.r.exists(self.store.contribution_key(learner)):
            self.r.zrem(self.k_learners, learner)
        if lease is not None:
            self.r.eval(_RELEASE, 1, self.k_lease, lease)

    def lease(self, learner: str, held: str | None) -> str | None:
        """Renew our lease or take a free one; the lease value (``id:token``) or None."""
        if held is not None and int(self._renew(keys=[self.k_lease],
                                                args=[held, self.lease_ttl_ms])):
            return held
        current = self.r.get(self.k_lease)
        if current is not None:
            return None
        token = int(self.r.incr(self.k_fence))
        value = f"{learner}:{token}"
        if self.r.set(self.k_lease, value, nx=True, px=self.lease_ttl_ms):
            return value
        return None

    def contribute(self, learner: str, blob: bytes) -> bool:
        """Hand over a contribution unless the previous one is still pending."""
        return bool(self.r.set(self.store.contribution_key(learner), blob, nx=True,
                               px=self.contribution_ttl_ms))

    def state(self, learner: str) -> tuple[int, bool]:
        """(current round, whether our contribution is still pending)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.get(self.k_round)
        pipe.exists(self.store.contribution_key(learner))
        rnd, pending = pipe.execute()
        return int(rnd or 0), bool(pending)

    def load_global(self) -> tuple[Any, dict, int] | None:
        """(model, meta, round) of the merged model, or None when there is none yet."""
        blob, meta_raw = self.r.mget(self.k_global, self.k_global_meta)
        if blob is None:
            return None
        meta = json.loads(meta_raw) if meta_raw else {}
        return loads(blob), meta, int(meta.get("round", 0))

    def load_global_state(self) -> tuple[sync.State, dict, int] | None:
        """(arrays, meta, round) of the merged model without loading the model: what a learner
        adopts several times a second (the skops model took 4 ms to load). A global written
        before the arrays were (2026-12-02) is loaded as a model."""
        raw, meta_raw = self.r.mget(self.k_global_state, self.k_global_meta)
        if raw is None:
            got = self.load_global()
            if got is None:
                return None
            model, meta, rnd = got
            state = sync.state_of(model)
            return (state, meta, rnd) if state is not None else None
        meta = json.loads(meta_raw) if meta_raw else {}
        return sync.decode_state(raw), meta, int(meta.get("round", 0))

    def contributions(self, learners: list[str]) -> dict[str, bytes]:
        if not learners:
            return {}
        keys = [self.store.contribution_key(i) for i in learners]
        return {i: b for i, b in zip(learners, self.r.mget(keys)) if b is not None}

    def commit(self, lease: str, blob: bytes, state: bytes, meta: dict,
               consumed: list[str]) -> tuple[str, int]:
        """Write the merged model (``blob``, and its arrays: ``state``) and delete what it
        merged, only while we hold the lease and the round and the consumed contributions are
        unchanged. ``(COMMITTED, new round)``;
        ``(LEASE_LOST, 0)`` when the lease is not ours (nothing written); ``(RETRY, 0)`` when
        something else changed in between (nothing written, the lease still ours: merge again
        at the next tick, nothing is lost)."""
        import redis

        keys = [self.store.contribution_key(i) for i in consumed]
        with self.r.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(self.k_lease, self.k_round, *keys)
                held = pipe.get(self.k_lease)
                if held is None or (held.decode() if isinstance(held, bytes) else held) != lease:
                    return LEASE_LOST, 0
                rnd = int(pipe.get(self.k_round) or 0) + 1
                meta = dict(meta, round=rnd)
                pipe.multi()
                pipe.set(self.k_global, blob)
                pipe.set(self.k_global_state, state)
                pipe.set(self.k_global_meta, json.dumps(meta, sort_keys=True))
                pipe.set(self.k_round, rnd)
                if keys:
                    pipe.delete(*keys)
                pipe.execute()
                return COMMITTED, rnd
            except redis.WatchError:
                return RETRY, 0
