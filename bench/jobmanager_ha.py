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
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import common
import jobmanager_ha_trial as trial

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


def median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 1) if values else None


def summary(rows: list[dict], variant: str) -> dict:
    mine = [r for r in rows if r["variant"] == variant]
    ok = [r for r in mine if "error" not in r]
    return {"variant": variant, "trials": len(mine), "completed": len(ok),
            **{f"median_{k}": median([r.get(k) for r in ok])
               for k in ("rest_back_s", "running_s", "after_jm_s", "predictions_s")},
            "worst_after_jm_s": max((r["after_jm_s"] for r in ok), default=None),
            "lost": sum(r.get("lost", 0) for r in ok),
            "backwards": sum(r.get("backwards", 0) for r in ok)}


def added_parts(parts: dict) -> dict:
    """What a variant adds to redis + kafka + JobManager + TaskManager."""
    base = {"redis", "kafka", "flink-jobmanager", "flink-taskmanager"}
    extra = [s for s in parts.get("services", []) if s not in base]
    return {"processes": extra, "ports": sum(len(parts["ports"].get(s, [])) for s in extra),
            "dirs": parts.get("dirs", []), "rss_mb": sum(parts["rss_mb"].get(s) or 0 for s in extra)}


def verdicts(rows: list[dict], extras: dict, parts: dict, p: Params) -> tuple[list, list[str]]:
    """Targets (one per variant and requirement) and the verdict in words."""
    sums = {v: summary(rows, v) for v in p.variants}
    targets = []
    for v, s in sums.items():
        targets += [
            common.target(f"{v}: job RUNNING after the JobManager is back (worst trial, s)",
                          s["worst_after_jm_s"], p.deadline, "<=",
                          f"{s['completed']} of {s['trials']} trials completed"),
            common.target(f"{v}: acknowledged records lost", s["lost"], 0, "<="),
            common.target(f"{v}: model version steps backwards", s["backwards"], 0, "<=")]
    words: list[str] = []
    timed = {v: s["median_running_s"] for v, s in sums.items() if s["median_running_s"] is not None}
    if len(timed) >= 2:
        ranked = sorted(timed, key=timed.__getitem__)
        fast = ranked[0]
        other = "watcher" if fast != "watcher" and "watcher" in timed else ranked[1]
        gain = timed[other] - timed[fast]
        words.append("recovery, median kill -> job RUNNING: "
                     + ", ".join(f"{v} {timed[v]:.1f} s" for v in ranked)
                     + f"; {fast} is the fastest, {gain:.1f} s less than {other} "
                     f"(x{timed[other] / timed[fast]:.2f})")
    for v, s in sums.items():
        met = s["worst_after_jm_s"] is not None and s["worst_after_jm_s"] <= p.deadline \
            and s["completed"] == s["trials"]
        words.append(f"{v}: RUNNING within {p.deadline:.0f} s of the JobManager being back in "
                     f"{'every' if met else 'NOT every'} trial (worst {common.fmt(s['worst_after_jm_s'])} s"
                     f"; median from the kill {common.fmt(s['median_running_s'])} s); "
                     f"{s['lost']} acknowledged records lost, {s['backwards']} version steps back")
    for v in p.variants:
        a = added_parts(parts.get(v, {"services": [], "ports": {}, "rss_mb": {}}))
        words.append(f"moving parts, {v}: adds {len(a['processes'])} process(es) "
                     f"{a['processes']} ({a['rss_mb']:.0f} MB resident), {a['ports']} listening "
                     f"port(s), {len(a['dirs'])} folder(s) {a['dirs']}")
    for v, e in extras.items():
        words.append(f"{v}: cancelled job {'stayed cancelled' if e.get('cancelled_stayed') else 'CAME BACK'}"
                     f"; FAILED job " + (f"running again {e['failed_back_s']:.1f} s after it failed"
                                         if e.get("failed_back_s") is not None else
                                         f"not brought back within {p.observe:.0f} s")
                     + (f" ({e['error']})" if e.get("error") else ""))
    words.append(overall(sums, extras, parts, p))
    return targets, words


def overall(sums: dict, extras: dict, parts: dict, p: Params) -> str:
    """Whether ZooKeeper HA wins on every axis (then the switch is a design decision)."""
    zks = [v for v in sums if v.startswith("zookeeper") and sums[v]["median_running_s"] is not None]
    if "watcher" not in sums or sums["watcher"]["median_running_s"] is None or not zks:
        return "overall: no verdict, the watcher or ZooKeeper HA has no completed trial"
    best = min(zks, key=lambda v: sums[v]["median_running_s"])
    w, z = sums["watcher"], sums[best]
    aw, az = (added_parts(parts.get(v, {"services": [], "ports": {}, "rss_mb": {}}))
              for v in ("watcher", best))
    axes = {
        "recovery time": z["median_running_s"] < w["median_running_s"],
        "nothing lost": z["lost"] <= w["lost"] and z["backwards"] <= w["backwards"],
        "moving parts": (len(az["processes"]), az["ports"], len(az["dirs"]))
        <= (len(aw["processes"]), aw["ports"], len(aw["dirs"])),
        "FAILED job covered": extras.get("zookeeper", {}).get("failed_back_s") is not None
        or not extras,
    }
    won = [a for a, ok in axes.items() if ok]
    lost = [a for a, ok in axes.items() if not ok]
    if not lost:
        return (f"overall: ZooKeeper HA ({best}) wins on every axis measured ("
                + ", ".join(won) + "); switching is a design decision")
    return (f"overall: keep the watcher -- ZooKeeper HA (its fastest variant, {best}) does not "
            f"win on {', '.join(lost)}" + (f" (it wins on {', '.join(won)})" if won else ""))


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
