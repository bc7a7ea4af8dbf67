"""Parallel learners, one model: what a learner contributes, how contributions merge.

A Table API Python UDF can neither iterate (Flink ML's reduce + broadcast per global batch) nor
keep Flink-checkpointed state, so the N learners of a job at parallelism N meet in Redis, used as
a small parameter server (the protocol is in :mod:`online_ml.sync_protocol`). This module holds
the pure rules, unit-tested apart from Redis:

* A learner's **state** is a dict of named arrays taken from its estimator, each with a merge
  rule: ``avg`` (weights and biases of the MLP: averaged, weighted by the samples behind each
  contribution, as in Zinkevich et al. 2010 and FedAvg; the perceptron's and PA's too), ``step``
  (SGD's weights, biases and step counter ``t_``, the softmax learner's weights and their running
  average: averaged, then taken √K times, K the contributions in the merge) or ``sum`` (naive
  Bayes' counts and the MLP's ``t_``: exact when added). The softmax learner
  (online_ml/softmax.py) averages AdaGrad's accumulated squared gradients (the merged model's,
  not everybody's summed: summed, they would shrink every step N times too fast) and its step
  counter ``t_`` (which sets the averaging horizon), for the reasons SGD's ``t_`` is averaged.
  Its memory of records (``neighbours``, on by default) and its ring of lessons (the board's
  corrections, ``lessons``) are ``append``ed: each contribution carries the rows written since its
  base, and they are written after the global's, the newest kept.
* A learner keeps the **base** it last adopted (or handed over). Its **delta** is
  ``state - base``; the merge is ``global + Σ wᵢ·deltaᵢ`` for ``avg`` arrays
  (``wᵢ = nᵢ / Σ n``), ``global + √K·Σ wᵢ·deltaᵢ`` for ``step`` arrays and
  ``global + Σ deltaᵢ`` for ``sum`` arrays and for the counters.
  Why √K: K averaged deltas of k records each are one step of a mini-batch K times larger, with
  less noise, so it may be longer; the square-root form of the scaling rule for larger batches
  (Krizhevsky 2014; Hoffer et al. 2017). Measured in bench/sync_sim.py (variants ``avg`` against
  ``avg1``, the plain average): four SGD learners merged every 10 records lose about a quarter of
  a point against one learner instead of more than half, and in the job's asynchronous protocol
  (contributions arrive one by one) the gain is larger. Not the full sum: N deltas added at full
  weight overshoot (at 250 records per sync it diverges), and √K overshoots too at 250 (the
  served model of one stream order fell 8 points below one learner), so it is measured for the
  default interval and not beyond 100 records. The first merge, with no global yet, is a plain
  average (there is no step to lengthen: every contribution started from zero).
* **Adopting** a merged global keeps what was learned since: ``state := global + (state -
  base)``, then ``base := global``. At parallelism 1 the only contribution is the learner's own,
  so the global equals its model and nothing changes.

A fresh linear, softmax or naive-Bayes model starts from zeros, so its base is zero; an MLP starts from
random weights that differ per learner, so a fresh MLP contributes nothing until it has adopted
the first global (what it learned before that, at most one sync interval, is dropped).

>>> import numpy as np
>>> g = {"coef_": np.array([0.0, 0.0]), "t_": np.array(1.0)}
>>> rules = {"coef_": AVG, "t_": SUM}
>>> d1 = {"coef_": np.array([1.0, 0.0]), "t_": np.array(10.0)}   # 10 samples
>>> d2 = {"coef_": np.array([0.0, 3.0]), "t_": np.array(30.0)}   # 30 samples
>>> merged = merge_states(g, [(d1, 10), (d2, 30)], rules)
>>> merged["coef_"].tolist(), float(merged["t_"])
([0.25, 2.25], 41.0)
>>> stepped = merge_states(g, [(d1, 10), (d2, 30)], {"coef_": STEP, "t_": STEP})
>>> [round(v, 3) for v in stepped["coef_"].tolist()], round(float(stepped["t_"]), 3)
([0.354, 3.182], 36.355)
"""
from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from online_ml import nearest, sync_wire
from online_ml.sync_state import (
    APPEND,
    AVG,
    LESSONS,
    MEMORY,
    RINGS,
    SOFTMAX_ARRAYS,
    SOFTMAX_STEPPED,
    STEP,
    SUM,
    NotMergeable,
    Rules,
    State,
    check_mergeable,
    fitted,
    fresh_state,
    initialise,
    rings_in,
    rules_of,
    set_state,
    state_of,
    zero_based,
)

# what a model's state is (online_ml/sync_state.py) is part of this module's interface too
__all__ = [
    "APPEND", "AVG", "Contribution", "LESSONS", "MAGIC", "MAGIC_NPZ", "MAGIC_STATE", "MEMORY",
    "NotMergeable", "RINGS", "Rules", "SOFTMAX_ARRAYS", "SOFTMAX_STEPPED", "STEP", "SUM", "State",
    "add", "check_mergeable", "compatible", "counter_delta", "counters_as_meta", "decode_state",
    "encode_state", "feedback_share", "fitted", "fresh_state", "initialise", "iter_counters",
    "merge_counters", "merge_states", "plain", "rules_of", "set_state", "state_of", "subtract",
    "zero_based"]

MAGIC = b"OMLSYNC2"
MAGIC_NPZ = b"OMLSYNC1"  # header + .npz, read only
MAGIC_STATE = b"OMLSTAT1"


def subtract(state: State, base: State | None) -> State:
    """``state - base``; a missing base is zero. A memory of records: the rows written since
    the base (``nearest.since``)."""
    if base is None:
        return {k: v.copy() for k, v in state.items()}
    rings = rings_in(state)
    out = {k: state[k] - base[k] for k in state if not any(k in ring for ring in rings)}
    for ring in rings:
        x, y, count = (state[name] for name in ring)
        out.update(zip(ring, _as_arrays(nearest.since(x, y, float(count),
                                                      float(base[ring[2]])))))
    return out


def add(a: State, b: State) -> State:
    """``a + b``; a memory of records: ``b``'s rows written after ``a``'s (``nearest.joined``)."""
    rings = rings_in(a)
    out = {k: a[k] + b[k] for k in a if not any(k in ring for ring in rings)}
    for ring in rings:
        out.update(_joined(a, [b], ring))
    return out


def _as_arrays(memory: tuple) -> tuple[np.ndarray, ...]:
    x, y, count = memory
    return x, y, np.array(float(count))


def _joined(first: State, others: Sequence[State], ring: tuple[str, str, str] = MEMORY
            ) -> State:
    """``first``'s ``ring`` (the memory of records, or the lessons) with the others' rows
    written after it, in order."""
    x, y, count = first[ring[0]], first[ring[1]], float(first[ring[2]])
    for other in others:
        x, y, count = nearest.joined(x, y, count, other[ring[0]], other[ring[1]],
                                     float(other[ring[2]]))
    return dict(zip(ring, _as_arrays((x, y, count))))


def plain(rules: Rules) -> Rules:
    """The same rules with ``step`` arrays merged as a plain weighted mean (``SYNC_MERGE_STEP``
    ``mean``; the simulation's variant ``avg1``).

    >>> plain({"coef_": STEP, "class_count_": SUM})
    {'coef_': 'avg', 'class_count_': 'sum'}
    """
    return {name: AVG if rule == STEP else rule for name, rule in rules.items()}


def merge_states(global_state: State | None, deltas: Sequence[tuple[State, int]],
                 rules: Rules, first: bool = False) -> State:
    """``global + Σ wᵢ·deltaᵢ`` (avg arrays, ``wᵢ = nᵢ/Σn``), ``global + √K·Σ wᵢ·deltaᵢ`` (step
    arrays, K deltas) and ``global + Σ deltaᵢ`` (sum arrays); append arrays (a memory of
    records): the global's rows, then each delta's, the newest that fit. A missing global is zero
    (every contribution then started from zero); then, or with ``first`` (the global is a fresh
    model's state), step arrays are averaged like avg ones."""
    if not deltas:
        if global_state is None:
            raise ValueError("nothing to merge")
        return {k: v.copy() for k, v in global_state.items()}
    total = sum(max(0, n) for _, n in deltas)
    step = 1.0 if global_state is None or first else float(np.sqrt(len(deltas)))
    out: State = {}
    for ring in rings_in(rules):  # appended, newest last; without a global, room for all of them
        start = global_state if global_state is not None else {
            ring[0]: np.zeros((sum(len(d[ring[0]]) for d, _ in deltas),
                               *np.shape(deltas[0][0][ring[0]])[1:])),
            ring[1]: np.zeros(sum(len(d[ring[1]]) for d, _ in deltas)),
            ring[2]: np.array(0.0)}
        out.update(_joined(start, [d for d, _ in deltas], ring))
    for name, rule in rules.items():
        if rule == APPEND:
            continue
        acc = (np.array(global_state[name], dtype=np.float64, copy=True) if global_state is not None
               else np.zeros_like(deltas[0][0][name], dtype=np.float64))
        for delta, n in deltas:
            if rule in (AVG, STEP):
                weight = (max(0, n) / total) if total else 1.0 / len(deltas)
                acc = acc + (step if rule == STEP else 1.0) * weight * delta[name]
            else:
                acc = acc + delta[name]
        out[name] = acc
    return out


def feedback_share(share: float, learners: int, merge_step: str = "sqrt") -> float:
    """The share of a feedback step that a learner puts straight into its averaged weights so
    that ``share`` of it reaches the merged model: a merge passes on 1/√K of one of K learners'
    step (its delta weighted 1/K, taken √K times; SYNC_MERGE_STEP sqrt) or 1/K (mean), so the
    learner scales it up by as much (README "Teaching it"; measured in bench/teaching.py).

    >>> feedback_share(0.5, 1), feedback_share(0.5, 4), feedback_share(0.5, 4, "mean")
    (0.5, 1.0, 2.0)
    """
    k = max(1, int(learners))
    return share * (k if merge_step == "mean" else float(np.sqrt(k)))


def merge_counters(base: Mapping[str, int], deltas: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Counters add up: samples, correct predictions, labels, rejected records, feedback.

    >>> merge_counters({"samples_seen": 5}, [{"samples_seen": 2, "label:3": 1}, {"label:3": 2}])
    {'samples_seen': 7, 'label:3': 3}
    """
    total: Counter[str] = Counter(dict(base))
    for d in deltas:
        total.update(d)
    return {k: int(v) for k, v in total.items()}


def counter_delta(now: Mapping[str, int], base: Mapping[str, int]) -> dict[str, int]:
    """What the counters grew by since ``base`` (only the keys that changed)."""
    return {k: int(v) - int(base.get(k, 0)) for k, v in now.items() if int(v) != int(base.get(k, 0))}


def counters_as_meta(counters: dict[str, int]) -> dict:
    """The inverse of :func:`iter_counters`: metadata fields a trainer restores from.

    >>> counters_as_meta({"samples_seen": 3, "label:1": 2, "rejected:bad_json": 1})["label_distribution"]
    {'1': 2}
    """
    meta: dict[str, Any] = {k: v for k, v in counters.items() if ":" not in k}
    meta["label_distribution"] = {k[6:]: v for k, v in counters.items() if k.startswith("label:")}
    meta["rejected_by_reason"] = {k[9:]: v for k, v in counters.items()
                                  if k.startswith("rejected:")}
    return meta


def iter_counters(snapshot: dict) -> Iterator[tuple[str, int]]:
    """The additive counters of a trainer snapshot, flat (``label:3``, ``rejected:bad_json``)."""
    for key in ("samples_seen", "correct", "evaluated", "feedback_seen", "records_rejected"):
        yield key, int(snapshot.get(key) or 0)
    for label, n in (snapshot.get("label_distribution") or {}).items():
        yield f"label:{label}", int(n)
    for reason, n in (snapshot.get("rejected_by_reason") or {}).items():
        yield f"rejected:{reason}", int(n)


# -- a contribution on the wire ------------------------------------------------------------------
@dataclass
class Contribution:
    """What one learner learned since its last contribution."""

    learner: str
    samples: int                      # records learned, the averaging weight
    delta: State
    counters: dict[str, int] = field(default_factory=dict)
    feedback_ids: list[str] = field(default_factory=list)
    base_round: int = 0
    created_at: float = 0.0

    def encode(self) -> bytes:
        """JSON header + the delta's raw float64 bytes (:mod:`online_ml.sync_wire`)."""
        return sync_wire.pack(MAGIC, {
            "learner": self.learner, "samples": self.samples, "counters": self.counters,
            "feedback_ids": self.feedback_ids, "base_round": self.base_round,
            "created_at": self.created_at}, self.delta)

    @classmethod
    def decode(cls, blob: bytes) -> Contribution:
        """Raise ValueError for anything that is not a well-formed contribution (one written
        before 2026-12-02, header + ``.npz``, is read too: it may be pending across an upgrade)."""
        try:
            if blob.startswith(MAGIC_NPZ):
                header, delta = _decode_npz(blob)
            else:
                header, delta = sync_wire.unpack(MAGIC, blob)
            return cls(learner=str(header["learner"]), samples=int(header["samples"]),
                       delta=delta,
                       counters={str(k): int(v) for k, v in header.get("counters", {}).items()},
                       feedback_ids=[str(i) for i in header.get("feedback_ids", [])],
                       base_round=int(header.get("base_round", 0)),
                       created_at=float(header.get("created_at", 0.0)))
        except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
            raise ValueError(f"malformed sync contribution: {exc}") from None


def _decode_npz(blob: bytes) -> tuple[dict, State]:
    """The format before 2026-12-02: header JSON + numpy ``.npz`` (``allow_pickle=False``)."""
    header, offset = sync_wire.read_header(MAGIC_NPZ, blob)
    with np.load(io.BytesIO(blob[offset:]), allow_pickle=False) as npz:
        return header, {k: np.asarray(npz[k], dtype=np.float64) for k in npz.files}


def encode_state(state: State) -> bytes:
    """A merged global's arrays as the learners adopt them (:mod:`online_ml.sync_wire`)."""
    return sync_wire.pack(MAGIC_STATE, {}, state)


def decode_state(blob: bytes) -> State:
    """Raise ValueError for anything that is not :func:`encode_state`'s."""
    return sync_wire.unpack(MAGIC_STATE, blob)[1]


def compatible(delta: State, rules: Rules, like: State | None) -> bool:
    """Same array names and shapes as the merger's model: a contribution of another learner type
    or shape (a misconfigured job) is dropped, not merged."""
    if set(delta) != set(rules):
        return False
    if like is None:
        return True

    def shape(k: str, arrays: State) -> tuple[int, ...]:
        # a memory's rows: as many as were written since the base, each as wide as the global's
        return np.shape(arrays[k])[1:] if rules[k] == APPEND else np.shape(arrays[k])
    return all(shape(k, delta) == shape(k, like) for k in rules)
