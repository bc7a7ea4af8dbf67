"""N parallel learners merged into one model, simulated on `digits` without Flink, Kafka or Redis.

What the job's sync (online_ml/sync_protocol.py) does, reduced to its arithmetic: the records of
every pass (digits reshuffled with the seed ``(seed, pass)``) are dealt
round-robin to N learners, as Kafka partitions would be; each learner predicts, then learns
(``OnlineLearner.learn_one``, the row UDF's path). Every ``k`` records per learner all of them
contribute ``delta_i = state_i - base_i`` with ``n_i`` samples, the merger computes
``G' = merge_states(G, [(delta_i, n_i) ...], rules)`` (online_ml/sync.py) and every learner adopts
``G'`` (in this lockstep simulation ``G' + (state - base)`` is ``G'``: nothing was learned between
contributing and adopting) and makes it its new base. A fresh SGD or NB model starts from zeros, so
its base before the first merge is None; every learner has learned at least one record before the
first merge, so it is fitted and adopting is just ``set_state`` (an unfitted one would get a copy of
a fitted learner's model, then ``set_state``: what the protocol's ``adopt_model`` does).

Variants, all in one run: one learner (the reference); N=4 without sync (each learner sees a
quarter of the stream; "the served model" is one learner's); N=4 averaging (the project's rules:
weights averaged by samples, counters summed) every k records; N=4 summing every delta at full
weight (all rules ``sum``); N=2 averaging; naive Bayes, which merges exactly by adding counts.
From the sweep it computes the recommended ``SYNC_EVERY_RECORDS`` and how many records per
learner a time-based ``SYNC_INTERVAL_SECONDS`` amounts to at the demo's rate and at row-mode
throughput. One seed is one stream order: differences of a few tenths of a point between
neighbouring k are within its noise (a pass has 1797 records), so ``--seeds 0 1 2`` gives the mean
and the recommendation per seed (three times the runtime).

    python bench/sync_sim.py [--seeds 0] [--passes 3] [--jobs 2] [--smoke]

Writes bench/results/sync_sim.json (or --out DIR).
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from online_ml import sync  # noqa: E402
from online_ml.learner import OnlineLearner, make_model  # noqa: E402

# The job's default learner (config.LEARNER_PARAMS) for "sgd"; nb takes no parameters.
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {"sgd": {"alpha": 0.001}, "nb": {}}
SWEEP = (1, 10, 25, 50, 100, 250, 1000)
SUM_EVERY = (250, 10)
NB_EVERY = 100
LEARNERS = 4
TOLERANCE_POINTS = 1.0      # issue 11: "within 1 point of N = 1"
DIVERGES_POINTS = 5.0       # summing "diverges": this far below averaging at the same k


@dataclass(frozen=True)
class Variant:
    """One way of running the stream: how many learners, how they sync, how often."""

    model: str = "sgd"
    learners: int = 1
    sync: str = "none"      # "none" | "avg" (the project's rules) | "sum" (every rule "sum")
    every: int = 0          # records per learner between merges (sync != "none")

    @property
    def name(self) -> str:
        if self.learners == 1 and self.sync == "none":
            return f"{self.model} 1 learner"
        if self.sync == "none":
            return f"{self.model} N={self.learners} no sync"
        how = "merge" if self.model == "nb" and self.sync == "avg" else self.sync
        return f"{self.model} N={self.learners} {how} k={self.every}"


@dataclass
class SimResult:
    variant: Variant
    per_pass: list[float]           # prequential accuracy of each pass, all learners together
    served_accuracy: float          # the served model on the evaluation set
    merges: int
    seconds: float
    seed: int
    served: Any = field(repr=False)            # the served model itself
    predictions: np.ndarray = field(repr=False)  # -1 where there was no prediction yet

    def row(self) -> dict:
        coef = getattr(self.served, "coef_", None)
        return {"variant": self.variant.name, "model": self.variant.model,
                "learners": self.variant.learners, "sync": self.variant.sync,
                "every": self.variant.every or None, "per_pass": self.per_pass,
                "last_pass": self.per_pass[-1], "served_accuracy": self.served_accuracy,
                "merges": self.merges, "seconds": round(self.seconds, 2),
                "coef_norm": float(np.linalg.norm(coef)) if coef is not None else None}


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X.astype(np.float64), y.astype(int)


def stream_order(n: int, passes: int, seed: int) -> np.ndarray:
    """Indices of the stream: ``passes`` permutations of ``range(n)``, pass p shuffled with the
    seed ``(seed, p)``."""
    return np.concatenate([np.random.default_rng((seed, p)).permutation(n) for p in range(passes)])


def _make_learner(model: str, params: dict | None) -> OnlineLearner:
    # No random_state, as in the job: partial_fit on one row draws a seed that only shuffles that
    # one row, so the run is deterministic anyway.
    params = dict(DEFAULT_PARAMS.get(model, {}) if params is None else params)
    return OnlineLearner(make_model(model, **params))


def _merge(learners: Sequence[OnlineLearner], bases: list, pending: list[int],
           global_state: sync.State | None, mode: str) -> sync.State | None:
    """One synchronous round: everybody contributes, the merger merges, everybody adopts."""
    deltas = []
    template = None
    for i, learner in enumerate(learners):
        state = sync.state_of(learner.model)
        if state is None or pending[i] == 0:
            continue
        if template is None:
            template = learner.model
        deltas.append((sync.subtract(state, bases[i]), pending[i]))
    if not deltas or template is None:
        return global_state
    rules = sync.rules_of(template)
    if mode == "sum":
        rules = {name: sync.SUM for name in rules}
    merged = sync.merge_states(global_state, deltas, rules)
    for i, learner in enumerate(learners):
        if not sync.fitted(learner.model):  # never happens here (k >= 1), kept for correctness
            learner.model = copy.deepcopy(template)
        sync.set_state(learner.model, merged)
        bases[i] = merged
        pending[i] = 0
    return merged


def simulate(variant: Variant, X: np.ndarray, y: np.ndarray, passes: int = 3, seed: int = 0,
             params: dict | None = None, X_eval: np.ndarray | None = None,
             y_eval: np.ndarray | None = None) -> SimResult:
    """Run ``variant`` over ``passes`` shuffled passes of ``(X, y)``; the served model is scored on
    ``(X_eval, y_eval)`` (default: ``(X, y)``)."""
    if variant.sync not in ("none", "avg", "sum"):
        raise ValueError(f"unknown sync {variant.sync!r}")
    if variant.sync != "none" and variant.every < 1:
        raise ValueError("a synced variant needs every >= 1")
    n = len(y)
    order = stream_order(n, passes, seed)
    learners = [_make_learner(variant.model, params) for _ in range(variant.learners)]
    bases: list[sync.State | None] = [None] * variant.learners
    pending = [0] * variant.learners
    global_state: sync.State | None = None
    merges = 0
    block = variant.every * variant.learners
    predictions = np.full(len(order), -1)
    correct = [0] * passes
    started = time.perf_counter()
    for j, idx in enumerate(order):
        i = j % variant.learners
        pred = learners[i].learn_one(X[idx], int(y[idx]))
        pending[i] += 1
        if pred is not None:
            predictions[j] = pred
            correct[j // n] += int(pred == y[idx])
        if variant.sync != "none" and (j + 1) % block == 0:
            global_state = _merge(learners, bases, pending, global_state, variant.sync)
            merges += 1
    if variant.sync != "none" and any(pending):  # the tail: the served model includes it all
        global_state = _merge(learners, bases, pending, global_state, variant.sync)
        merges += 1
    seconds = time.perf_counter() - started
    served = learners[0].model
    X_eval = X if X_eval is None else X_eval
    y_eval = y if y_eval is None else y_eval
    return SimResult(variant, [float(c / n) for c in correct], float(served.score(X_eval, y_eval)),
                     merges, seconds, seed, served, predictions)


def aggregate(runs: Sequence[dict]) -> dict:
    """One variant's rows of several seeds -> their mean (merges: of the first; seconds: sum)."""
    out = {k: v for k, v in runs[0].items() if k != "served_model"}
    out["per_pass"] = [float(np.mean([r["per_pass"][p] for r in runs]))
                       for p in range(len(runs[0]["per_pass"]))]
    out["last_pass"] = out["per_pass"][-1]
    out["served_accuracy"] = float(np.mean([r["served_accuracy"] for r in runs]))
    out["seconds"] = round(sum(r["seconds"] for r in runs), 2)
    if out["coef_norm"] is not None:
        out["coef_norm"] = float(np.mean([r["coef_norm"] for r in runs]))
    out["seeds"] = [{"per_pass": r["per_pass"], "served_accuracy": r["served_accuracy"]}
                    for r in runs]
    return out


# -- verdicts ------------------------------------------------------------------------------------
def loss_points(result: dict, reference: dict) -> tuple[float, float]:
    """(last-pass, served) accuracy below the reference, in points (negative: better)."""
    return (100 * (reference["last_pass"] - result["last_pass"]),
            100 * (reference["served_accuracy"] - result["served_accuracy"]))


def recommend(sweep: Sequence[dict], reference: dict, tolerance: float = TOLERANCE_POINTS
              ) -> int | None:
    """The largest k that keeps both the last pass and the served model within ``tolerance``
    points of one learner (being better is fine); None if no k does."""
    ok = [r["every"] for r in sweep if max(loss_points(r, reference)) <= tolerance]
    return max(ok) if ok else None


def summing_diverges(summed: dict, averaged: dict) -> bool:
    """Summing overshoots: its last pass is far below averaging at the same k, or no better than
    its own first pass (more data made it worse)."""
    return (100 * (averaged["last_pass"] - summed["last_pass"]) > DIVERGES_POINTS
            or summed["last_pass"] <= summed["per_pass"][0])


def time_table(sweep: Sequence[dict], reference: dict, default: int | None, learners: int,
               demo_rate: float, row_rate: float, intervals: Sequence[float]) -> list[dict]:
    """What SYNC_INTERVAL_SECONDS amounts to in records per learner, and which measured k it
    falls between; with the count trigger the effective k is the smaller of the two."""
    ks = sorted(r["every"] for r in sweep)
    by_k = {r["every"]: r for r in sweep}
    rows = []
    for label, per_learner in ((f"demo {demo_rate:g}/s over {learners}", demo_rate / learners),
                               (f"row mode {row_rate:g}/s per learner", row_rate)):
        for seconds in intervals:
            k = per_learner * seconds
            lo = max((m for m in ks if m <= k), default=None)
            hi = min((m for m in ks if m >= k), default=None)
            losses = [loss_points(by_k[m], reference)[0] for m in (lo, hi) if m is not None]
            rows.append({
                "rate": label, "interval_s": seconds, "records_per_learner": k,
                "measured_k": (f"{lo}" if lo == hi else
                               f"< {hi}" if lo is None else f"> {lo}" if hi is None
                               else f"{lo}..{hi}"),
                "loss_points": (f"{losses[0]:+.2f}" if len(set(losses)) == 1 else
                                f"{min(losses):+.2f}..{max(losses):+.2f}") if losses else None,
                "effective_k": min(k, default) if default else k,
            })
    return rows


# -- the run -------------------------------------------------------------------------------------
def variants(ks: Sequence[int], sum_every: Sequence[int], nb_every: int, learners: int
             ) -> list[Variant]:
    out = [Variant("sgd", 1), Variant("sgd", learners)]
    out += [Variant("sgd", learners, "avg", k) for k in ks]
    out += [Variant("sgd", learners, "sum", k) for k in sum_every]
    out += [Variant("sgd", 2, "avg", 100)]
    out += [Variant("nb", 1), Variant("nb", learners, "avg", nb_every)]
    return out


COLUMNS = [("variant", "variant", ""), ("pass 1", "pass_1", ".4f"), ("pass 2", "pass_2", ".4f"),
           ("pass 3", "pass_3", ".4f"), ("served", "served_accuracy", ".4f"),
           ("merges", "merges", ""), ("last vs 1 (pt)", "last_diff", "+.2f"),
           ("served vs 1 (pt)", "served_diff", "+.2f"), ("|w|", "coef_norm", ".1f"),
           ("s", "seconds", ".1f")]
TIME_COLUMNS = [("rate", "rate", ""), ("SYNC_INTERVAL_SECONDS", "interval_s", "g"),
                ("records/learner", "records_per_learner", "g"),
                ("measured k", "measured_k", ""), ("last-pass loss (pt)", "loss_points", ""),
                ("effective k", "effective_k", "g")]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="stream orders; with several, every figure is the mean over them and the "
                        "recommendation is also given per seed (each seed costs a full run)")
    p.add_argument("--passes", type=int, default=3)
    p.add_argument("--learners", type=int, default=LEARNERS)
    p.add_argument("--every", type=int, nargs="+", default=list(SWEEP),
                   help="records per learner between merges (averaging sweep)")
    p.add_argument("--demo-rate", type=float, default=10.0,
                   help="records/s of kafka_producer.py's demo, shared by all learners")
    p.add_argument("--row-rate", type=float, default=270.0,
                   help="records/s per learner in row mode (issue 11, throughput benchmark)")
    p.add_argument("--intervals", type=float, nargs="+", default=[1.0, 2.0, 5.0],
                   help="SYNC_INTERVAL_SECONDS values to translate into records per learner")
    p.add_argument("--smoke", action="store_true",
                   help="300 records, 2 passes, k in 1 10 100: that it runs (numbers mean nothing)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="variants simulated in parallel (processes; default: 2 or the cores)")
    p.add_argument("--quiet", action="store_true", help="no tables on stdout (JSON only)")
    p.add_argument("--out", type=Path, default=None,
                   help="where sync_sim.json goes (default bench/results)")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")

    sys.path.insert(0, str(ROOT / "bench"))
    import common  # the reporting helpers; imported here so simulate() needs none of it

    started = time.time()
    X, y = load_digits_arrays()
    Xs, ys = (X[:300], y[:300]) if args.smoke else (X, y)
    passes = 2 if args.smoke else args.passes
    ks = [1, 10, 100] if args.smoke else sorted(set(args.every))
    sum_every = [k for k in SUM_EVERY if k in ks] or [max(ks)]

    order = variants(ks, sum_every, NB_EVERY, args.learners)
    ref_v = Variant("sgd", 1)
    sweep_v = [Variant("sgd", args.learners, "avg", k) for k in ks]
    runs: dict[tuple[Variant, int], dict] = {}   # (variant, seed) -> row + served model
    # Independent simulations run side by side, one process per core: the reference and the
    # sweep first, so that "N=2 at the recommended k" can start as soon as they are done.
    first = {(v, s) for v in [ref_v, *sweep_v] for s in args.seeds}
    todo = sorted(((v, s) for v in order for s in args.seeds),
                  key=lambda t: (t not in first, t[0].model == "nb"))

    def submit(pool: ProcessPoolExecutor, v: Variant, seed: int):
        return pool.submit(simulate, v, Xs, ys, passes, seed, None, X, y)

    def mean_of(v: Variant) -> dict:
        return aggregate([runs[(v, s)] for s in args.seeds])

    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        running = {submit(pool, v, s) for v, s in todo}
        follow_up = None
        while running:
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                res = future.result()
                runs[(res.variant, res.seed)] = dict(res.row(), served_model=res.served)
                common.progress(f"{res.variant.name} (seed {res.seed}): last pass "
                                f"{res.per_pass[-1]:.4f}, served {res.served_accuracy:.4f}, "
                                f"{res.merges} merges, {res.seconds:.1f} s")
            if follow_up is None and first <= runs.keys():
                default = recommend([mean_of(v) for v in sweep_v], mean_of(ref_v))
                follow_up = Variant("sgd", 2, "avg", default or min(ks))
                order.insert(order.index(Variant("sgd", 2, "avg", 100)) + 1, follow_up)
                for s in args.seeds:
                    if (follow_up, s) not in runs and (follow_up, s) not in todo:
                        running.add(submit(pool, follow_up, s))
    results = {v: mean_of(v) for v in dict.fromkeys(order)}
    ref = results[ref_v]
    sweep = [results[v] for v in sweep_v]
    per_seed_default = {s: recommend([runs[(v, s)] for v in sweep_v], runs[(ref_v, s)])
                        for s in args.seeds}
    nb_ref = results[Variant("nb", 1)]

    rows = []
    for r in results.values():
        reference = nb_ref if r["model"] == "nb" else ref
        row = dict(r)
        row.update({f"pass_{i + 1}": a for i, a in enumerate(r["per_pass"])},
                   last_diff=100 * (r["last_pass"] - reference["last_pass"]),
                   served_diff=100 * (r["served_accuracy"] - reference["served_accuracy"]))
        rows.append(row)

    nb_exact = all(
        np.array_equal(a.feature_count_, b.feature_count_)
        and np.array_equal(a.class_count_, b.class_count_)
        for a, b in ((runs[(Variant("nb", 1), s)]["served_model"],
                      runs[(Variant("nb", args.learners, "avg", NB_EVERY), s)]["served_model"])
                     for s in args.seeds))
    diverges = {k: summing_diverges(results[Variant("sgd", args.learners, "sum", k)],
                                    results[Variant("sgd", args.learners, "avg", k)])
                for k in sum_every if Variant("sgd", args.learners, "avg", k) in results}
    times = time_table(sweep, ref, default, args.learners, args.demo_rate, args.row_rate,
                       args.intervals)
    at_default = next((r for r in sweep if r["every"] == default), None)
    targets = [
        common.target(f"N={args.learners} avg k={default}: last pass below 1 learner (pt)",
                      round(loss_points(at_default, ref)[0], 2) if at_default else None,
                      TOLERANCE_POINTS, "<="),
        common.target(f"N={args.learners} avg k={default}: served model below 1 learner (pt)",
                      round(loss_points(at_default, ref)[1], 2) if at_default else None,
                      TOLERANCE_POINTS, "<="),
    ]
    elapsed = time.time() - started
    verdicts = {
        "recommended_sync_every_records": default,
        "recommended_per_seed": {str(k): v for k, v in per_seed_default.items()},
        "summing_diverges": {str(k): v for k, v in diverges.items()},
        "nb_merged_equals_single_learner": nb_exact,
        "runtime_s": round(elapsed, 1),
    }

    n_pass = len(ys)
    seeds_text = (f"seed {args.seeds[0]}" if len(args.seeds) == 1 else
                  f"mean over seeds {' '.join(map(str, args.seeds))}")
    lines = [
        common.table(f"sync simulation: digits ({n_pass} records/pass, {passes} passes, "
                     f"{seeds_text}), learn_one per record, prequential accuracy per pass of all "
                     "learners together; served = the merged model (no sync: learner 1's) on all "
                     f"{len(y)} digits; diffs vs 1 learner of the same model", COLUMNS, rows),
        "",
        common.table("time-based sync in records per learner (measured k from the averaging "
                     f"sweep at N={args.learners}; effective k = min(interval, "
                     f"SYNC_EVERY_RECORDS={default}))", TIME_COLUMNS, times),
        "",
        common.targets_table(targets),
        "",
        f"recommended SYNC_EVERY_RECORDS = {default}  (largest k with last-pass and served "
        f"accuracy at most {TOLERANCE_POINTS:g} point below 1 learner)" if default else
        f"no k keeps both within {TOLERANCE_POINTS:g} point of 1 learner: no recommended default",
    ]
    if len(args.seeds) > 1:
        lines.append("recommended per seed: " + ", ".join(
            f"seed {s}: {k}" for s, k in per_seed_default.items()))
    for k, d in diverges.items():
        r = results[Variant("sgd", args.learners, "sum", k)]
        a = results[Variant("sgd", args.learners, "avg", k)]
        lines.append(f"summing at k={k}: {'DIVERGES' if d else 'does not diverge'} (last pass "
                     f"{r['last_pass']:.4f} vs averaging {a['last_pass']:.4f}, |w| "
                     f"{r['coef_norm']:.1f} vs {a['coef_norm']:.1f})")
    lines.append(f"nb merged every {NB_EVERY} == nb single learner (same counts): {nb_exact}")
    lines.append(f"runtime {elapsed:.1f} s")
    text = "\n".join(lines)

    parameters = {"seeds": args.seeds, "passes": passes, "records_per_pass": n_pass,
                  "learners": args.learners, "every": ks, "sum_every": sum_every,
                  "nb_every": NB_EVERY, "params": DEFAULT_PARAMS, "demo_rate": args.demo_rate,
                  "row_rate": args.row_rate, "intervals": args.intervals}
    path = common.write_result("sync_sim", parameters, {"rows": rows, "time_based": times},
                               targets, common.machine_info(), started, args.smoke, args.out,
                               extra={"verdicts": verdicts})
    common.finish(path, rows, targets, text, args.smoke, args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
