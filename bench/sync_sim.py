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
weights averaged by samples with the √K step, counters summed) every k records; the same with
SGD's ``t_`` summed (``avg-tsum``) and with the plain mean, no √K step (``avg1``); N=4 summing
every delta at full weight (all rules ``sum``); N=2 averaging; naive Bayes, which merges exactly
by adding counts. From the sweep it computes the largest k within one point of one learner in
lockstep (an upper bound for the job, whose learners are not in lockstep: bench/sync_live.py
measures the job's protocol and picks ``SYNC_EVERY_RECORDS``) and how many records per
learner a time-based ``SYNC_INTERVAL_SECONDS`` amounts to at the demo's rate and at row-mode
throughput. One seed is one stream order: differences of a few tenths of a point between
neighbouring k are within its noise (a pass has 1797 records), so ``--seeds 0 1 2`` gives the mean
and the largest k per seed (three times the runtime).

    python bench/sync_sim.py [--seeds 0] [--passes 3] [--jobs 2] [--smoke]

Writes bench/results/sync_sim.json (or --out DIR).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import common  # bench/ is on sys.path: this script's own folder
import numpy as np

from online_ml.config import JOB_LEARNER_PARAMS, Settings
from online_ml.sync_sim import (
    TOLERANCE_POINTS,
    Variant,
    aggregate,
    load_digits_arrays,
    loss_points,
    recommend,
    simulate,
    summing_diverges,
)

SWEEP = (1, 10, 25, 50, 100, 250, 1000)
SUM_EVERY = (250, 10)
NB_EVERY = 100
LEARNERS = 4
TSUM_EVERY = (10, 100)  # the former rule (SGD's t_ summed) next to today's (averaged)
AVG1_EVERY = (10, 100, 250)  # the plain average (no √K step) next to today's rule
SOFTMAX_EVERY = 10  # LEARNER=softmax at N=4: the √K step and the plain mean


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
def variants(ks: Sequence[int], sum_every: Sequence[int], nb_every: int, learners: int,
             tsum_every: Sequence[int] = (), avg1_every: Sequence[int] = ()) -> list[Variant]:
    out = [Variant("sgd", 1), Variant("sgd", learners)]
    out += [Variant("sgd", learners, "avg", k) for k in ks]
    out += [Variant("sgd", learners, "avg-tsum", k) for k in tsum_every]
    out += [Variant("sgd", learners, "avg1", k) for k in avg1_every]
    out += [Variant("sgd", learners, "sum", k) for k in sum_every]
    out += [Variant("sgd", 2, "avg", 100)]
    out += [Variant("nb", 1), Variant("nb", learners, "avg", nb_every)]
    out += [Variant("softmax", 1), Variant("softmax", learners, "avg", SOFTMAX_EVERY),
            Variant("softmax", learners, "avg1", SOFTMAX_EVERY)]
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

    started = time.time()
    X, y = load_digits_arrays()
    Xs, ys = (X[:300], y[:300]) if args.smoke else (X, y)
    passes = 2 if args.smoke else args.passes
    ks = [1, 10, 100] if args.smoke else sorted(set(args.every))
    sum_every = [k for k in SUM_EVERY if k in ks] or [max(ks)]
    tsum_every = [k for k in TSUM_EVERY if k in ks]
    avg1_every = [k for k in AVG1_EVERY if k in ks]

    order = variants(ks, sum_every, NB_EVERY, args.learners, tsum_every, avg1_every)
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
    configured = Settings().sync_every_records
    per_seed_default = {s: recommend([runs[(v, s)] for v in sweep_v], runs[(ref_v, s)])
                        for s in args.seeds}

    refs = {r["model"]: r for r in results.values() if r["learners"] == 1}
    rows = []
    for r in results.values():
        reference = refs[r["model"]]
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
    # the √K step against the plain average: (last-pass, served) gain in points per k
    step_gain = {k: loss_points(results[Variant("sgd", args.learners, "avg1", k)],
                                results[Variant("sgd", args.learners, "avg", k)])
                 for k in avg1_every}
    times = time_table(sweep, ref, configured, args.learners, args.demo_rate, args.row_rate,
                       args.intervals)
    at_default = next((r for r in sweep if r["every"] == configured), None)
    targets = [
        common.target(f"N={args.learners} avg k={configured} (the default): last pass below 1 "
                      "learner (pt)",
                      round(loss_points(at_default, ref)[0], 2) if at_default else None,
                      TOLERANCE_POINTS, "<="),
        common.target(f"N={args.learners} avg k={configured} (the default): served model below "
                      "1 learner (pt)",
                      round(loss_points(at_default, ref)[1], 2) if at_default else None,
                      TOLERANCE_POINTS, "<="),
    ]
    elapsed = time.time() - started
    verdicts = {
        "lockstep_largest_sync_every_records": default,
        "configured_sync_every_records": configured,
        "recommended_per_seed": {str(k): v for k, v in per_seed_default.items()},
        "summing_diverges": {str(k): v for k, v in diverges.items()},
        "sqrt_step_gain_points": {str(k): [round(a, 2), round(b, 2)]
                                  for k, (a, b) in step_gain.items()},
        "sqrt_step_helps_at_default": (configured in step_gain
                                       and min(step_gain[configured]) >= 0),
        "nb_merged_equals_single_learner": nb_exact,
        "softmax_below_1_learner_points": {
            f"{v.sync} k={v.every}": [round(a, 2) for a in loss_points(r, refs["softmax"])]
            for v, r in results.items() if v.model == "softmax" and v.learners > 1},
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
                     f"SYNC_EVERY_RECORDS={configured}))", TIME_COLUMNS, times),
        "",
        common.targets_table(targets),
        "",
        f"largest k in lockstep with last-pass and served accuracy at most "
        f"{TOLERANCE_POINTS:g} point below 1 learner: {default} (an upper bound: the job's "
        f"learners are not in lockstep; bench/sync_live.py measures its protocol and picks the "
        f"default, SYNC_EVERY_RECORDS={configured})" if default else
        f"no k keeps both within {TOLERANCE_POINTS:g} point of 1 learner: no recommended default",
    ]
    if len(args.seeds) > 1:
        lines.append("largest k in lockstep per seed: " + ", ".join(
            f"seed {s}: {k}" for s, k in per_seed_default.items()))
    for k, d in diverges.items():
        r = results[Variant("sgd", args.learners, "sum", k)]
        a = results[Variant("sgd", args.learners, "avg", k)]
        lines.append(f"summing at k={k}: {'DIVERGES' if d else 'does not diverge'} (last pass "
                     f"{r['last_pass']:.4f} vs averaging {a['last_pass']:.4f}, |w| "
                     f"{r['coef_norm']:.1f} vs {a['coef_norm']:.1f})")
    soft = {v.sync: loss_points(results[v], refs["softmax"]) for v in results
            if v.model == "softmax" and v.learners > 1}
    for sync_mode, label in (("avg", "the √K step"), ("avg1", "the plain mean")):
        if sync_mode in soft:
            lines.append(f"softmax N={args.learners} k={SOFTMAX_EVERY}, {label}: last pass "
                         f"{soft[sync_mode][0]:.2f} pt, served {soft[sync_mode][1]:.2f} pt "
                         "below 1 learner")
    for k, (a, b) in step_gain.items():
        lines.append(f"the √K step at k={k}, against the plain average: last pass {a:+.2f} pt, "
                     f"served {b:+.2f} pt")
    lines.append(f"nb merged every {NB_EVERY} == nb single learner (same counts): {nb_exact}")
    lines.append(f"runtime {elapsed:.1f} s")
    text = "\n".join(lines)

    parameters = {"seeds": args.seeds, "passes": passes, "records_per_pass": n_pass,
                  "learners": args.learners, "every": ks, "sum_every": sum_every,
                  "nb_every": NB_EVERY, "params": JOB_LEARNER_PARAMS, "demo_rate": args.demo_rate,
                  "row_rate": args.row_rate, "intervals": args.intervals}
    path = common.write_result("sync_sim", parameters, {"rows": rows, "time_based": times},
                               targets, common.machine_info(), started, args.smoke, args.out,
                               extra={"verdicts": verdicts})
    common.finish(path, rows, targets, text, args.smoke, args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
