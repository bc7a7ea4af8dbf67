"""A JobManager crash: Flink's own ZooKeeper high availability against the stack's job watcher,
side by side (issue 8: "choose by measurement").

Everything runs on a private stack instance (online_ml.harness.instance: a state folder and ports
of its own; never the stack on the default ports, whose JobManager other people use). Variants:

* ``watcher`` -- the cluster as ``make up`` runs it: supervised JobManager and TaskManager, and
  the job watcher (python -m online_ml.watcher), which resubmits the job with ``flink run``;
* ``zookeeper`` -- a standalone ZooKeeper (``stack/up.sh zookeeper``, jars from Maven Central)
  and Flink with ``high-availability.type: zookeeper`` (quorum on 127.0.0.1, ``storageDir``
  in the instance, a cluster-id per trial); no watcher. Flink's ZooKeeper session timeout is its
  default (60 s asked, which ZooKeeper caps at 20 ticks = 40 s): the new JobManager becomes
  leader only once the dead one's session expired;
* ``zookeeper-<N>s`` -- the same with a session timeout of N seconds (default run: 10 s).

Each trial starts a fresh Flink cluster, submits the training job (stream.py, row mode, its own
JOB_NAME, topics and model key) with a paced producer (10 records/s), and once predictions flow,
a model backup and a checkpoint exist, ``kill -9``s the JobManager JVM; the supervisor restarts
it. Measured: kill -> REST API answering, kill -> job RUNNING (every task), JobManager back ->
job RUNNING, kill -> predictions flowing again (the end of the longest gap); acknowledged
records without a prediction, and steps where the model's version went backwards. Once per
variant, on the last trial's cluster: a job cancelled on purpose and the JobManager killed again
(it must stay cancelled), and a job that ends FAILED (restart strategy none, its TaskManager
killed): does anything bring it back? Moving parts: the processes, ports and folders each
variant adds, read from the running instance. The verdicts are computed here.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import common
import jobmanager_ha_trial as trial

from online_ml.harness.ha_verdicts import summary, verdicts
from online_ml.harness.instance import Instance

COLUMNS = [("variant", "variant", ""), ("trial", "trial", ""), ("REST back s", "rest_back_s", ".1f"),
           ("RUNNING s", "running_s", ".1f"), ("JM back->RUNNING s", "after_jm_s", ".1f"),
           ("predictions s", "predictions_s", ".1f"), ("acked", "acked", ""), ("lost", "lost", ""),
           ("dupes", "duplicates", ""), ("backwards", "backwards", ""),
           ("same job", "same_job", ""), ("load", "load", ".1f")]


@dataclass
class Params:
    variants: tuple[str, ...] = ("watcher", "zookeeper", "zookeeper-10s")
    trials: int = 3
    rate: float = 10.0  # records/s, the demo's rate
    deadline: float = 60.0  # issue 8: RUNNING within 60 s of the JobManager being back
    extras: bool = True  # the cancelled job and the FAILED job, once per variant
    observe: float = 90.0  # seconds to watch a cancelled or FAILED job for a resurrection
    session_timeout_ms: int | None = None  # Flink's ZooKeeper session timeout; None: its default
    jars: str | None = None  # make install's jars (default: STATE/jars of the instance in use)

    @classmethod
    def smoke(cls) -> Params:
        return cls(trials=1, extras=False)


def run(p: Params, smoke: bool = False, quiet: bool = False) -> dict:
    started = time.time()
    rows: list[dict] = []
    extras: dict[str, dict] = {}
    parts: dict[str, dict] = {}
    machine: dict = {}
    with Instance(jars=Path(p.jars) if p.jars else None) as inst:
        common.progress(f"private stack instance in {inst.root}: Redis and Kafka")
        inst.up("redis", "kafka")
        for variant in p.variants:
            if not re.fullmatch(r"watcher|zookeeper(-\d+s)?", variant):
                raise ValueError(f"unknown variant {variant!r} (watcher, zookeeper, zookeeper-<N>s)")
            if variant.startswith("zookeeper"):
                inst.up("zookeeper")
            else:
                inst.down("zookeeper")  # not a moving part of the watcher's variant
            for n in range(1, p.trials + 1):
                common.progress(f"{variant}: trial {n} of {p.trials}")
                # the cancelled and the FAILED job: the session timeout changes nothing there
                last = n == p.trials and p.extras and variant in ("watcher", "zookeeper")
                row, found = trial.crash_trial(inst, variant, n, p, extras=last)
                rows.append(row)
                parts.setdefault(variant, found.get("parts") or {})
                if last:
                    extras[variant] = found.get("extras", {})
                if not machine and found.get("machine"):
                    machine = found["machine"]
    targets, words = verdicts(rows, extras, parts, p)
    params = {k: v for k, v in vars(p).items()}
    path = common.write_result("jobmanager_ha", params, rows, targets, machine or {}, started,
                               smoke, extra={"summary": [summary(rows, v) for v in p.variants],
                                             "extras": extras, "moving_parts": parts,
                                             "verdict": words})
    failures = [f"{r['variant']} trial {r['trial']} failed: {r['error']}" for r in rows
                if "error" in r]
    text = common.report("JobManager kill -9: job watcher vs Flink ZooKeeper HA (seconds from the "
                         "kill unless said)", COLUMNS, rows, targets, words + failures)
    return common.finish(path, rows, targets, text, smoke, quiet)
