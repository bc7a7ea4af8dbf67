"""Run the benchmarks against the local stack (`make up` first): one table per benchmark, JSON in
bench/results/<name>.json with the machine, the parameters and the results.

    python bench/run.py                          # everything, full size (about 40 minutes)
    python bench/run.py --smoke                  # tiny sizes: checks that each benchmark runs
    python bench/run.py --only serving freshness
    python bench/run.py --only throughput --records 2000000 --batch-sizes 500 2000
    python bench/run.py --only scaleout --scaleout-variants row-1 row-2 row-4-off
    python bench/run.py --only jobmanager_ha    # JobManager kill -9: watcher vs ZooKeeper HA
    python bench/run.py --only recovery         # the fault tests, 3 runs: the recovery table

jobmanager_ha kills the JobManager under the running job, the stack's job watcher against Flink's
ZooKeeper high availability, each on a private stack instance of its own (never the stack on the
default ports); it takes about 40 minutes, so `--smoke` leaves it out unless named with --only;
so does recovery (the fault tests of tests/test_recovery.py and tests/test_jobmanager.py, run
several times on a private instance, about 8 minutes per run).

Benchmarks: throughput (training, end to end through Kafka and Flink), serving (POST /predict
latency, project server vs the tutorial's way), freshness (labelled record in Kafka -> first
prediction by a model that learned it) and scaleout (the job at parallelism 1, 2 and 4 on one and
two TaskManagers, merged learners against independent ones) and handwriting (real people's digits
drawn as the board sends them: accuracy of the served model and of the tutorial's pipeline, the
feature ablation, calibration; offline, no services). Each compares its variants within
one run, so the ratios hold on a busy machine even when the absolute numbers move. They use their
own topics, consumer groups and Redis keys (db BENCH_REDIS_DB, default 2) and remove them at the
end.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
import traceback
from pathlib import Path

import common
import serving
import throughput

from online_ml.harness.paths import instance_environment

BENCHMARKS = ("throughput", "serving", "freshness", "scaleout", "handwriting", "jobmanager_ha",
              "recovery")
# too slow for a smoke run (each trial restarts JVMs: minutes): only when named with --only
NOT_IN_SMOKE = ("jobmanager_ha", "recovery")
# Params attribute <- command-line option, per benchmark module
OVERRIDES = {
    "throughput": {"records": "records", "seconds": "seconds", "batch_sizes": "batch_sizes",
                   "variants": "variants"},
    "serving": {"concurrency": "concurrency", "seconds": "serve_seconds", "servers": "servers"},
    "freshness": {"intervals": "intervals", "trials": "trials", "mode": "mode"},
    "scaleout": {"passes": "passes", "variants": "scaleout_variants"},
    "handwriting": {},
    "jobmanager_ha": {"trials": "ha_trials", "variants": "ha_variants", "extras": "ha_extras",
                      "jars": "jars", "session_timeout_ms": "zk_session_timeout_ms"},
    "recovery": {"runs": "recovery_runs"},
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", choices=BENCHMARKS,
                   help="benchmarks to run (default: all; with --smoke all but "
                        f"{', '.join(NOT_IN_SMOKE)})")
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes: that each benchmark runs and writes valid JSON (for CI)")
    p.add_argument("--quiet", action="store_true", help="no tables on stdout (JSON only)")
    p.add_argument("--verbose", action="store_true", help="tracebacks of failed benchmarks")
    p.add_argument("--markdown", action="store_true",
                   help="also print each table in Markdown (for the README)")
    p.add_argument("--out", metavar="DIR",
                   help="where the JSON files go (default bench/results, env BENCH_RESULTS_DIR)")
    t = p.add_argument_group("throughput")
    t.add_argument("--records", type=int, metavar="N",
                   help="records preloaded into the source topic")
    t.add_argument("--seconds", type=float, metavar="S",
                   help="seconds of sink output per Flink variant")
    t.add_argument("--batch-sizes", type=int, nargs="+", metavar="B",
                   help="BATCH_SIZE values of the batch UDF")
    t.add_argument("--variants", nargs="+", choices=throughput.Params.all_variants,
                   help="throughput variants to run (default: "
                        f"{' '.join(throughput.Params.variants)})")
    s = p.add_argument_group("serving")
    s.add_argument("--concurrency", type=int, nargs="+", metavar="C",
                   help="client threads (default 1 8 32)")
    s.add_argument("--serve-seconds", type=float, metavar="S",
                   help="seconds of load per server and level")
    s.add_argument("--servers", nargs="+", choices=serving.SERVERS,
                   help=f"servers to measure (default: {', '.join(serving.Params.servers)})")
    f = p.add_argument_group("freshness")
    f.add_argument("--intervals", type=float, nargs="+", metavar="S",
                   help="BACKUP_INTERVAL_SECONDS values (default 10 1)")
    f.add_argument("--trials", type=int, metavar="N", help="trials per interval")
    f.add_argument("--mode", choices=("row", "batch"), help="UDF_MODE of the freshness jobs")
    o = p.add_argument_group("scaleout")
    o.add_argument("--passes", type=int, metavar="P",
                   help="passes over digits preloaded into the source topic (default 3)")
    o.add_argument("--scaleout-variants", nargs="+", metavar="V",
                   help="jobs to run: <row|batch>-<N>[-off][-<k>tm], e.g. row-1 row-4 row-4-off "
                        "batch-2-2tm (default: N=1, 2, 4 in both modes, row N=4 without sync, "
                        "row N=2 and 4 on two TaskManagers)")
    j = p.add_argument_group("jobmanager_ha")
    j.add_argument("--ha-trials", type=int, metavar="T", help="JobManager kills per variant (3)")
    j.add_argument("--ha-variants", nargs="+", metavar="V",
                   help="watcher, zookeeper (Flink's ZooKeeper session timeout), zookeeper-<N>s "
                        "(N s session timeout); default: watcher zookeeper zookeeper-10s")
    j.add_argument("--ha-extras", action=argparse.BooleanOptionalAction, default=None,
                   help="also a cancelled and a FAILED job per variant (default: yes)")
    j.add_argument("--jars", metavar="DIR",
                   help="jars fetched by `make install` (default: the stack instance's)")
    j.add_argument("--zk-session-timeout-ms", type=int, metavar="MS",
                   help="Flink's ZooKeeper session timeout (default: Flink's)")
    r = p.add_argument_group("recovery")
    r.add_argument("--recovery-runs", type=int, metavar="N",
                   help="runs of the fault tests on a private instance (3)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.out:
        common.RESULTS = Path(args.out).resolve()
    os.environ.update(instance_environment())  # another stack instance: its REST URL, CLI conf
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)  # its event-loop timing warnings
    failed: list[str] = []
    started = time.monotonic()
    only = args.only or [b for b in BENCHMARKS if not (args.smoke and b in NOT_IN_SMOKE)]
    for name in BENCHMARKS:
        if name not in only:
            continue
        try:
            module = importlib.import_module(name)
            params = module.Params.smoke() if args.smoke else module.Params()
            for attr, arg in OVERRIDES[name].items():
                value = getattr(args, arg)
                if value is not None:
                    setattr(params, attr, tuple(value) if isinstance(value, list) else value)
            result = module.run(params, smoke=args.smoke, quiet=args.quiet)
            if args.markdown:
                print(common.markdown_table(module.COLUMNS, result["rows"]) + "\n\n"
                      + common.markdown_targets(result["targets"]) + "\n")
        except KeyboardInterrupt:
            print(f"\ninterrupted during {name}; its jobs, topics and keys were removed",
                  file=sys.stderr)
            return 130
        except Exception as exc:  # one clear line per failed benchmark; the others still run
            if args.verbose:
                traceback.print_exc()
            print(f"error: benchmark {name} failed: {exc.__class__.__name__}: {exc}",
                  file=sys.stderr)
            failed.append(name)
    common.progress(f"done in {time.monotonic() - started:.0f} s"
                    + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
