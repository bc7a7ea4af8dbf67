"""Recovery without loss, measured: the fault tests run several times, their figures aggregated.

The README's recovery table (how long until the job runs again after a TaskManager ``kill -9``, a
Kafka broker restart and a JobManager ``kill -9``; records lost; duplicates) comes from here, not
from runs added up by hand. Each run is ``pytest -s`` of tests/test_recovery.py (TaskManager and
Kafka) and tests/test_jobmanager.py's kill test, on a private stack instance
(online_ml.harness.instance: its own state folder and ports; the tests kill its services, never
those on the default ports). Each test appends its figures to a JSON-lines file
(online_ml.harness.measurements) once every assertion of it held, so a run that failed a test
counts as a failed run, not as a figure. Ranges are min-max over the runs; the verdicts are
computed: the deadlines the tests assert, and no acknowledged record lost.

    python bench/recovery.py [--runs 3]          # about 8 minutes per run here
    python bench/run.py --only recovery
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import common

from online_ml.harness.instance import Instance
from online_ml.harness.measurements import VARIABLE, read
from online_ml.harness.paths import PY, ROOT

TESTS = ["tests/test_recovery.py::test_taskmanager_killed_mid_stream",
         "tests/test_recovery.py::test_kafka_broker_restarted_under_job",
         "tests/test_jobmanager.py::test_jobmanager_killed_the_watcher_brings_the_job_back"]
FAULTS = {"taskmanager_kill": "TaskManager JVM kill -9",
          "kafka_restart": "Kafka broker stopped, then restarted",
          "jobmanager_kill": "JobManager JVM kill -9 (job watcher resubmits)"}
# the deadlines the tests assert (tests/test_recovery.py RECOVERY_DEADLINE; issue 8's 60 s
# after the JobManager is back)
DEADLINES = {"taskmanager_kill": ("running_s", 90.0), "kafka_restart": ("prediction_s", 90.0),
             "jobmanager_kill": ("after_jm_s", 60.0)}
COLUMNS = [("fault", "fault", ""), ("runs", "runs", ""), ("job running again s", "running", ""),
           ("after the JobManager was back s", "after_jm", ""),
           ("first new prediction s", "prediction", ""), ("broker down s", "down", ""),
           ("acknowledged", "acked", ""), ("lost", "lost", ""), ("duplicates", "duplicates", ""),
           ("load", "load", "")]


@dataclass
class Params:
    runs: int = 3
    timeout: float = 1800.0  # per pytest run

    @classmethod
    def smoke(cls) -> Params:
        return cls(runs=1)


def span(values: list, spec: str = ".1f") -> str:
    """'a–b' over ``values`` (one value alone; '' without any)."""
    values = [v for v in values if v is not None]
    if not values:
        return ""
    lo, hi = min(values), max(values)
    return format(lo, spec) if lo == hi else f"{format(lo, spec)}–{format(hi, spec)}"


def aggregate(measurements: list[dict]) -> tuple[list[dict], list[dict]]:
    """Rows of the table (one per fault) and the targets, from the tests' measurements."""
    rows, targets = [], []
    for kind, title in FAULTS.items():
        ms = [m for m in measurements if m["kind"] == kind]
        rows.append({"fault": title, "runs": len(ms),
                     "running": span([m.get("running_s") for m in ms]),
                     "after_jm": span([m.get("after_jm_s") for m in ms]),
                     "prediction": span([m.get("prediction_s") for m in ms]),
                     "down": span([m.get("down_s") for m in ms]),
                     "acked": span([m["acked"] for m in ms], "d"),
                     "lost": sum(m["lost"] for m in ms) if ms else "",
                     "duplicates": span([m["duplicates"] for m in ms], "d"),
                     "load": span([m["load"] for m in ms])})
        field, deadline = DEADLINES[kind]
        worst = max((m[field] for m in ms), default=None)
        targets.append(common.target(f"{title}: worst {field}", worst, deadline, "<=",
                                     f"{len(ms)} run(s)"))
        targets.append(common.target(f"{title}: acknowledged records lost",
                                     sum(m["lost"] for m in ms) if ms else None, 0, "<="))
    return rows, targets


def run(p: Params, smoke: bool = False, quiet: bool = False) -> dict:
    started = time.time()
    failed_runs = []
    with tempfile.TemporaryDirectory(prefix="online_ml_recovery_") as tmp, Instance() as inst:
        out = Path(tmp) / "measurements.jsonl"
        common.progress(f"private stack instance in {inst.root}")
        inst.up("redis", "kafka", "flink")
        machine = common.machine_info(inst.settings())
        for i in range(p.runs):
            common.progress(f"run {i + 1}/{p.runs}: pytest -s {' '.join(TESTS)}")
            done = subprocess.run([PY, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", *TESTS],
                                  cwd=ROOT, env=dict(inst.env, **{VARIABLE: str(out)}),
                                  capture_output=True, text=True, timeout=p.timeout)
            if done.returncode != 0:
                failed_runs.append({"run": i + 1, "tail": done.stdout[-2000:]})
                common.progress(f"run {i + 1} failed:\n{done.stdout[-2000:]}")
        measurements = read(out)
    rows, targets = aggregate(measurements)
    targets.append(common.target("runs in which every fault test passed", p.runs - len(failed_runs),
                                 p.runs, ">="))
    notes = [f"{len(failed_runs)} of {p.runs} run(s) failed a test: see the JSON"] if failed_runs else []
    text = common.report("recovery (fault tests, private stack instance)", COLUMNS, rows, targets,
                         notes)
    path = common.write_result("recovery", vars(p), {"rows": rows, "measurements": measurements,
                                                     "failed_runs": failed_runs},
                               targets, machine, started, smoke)
    return common.finish(path, rows, targets, text, smoke, quiet)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=Params.runs)
    ap.add_argument("--markdown", action="store_true", help="also print the tables in Markdown")
    a = ap.parse_args()
    result = run(Params(runs=a.runs))
    if a.markdown:
        common.print_markdown(COLUMNS, result)


if __name__ == "__main__":
    main()
