"""The verdicts of bench/jobmanager_ha.py (a JobManager crash: the stack's job watcher against
Flink's ZooKeeper high availability), computed from its trial rows: which recovery is faster and
by how much, issue 8's 60 s target per variant, the moving parts each variant adds, and whether
ZooKeeper HA wins on every axis. ``p`` is the benchmark's Params (``variants``, ``deadline``,
``observe``). Here so that tests/test_jobmanager_ha_verdict.py checks them without importing the
benchmark.
"""
from __future__ import annotations

import statistics
from typing import Any

from online_ml.harness.verdicts import fmt, target


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


def verdicts(rows: list[dict], extras: dict, parts: dict, p: Any) -> tuple[list, list[str]]:
    """Targets (one per variant and requirement) and the verdict in words."""
    sums = {v: summary(rows, v) for v in p.variants}
    targets = []
    for v, s in sums.items():
        targets += [
            target(f"{v}: job RUNNING after the JobManager is back (worst trial, s)",
                          s["worst_after_jm_s"], p.deadline, "<=",
                          f"{s['completed']} of {s['trials']} trials completed"),
            target(f"{v}: acknowledged records lost", s["lost"], 0, "<="),
            target(f"{v}: model version steps backwards", s["backwards"], 0, "<=")]
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
                     f"{'every' if met else 'NOT every'} trial (worst {fmt(s['worst_after_jm_s'])} s"
                     f"; median from the kill {fmt(s['median_running_s'])} s); "
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


def overall(sums: dict, extras: dict, parts: dict, p: Any) -> str:
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
