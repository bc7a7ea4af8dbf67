"""N parallel learners through the job's real sync protocol, in one process, against Redis.

bench/sync_sim.py runs the merge arithmetic in lockstep: every learner contributes and adopts in
the same round. The job's learners do not: each ticks on its own every ``SYNC_EVERY_RECORDS``
records, hands its delta over when its previous one is merged, and adopts a merge when it sees
it, so a merge reaches a learner later than in lockstep. This benchmark measures what that costs
and picks the sync interval under it: N :class:`~online_ml.trainer.Trainer`\\ s (the job's UDF
without Flink) in threads, each standing in for one subtask, against the stack's real Redis
(db BENCH_REDIS_DB), the records of three shuffled passes of `digits` (the sim's stream order)
dealt round-robin to them as Kafka partitions would be, in bundles as the Python worker hands
them over (batch mode: ``process_many``, the batch UDF's path; ``--mode row``: ``process``).

Per variant and seed: prequential accuracy per pass (each record in the pass it belongs to), the
served model (what the last learner published on its clean stop) on all of `digits`, and the
merges; the mean over the seeds is compared with one learner on the same stream. The learners'
deltas merge with the √K step (``SYNC_MERGE_STEP=sqrt``, online_ml/sync.py); ``--mean-every``
also runs the plain mean of the deltas, the rule before it. Threads share
one interpreter, so timings and throughput mean nothing here (bench/scaleout.py measures those
through Flink); what counts is the order in which learning, contributions and merges interleave.

    python bench/sync_live.py [--seeds 0 1 2 3] [--every 10 25 50] [--mean-every 10]
                              [--learners 4] [--mode batch|row] [--smoke]

Needs Redis (``make up``). Writes bench/results/sync_live.json (or --out DIR).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import common  # bench/ is on sys.path: this script's own folder
import numpy as np

from online_ml.config import Settings
from online_ml.model_store import ModelStore
from online_ml.producer import make_message
from online_ml.sync_sim import TOLERANCE_POINTS, aggregate, load_digits_arrays, stream_order
from online_ml.trainer import Trainer

EVERY = (10, 25, 50)
MEAN_EVERY = (10,)  # the plain mean of the deltas (SYNC_MERGE_STEP=mean) next to the √K step
LEARNERS = 4
BUNDLE = 100  # records handed to a learner at once (a Python worker's bundle)


def run_variant(settings: Settings, learners: int, every: int, seed: int, mode: str,
                passes: int, X: np.ndarray, y: np.ndarray, X_eval: np.ndarray,
                y_eval: np.ndarray, bundle: int = BUNDLE, step: str = "sqrt") -> dict:
    """One stream through ``learners`` Trainers; returns its row."""
    key = f"bench_sync_live_{uuid.uuid4().hex[:8]}"
    cfg = dataclasses.replace(settings, model_key=key, sync_every_records=every,
                              sync_merge_step=step)
    order = stream_order(len(y), passes, seed)
    values = [make_message(X[i].astype(int).tolist(), int(y[i]),
                           ts="2024-01-01 12:00:00").decode() for i in order]
    hits: list[list[bool]] = [[] for _ in range(passes)]
    trainers: list[Trainer | None] = [None] * learners
    errors: list[BaseException] = []
    lock = threading.Lock()

    def learner(k: int) -> None:
        try:
            t = Trainer(cfg, learners=learners)
            trainers[k] = t
            t.start_background_backups()
            mine = list(range(k, len(values), learners))
            for s in range(0, len(mine), bundle):
                part = mine[s:s + bundle]
                if mode == "batch":
                    outs = t.process_many([values[j] for j in part])[0]
                    preds = [json.loads(o[0][1])["predict_y"] for o in outs]
                else:
                    preds = [t.process(values[j])[2] for j in part]
                with lock:
                    for j, pred in zip(part, preds):
                        hits[j // len(y)].append(pred == int(y[order[j]]))
            t.close()
        except BaseException as exc:  # reported below: a benchmark must not hide a failure
            errors.append(exc)

    started = time.perf_counter()
    threads = [threading.Thread(target=learner, args=(k,)) for k in range(learners)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    seconds = time.perf_counter() - started
    if errors:
        raise errors[0]
    store = ModelStore(cfg.redis_client(), key)
    try:
        served = store.load()
        if served is None:
            raise RuntimeError(f"no model was published under {key}")
        row = {"learners": learners, "every": every if learners > 1 else None, "seed": seed,
               "mode": mode, "merge_step": step, "per_pass": [float(np.mean(h)) for h in hits],
               "served_accuracy": float(np.mean(served.model.predict(X_eval) == y_eval)),
               "samples_seen": int(served.meta.get("samples_seen", 0)),
               "merges": max(t.sync.merges for t in trainers if t is not None),
               "contributions": sum(t.sync.contributions_sent for t in trainers if t is not None),
               "seconds": round(seconds, 2)}
    finally:
        common.delete_model_keys(cfg, [key])
    row["last_pass"] = row["per_pass"][-1]
    return row


def mean_rows(rows: Sequence[dict]) -> dict:
    """One variant's rows of several seeds -> their mean (sync_sim's aggregate; merges: the
    mean, not the first seed's)."""
    out = aggregate(rows)
    out.pop("seed")
    out["merges"] = int(np.mean([r["merges"] for r in rows]))
    return out


COLUMNS = [("variant", "variant", ""), ("pass 1", "pass_1", ".4f"), ("pass 2", "pass_2", ".4f"),
           ("pass 3", "pass_3", ".4f"), ("served", "served_accuracy", ".4f"),
           ("merges", "merges", ""), ("last vs 1 (pt)", "last_diff", "+.2f"),
           ("served vs 1 (pt)", "served_diff", "+.2f")]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    p.add_argument("--every", type=int, nargs="+", default=list(EVERY),
                   help="SYNC_EVERY_RECORDS values to run")
    p.add_argument("--mean-every", type=int, nargs="*", default=list(MEAN_EVERY),
                   help="SYNC_EVERY_RECORDS values to run also with SYNC_MERGE_STEP=mean")
    p.add_argument("--learners", type=int, default=LEARNERS)
    p.add_argument("--mode", choices=("batch", "row"), default="batch")
    p.add_argument("--passes", type=int, default=3)
    p.add_argument("--bundle", type=int, default=BUNDLE,
                   help="records handed to a learner at once (the job's batch UDF gets an Arrow "
                        "batch of up to BATCH_SIZE: on a preloaded topic, a partition at once)")
    p.add_argument("--smoke", action="store_true",
                   help="300 records, 2 passes, one seed, k=10: that it runs (numbers mean nothing)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    started = time.time()
    settings = Settings.from_env(redis_db=common.BENCH_REDIS_DB)
    X, y = load_digits_arrays()
    Xs, ys = (X[:300], y[:300]) if args.smoke else (X, y)
    passes = 2 if args.smoke else args.passes
    seeds = args.seeds[:1] if args.smoke else args.seeds
    ks = [10] if args.smoke else sorted(set(args.every))
    configured = Settings().sync_every_records

    def run_all(learners: int, k: int, step: str = "sqrt") -> dict:
        rows = []
        for s in seeds:
            r = run_variant(settings, learners, k, s, args.mode, passes, Xs, ys, X, y,
                            bundle=args.bundle, step=step)
            common.progress(f"N={learners} k={k if learners > 1 else '-'} {step} seed {s}: last pass "
                            f"{r['last_pass']:.4f}, served {r['served_accuracy']:.4f}, "
                            f"{r['merges']} merges, {r['seconds']:.1f} s")
            rows.append(r)
        return mean_rows(rows)

    ref = run_all(1, configured)
    ref["variant"] = "1 learner"
    sweep = []
    for k in ks:
        r = run_all(args.learners, k)
        r["variant"] = f"N={args.learners} k={k}"
        sweep.append(r)
    means = []
    for k in [] if args.smoke else args.mean_every:
        r = run_all(args.learners, k, "mean")
        r["variant"] = f"N={args.learners} k={k}, plain mean"
        means.append(r)
    rows = []
    for r in [ref, *sweep, *means]:
        r.update({f"pass_{i + 1}": a for i, a in enumerate(r["per_pass"])},
                 last_diff=100 * (r["last_pass"] - ref["last_pass"]),
                 served_diff=100 * (r["served_accuracy"] - ref["served_accuracy"]))
        rows.append(r)
    within = [r["every"] for r in sweep
              if -r["last_diff"] <= TOLERANCE_POINTS and -r["served_diff"] <= TOLERANCE_POINTS]
    recommended = max(within) if within else None
    at_default = next((r for r in sweep if r["every"] == configured), None)
    targets = [
        common.target(f"N={args.learners} k={configured} (the default): last pass below 1 "
                      "learner (pt)", round(-at_default["last_diff"], 2) if at_default else None,
                      TOLERANCE_POINTS, "<="),
        common.target(f"N={args.learners} k={configured} (the default): served model below 1 "
                      "learner (pt)", round(-at_default["served_diff"], 2) if at_default else None,
                      TOLERANCE_POINTS, "<="),
    ]
    verdicts = {"recommended_sync_every_records": recommended,
                "default_is_recommended": recommended == configured,
                "configured_sync_every_records": configured}
    seeds_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"mean over seeds {' '.join(map(str, seeds))}"
    text = "\n".join([
        common.table(f"sync through the job's protocol, in one process against Redis: digits "
                     f"({len(ys)} records/pass, {passes} passes, {seeds_text}), {args.mode} mode, "
                     f"bundles of {args.bundle}; diffs vs 1 learner", COLUMNS, rows),
        "", common.targets_table(targets), "",
        (f"largest SYNC_EVERY_RECORDS within {TOLERANCE_POINTS:g} point of 1 learner: "
         f"{recommended} (configured default: {configured})") if recommended else
        f"no k keeps both within {TOLERANCE_POINTS:g} point of 1 learner "
        f"(configured default: {configured})",
    ])
    parameters = {"seeds": seeds, "passes": passes, "records_per_pass": len(ys),
                  "learners": args.learners, "every": ks, "mean_every": args.mean_every,
                  "mode": args.mode, "bundle": args.bundle}
    path = common.write_result("sync_live", parameters, {"rows": rows}, targets,
                               common.machine_info(settings), started, args.smoke, args.out,
                               extra={"verdicts": verdicts})
    common.finish(path, rows, targets, text, args.smoke, args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
