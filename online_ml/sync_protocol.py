"""The parallel learners' protocol in Redis: heartbeats, contributions, one merger, one publisher.

Every learner (one per parallel subtask of the job) calls :meth:`Synchronizer.tick` every
``SYNC_EVERY_RECORDS`` records it learned or every ``SYNC_INTERVAL_SECONDS`` (and, when it is
alone, every backup interval). A tick:

1. **Heartbeat**: ``ZADD P:sync:learners id now``; learners silent for ``LEARNER_TIMEOUT_SECONDS``
   are dropped, and so are those silent for ``SILENT_SECONDS`` with no contribution pending
   (a running learner heartbeats every second, idle or not: one that died without leaving, when
   its TaskManager was killed, is not counted live for the whole timeout).
2. **Lease**: the learner holding ``P:sync:lease`` (``SET NX PX``, value ``<id>:<token>`` with a
   token from ``INCR P:sync:fence``, renewed by compare-and-expire) is the one **merger and
   publisher**. When it dies the lease expires and the next learner to tick takes it over.
3. **Others contribute**: ``SET P:sync:c:<id> <delta> NX PX <10 timeouts>``: at most one pending
   contribution per learner; until it is merged the learner keeps accumulating locally. The
   merger reads the contributions of the listed learners only: a dead learner's keeps it listed
   until it is merged or the timeout drops it (then it expires as garbage: it costs at most that
   one interval); a live learner's is merged even when the merger stalled for longer than the
   timeout.
4. **The merger merges**: its own delta plus every pending contribution (online_ml/sync.py:
   weighted average of weights, a √K times longer step for SGD or softmax learners' K deltas, sum
   of counts and counters) into the global model, written in one transaction that also deletes
   the merged contributions and increments ``P:sync:round``,
   under ``WATCH`` of the lease (a merger whose lease expired writes nothing).
5. **Everyone adopts** a newer round, once its own contribution has been merged:
   ``model := global + (model - base)``, from the global's raw arrays (``P:sync:global:state``,
   online_ml/sync_wire.py: microseconds; the skops model only when nothing here is worth keeping).
   Contributions travel in the same raw form.
6. **The merger publishes** the global model as the served version every backup interval
   (:meth:`ModelStore.save_blob` fenced by the lease), so the server, history and rollback see
   one model whose versions only increase.

Redis down: ticks fail, learners go on learning locally and merge when it is back.
"""
from __future__ import annotations

import copy
import logging
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from online_ml import sync
from online_ml.model_store import ModelStore, dumps
from online_ml.sync_store import COMMITTED, LEASE_LOST, SyncStore

log = logging.getLogger(__name__)

RECENT_FEEDBACK_IDS = 100
HEARTBEAT_SECONDS = 0.5
# a learner silent this long (10 heartbeats; its backup thread ticks every second even when it
# has no records) with nothing pending has died without leaving
SILENT_SECONDS = 5.0

class Local(Protocol):
    """What the synchroniser needs from the trainer that owns the local model."""

    def locked(self) -> AbstractContextManager[Any]: ...
    def current_model(self) -> Any: ...
    def counters(self) -> dict[str, int]: ...
    def set_counters(self, counters: dict[str, int]) -> None: ...
    def take_feedback_ids(self) -> list[str]: ...
    def give_back_feedback_ids(self, ids: list[str]) -> None: ...
    def recent_feedback(self) -> list[str]: ...
    def set_recent_feedback(self, ids: list[str]) -> None: ...
    def adopt_model(self, model: Any) -> None: ...
    def classes(self) -> list[int]: ...


@dataclass
class MergeResult:
    round: int
    contributors: int
    blob: bytes
    meta: dict


class Synchronizer:
    """The learner side of the protocol; one per Trainer."""

    def __init__(self, store: ModelStore, every_records: int, interval: float,
                 learner_timeout: float, solo_interval: float,
                 clock: Callable[[], float] = time.time, learner_id: str | None = None,
                 merge_step: str = "sqrt"):
        self.id = learner_id or uuid.uuid4().hex[:12]
        self.merge_step = merge_step  # "sqrt" or "mean" (SYNC_MERGE_STEP, online_ml/sync.py)
        self.every_records = max(1, int(every_records))
        self.interval = max(0.05, float(interval))
        self.solo_interval = max(self.interval, float(solo_interval))
        self.clock = clock
        self.remote = SyncStore(store, learner_timeout, lease_ttl=max(3 * self.interval, 5.0),
                                silent_timeout=max(SILENT_SECONDS, 2.5 * self.interval))
        # base: what the others already have of our learning (the global we adopted, plus what
        # we handed over since); global: the newest merged model we know
        self.base: sync.State | None = None
        self.base_counters: dict[str, int] = {}
        self.global_state: sync.State | None = None
        self.global_counters: dict[str, int] = {}
        self.round = 0
        self.lease: str | None = None
        self.live = 1
        self.pending_records = 0
        self.next_at = clock() + self.interval
        self.next_heartbeat_at = clock()
        # metrics
        self.merges = 0
        self.contributions_sent = 0
        self.last_contributors = 0
        self.adopted_at = clock()
        self.rounds_behind = 0
        self.last_merge: MergeResult | None = None

    # -- bookkeeping the trainer calls -------------------------------------------------------
    def start_from(self, model: Any, counters: dict[str, int], rnd: int) -> None:
        """The trainer loaded ``model`` (global round ``rnd``, or the served model: round 0)."""
        self.base = self.global_state = sync.state_of(model)
        self.base_counters, self.global_counters = dict(counters), dict(counters)
        self.round = rnd

    def learned(self, n: int) -> None:
        self.pending_records += n

    def due(self) -> bool:
        """A sync round is due: with others, every ``every_records`` records or ``interval``."""
        if self.live <= 1:
            return False  # alone, the trainer's backup interval paces the rounds
        return self.pending_records >= self.every_records or self.clock() >= self.next_at

    def look_around(self, force: bool = False) -> None:
        """Heartbeat and count the live learners every HEARTBEAT_SECONDS (cheap: one round trip),
        so a learner notices the others within that, not a backup interval later; ``force``:
        now (batch mode, between chunks: at tens of thousands of records/s, half a second is a
        whole pass of `digits` learned alone)."""
        now = self.clock()
        if now < self.next_heartbeat_at and not force:
            return
        self.next_heartbeat_at = now + HEARTBEAT_SECONDS
        self._heartbeat()

    def _heartbeat(self) -> dict[str, float]:
        """Mark us alive and count the live learners (wall time: compared across hosts); the
        live learners with the time of their last heartbeat."""
        live = self.remote.heartbeat(self.id, time.time())
        self.live = max(1, len(live))
        return live

    def meet(self, expected: int, timeout: float,
             sleep: Callable[[float], None] = time.sleep) -> int:
        """At the start of a job run ``expected`` wide: heartbeat, then wait (at most ``timeout``)
        until ``expected`` learners are live, so that none learns alone while the others are
        still starting (on a loaded machine the two learners of a job at parallelism 2 opened
        0.3 s apart and each learned ~80 records alone before they first saw each other; in
        batch mode four learners passed three passes of `digits` in a second, mostly alone).
        Returns the live learners seen; Redis down: 1 (learn alone, merge later). Only learners
        heard since this one opened count: those of a run that died without leaving (its job
        restarted after a crash) are still listed for up to ``SILENT_SECONDS``, and would cut
        the wait short."""
        opened = time.time()
        deadline = self.clock() + max(0.0, timeout)
        while True:
            try:
                live = self._heartbeat()
            except Exception as exc:  # Redis down: the ticks retry later
                log.info("could not meet the other learners: %s", exc)
                return 1
            met = sum(1 for heard in live.values() if heard >= opened)
            if met >= expected or self.clock() >= deadline:
                break
            sleep(0.1)
        if met < expected:
            log.warning("%d of %d learners live after %.0f s: starting anyway", met,
                        expected, timeout)
        self.next_heartbeat_at = self.clock() + HEARTBEAT_SECONDS
        return max(1, met)

    @property
    def is_publisher(self) -> bool:
        return self.lease is not None

    # -- one round of the protocol -------------------------------------------------------------
    def tick(self, local: Local) -> None:
        """Heartbeat, lease, contribute or merge, adopt. Raises on Redis errors (the trainer
        counts them and retries); local learning is never lost by a failed tick."""
        now = self.clock()
        live = self._heartbeat()
        self.lease = self.remote.lease(self.id, self.lease)
        self.next_at = now + (self.interval if self.live > 1 else self.solo_interval)
        if self.lease is not None:
            self._merge(local, [i for i in live if i != self.id])
        elif not self._adopt(local):  # first: once our last contribution is merged
            self._contribute(local)   # (while it is pending, a new one would be refused)

    def _delta(self, local: Local) -> tuple[sync.State, dict[str, int], int, Any] | None:
        """(delta, counter delta, samples, model state) since the base, under the lock."""
        with local.locked():
            model = local.current_model()
            state = sync.state_of(model)
            counters = local.counters()
        if state is None:
            return None
        if self.base is None and not sync.zero_based(model):
            return None  # a fresh MLP: its random start means nothing to the others
        delta = sync.subtract(state, self._base_or_fresh(model, state))
        cdelta = sync.counter_delta(counters, self.base_counters)
        return delta, cdelta, cdelta.get("samples_seen", 0), (state, counters)

    def _base_or_fresh(self, model: Any, state: sync.State) -> sync.State:
        return self.base if self.base is not None else sync.fresh_state(model, state)

    def _contribute(self, local: Local) -> None:
        got = self._delta(local)
        if got is None or got[2] <= 0:
            return
        delta, cdelta, n, (state, counters) = got
        ids = local.take_feedback_ids()
        c = sync.Contribution(self.id, n, delta, cdelta, ids, self.round, time.time())
        if self.remote.contribute(self.id, c.encode()):
            self.base, self.base_counters = state, counters
            self.pending_records = 0
            self.contributions_sent += 1
        else:  # our last one is still pending: these ids go with the next (the delta does too)
            local.give_back_feedback_ids(ids)

    def _adopt(self, local: Local, force: bool = False) -> bool:
        """Adopt a newer global once our last contribution is merged (``force``: even before).
        Returns whether our last contribution is still pending."""
        rnd, pending = self.remote.state(self.id)
        self.rounds_behind = max(0, rnd - self.round)
        if rnd <= self.round or (pending and not force):
            return pending
        with local.locked():
            fresh = self._fresh(local.current_model())
        # the arrays, several times a second; the whole model only when there is nothing here
        # to keep (loading a skops model took 4 ms, most of a round)
        got = self.remote.load_global() if fresh else self.remote.load_global_state()
        if got is None:
            return pending
        model, meta, rnd = got if fresh else (None, got[1], got[2])
        gstate = sync.state_of(model) if fresh else got[0]
        if gstate is None:
            return pending
        gcounters = {k: int(v) for k, v in meta.get("counters", {}).items()}
        with local.locked():
            mine = local.current_model()
            state = sync.state_of(mine)
            counters = local.counters()
            if self._fresh(mine) != fresh:
                return pending  # it learned its first records meanwhile: adopt at the next tick
            if fresh or state is None:
                local.adopt_model(model)
                new_counters = gcounters
            else:
                sync.set_state(mine, sync.add(gstate, sync.subtract(
                    state, self._base_or_fresh(mine, state))))
                new_counters = sync.merge_counters(
                    gcounters, [sync.counter_delta(counters, self.base_counters)])
            local.set_counters(new_counters)
            local.set_recent_feedback(meta.get("recent_feedback_ids") or [])
        self.base, self.base_counters = gstate, gcounters
        self.global_state, self.global_counters = gstate, gcounters
        self.round, self.rounds_behind, self.adopted_at = rnd, 0, self.clock()
        if self.last_merge is not None and self.last_merge.round < rnd:
            self.last_merge = None  # someone merged after us: ours is not the newest to publish
        return pending

    def _fresh(self, model: Any) -> bool:
        """Nothing learned here yet, or a fresh MLP (its random start means nothing to the
        others: what it learned before the first global is dropped): it adopts the global whole."""
        return sync.state_of(model) is None or (self.base is None and not sync.zero_based(model))

    def _merge(self, local: Local, others: list[str]) -> None:
        lease = self.lease
        assert lease is not None
        if self.round < self._remote_round():
            self._catch_up(local)
        got = self._delta(local)
        raw = self.remote.contributions([*others, self.id])  # ours, if still pending
        if got is None and not raw:
            return
        with local.locked():
            model = copy.deepcopy(local.current_model())
        if not sync.fitted(model) and raw:  # we learned nothing yet; the others did
            first = next(iter(raw.values()))
            try:
                sync.initialise(model, sync.Contribution.decode(first).delta, local.classes())
            except (ValueError, KeyError) as exc:
                log.error("cannot merge contributions into an unfitted model: %s", exc)
        rules = sync.rules_of(model) if sync.fitted(model) else None
        if rules is not None and self.merge_step == "mean":
            rules = sync.plain(rules)
        deltas: list[tuple[sync.State, int]] = []
        cdeltas: list[dict[str, int]] = []
        feedback: list[str] = []
        consumed: list[str] = []
        for learner, blob in raw.items():
            try:
                c = sync.Contribution.decode(blob)
            except ValueError as exc:
                log.error("dropping the contribution of learner %s: %s", learner, exc)
                consumed.append(learner)
                continue
            consumed.append(learner)
            if rules is None or not sync.compatible(c.delta, rules, self.global_state):
                log.error("dropping the contribution of learner %s: its model does not fit "
                          "this job's learner", learner)
                continue
            deltas.append((c.delta, c.samples))
            cdeltas.append(c.counters)
            feedback.extend(c.feedback_ids)
        snapshot_state = snapshot_counters = None
        own = False
        if got is not None:
            delta, cdelta, n, (snapshot_state, snapshot_counters) = got
            if n > 0:
                deltas.insert(0, (delta, n))
                cdeltas.insert(0, cdelta)
                own = True
        if rules is None or (not deltas and not consumed):
            return
        if own and len(deltas) == 1 and self.base is self.global_state:
            merged = snapshot_state  # alone: the global is exactly our model
        elif deltas:
            merged = sync.merge_states(
                self.global_state if self.global_state is not None
                else sync.fresh_state(model, deltas[0][0]), deltas, rules,
                first=self.global_state is None)
        else:  # only malformed contributions: delete them, nothing changes
            merged = (self.global_state if self.global_state is not None
                      else sync.state_of(model))
        if merged is None:
            return
        counters = sync.merge_counters(self.global_counters, cdeltas)
        sync.set_state(model, merged)
        with local.locked():
            recent = [*local.recent_feedback(), *feedback][-RECENT_FEEDBACK_IDS:]
        meta = {"counters": counters, "contributors": len(deltas), "merged_by": self.id,
                "merged_at": time.time(), "recent_feedback_ids": recent,
                "learners": self.live}
        blob = dumps(model)
        outcome, rnd = self.remote.commit(lease, blob, sync.encode_state(merged), meta, consumed)
        if outcome == LEASE_LOST:
            self.lease = None
            return
        if outcome != COMMITTED:
            log.info("merge not committed (the round or a contribution changed meanwhile); "
                     "merging again at the next tick")
            return
        with local.locked():
            mine = local.current_model()
            state = sync.state_of(mine)
            now_counters = local.counters()
            if state is not None and snapshot_state is not None:
                sync.set_state(mine, sync.add(merged, sync.subtract(state, snapshot_state)))
                local.set_counters(sync.merge_counters(
                    counters, [sync.counter_delta(now_counters, snapshot_counters or {})]))
            else:
                local.adopt_model(copy.deepcopy(model))
                local.set_counters(counters)
            local.set_recent_feedback(recent)
        self.base, self.base_counters = merged, counters
        self.global_state, self.global_counters = merged, counters
        self.round, self.rounds_behind, self.adopted_at = rnd, 0, self.clock()
        self.pending_records = 0
        self.merges += 1
        self.last_contributors = len(deltas)
        self.last_merge = MergeResult(rnd, len(deltas), blob, dict(meta, round=rnd))

    def _remote_round(self) -> int:
        return self.remote.state(self.id)[0]

    def _catch_up(self, local: Local) -> None:
        """A new merger first adopts the newest global (the previous merger's last round); its
        own contribution, if still pending, is merged in the same round."""
        self._adopt(local, force=True)

    def flush(self, local: Local, timeout: float | None = None) -> bool:
        """On a clean stop: hand over everything learned here and see it merged (by the
        publisher, or by us once the publisher has left and the lease is free). True when
        nothing learned here is left unmerged. The default timeout: until a dead publisher's
        lease has expired and two more sync intervals have passed."""
        if timeout is None:
            timeout = self.remote.lease_ttl_ms / 1000 + 2 * self.interval + 3
        end = time.monotonic() + max(0.0, timeout)
        while True:
            self.tick(local)
            if self.is_publisher:
                return True
            got = self._delta(local)
            _, pending = self.remote.state(self.id)
            if not pending and (got is None or got[2] <= 0):
                return True
            if time.monotonic() >= end:
                log.warning("stopping with learning not yet merged (no merger within %.0f s)",
                            timeout)
                return False
            time.sleep(min(0.2, self.interval))

    def leave(self) -> None:
        """On a clean stop: give up the lease at once and leave the live set."""
        try:
            self.remote.leave(self.id, self.lease)
            self.lease = None
        except Exception as exc:  # Redis down: the heartbeat and the lease expire by themselves
            log.info("could not leave the learner set: %s", exc)

    def gauges(self) -> dict[str, Callable[[], int]]:
        return {
            "sync_round": lambda: int(self.round),
            "sync_merges": lambda: int(self.merges),
            "sync_contributions": lambda: int(self.contributions_sent),
            "sync_last_contributors": lambda: int(self.last_contributors),
            "sync_live_learners": lambda: int(self.live),
            "sync_is_publisher": lambda: int(self.is_publisher),
            "sync_staleness_rounds": lambda: int(self.rounds_behind),
            "sync_staleness_s": lambda: int(max(0.0, self.clock() - self.adopted_at)),
        }
