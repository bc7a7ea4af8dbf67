"""PyFlink's execution modes for the row UDF, from bench/throughput.py's runs: what thread mode
does to the throughput, which ports each mode's job opens on the TaskManager, and the verdict on
the default (``--repeat N``: N runs alternating the order, the median ratio decides).
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any

import common

ROW_THREAD = "row UDF, thread mode"


def default_kept(ratio: float, how: str) -> str:
    """The default execution mode, from the measured ratio thread / process and what thread mode
    cannot do (README, "Python execution mode")."""
    return ("default kept: process mode -- thread mode " + (
        f"makes the row UDF x{ratio:.2f} as fast ({how}), but " if ratio >= 1.05 else
        f"does not make the row UDF faster (x{ratio:.2f}, {how}), and ")
        + "it runs no pandas UDF (the batch UDF), its UDF metrics do not reach Flink, a cancel "
        "skips the UDF's close(), and PyFlink 2.2.1 on Java 17 runs it in one job per "
        "TaskManager JVM")


def execution_modes(by_name: dict[str, dict]) -> tuple[list[dict], list[str]]:
    """Targets and words on PyFlink's execution modes for the row UDF: what thread mode does to
    the throughput, and which ports each mode's job opens on the TaskManager."""
    proc, thread = by_name.get("row UDF"), by_name.get(ROW_THREAD)
    targets: list[dict] = []
    words: list[str] = []
    if thread is None:  # not asked for: the default run's targets stay as they are
        return targets, words
    if thread.get("error"):
        return targets, [f"execution mode: the row UDF in thread mode did not run: {thread['error']}"]
    exposed = [r for r in by_name.values() if r.get("kind") == "flink"
               and r.get("job_ports_not_loopback")]
    python_jobs = [r for r in by_name.values() if r.get("kind") == "flink"
                   and not r["variant"].startswith("passthrough (")]
    targets.append(common.target(
        "Python UDF jobs: ports opened not on loopback", sum(
            r.get("job_ports_not_loopback", 0) for r in python_jobs) if python_jobs else None, 0,
        "<=", ", ".join(r["variant"] for r in exposed) or "every port the jobs opened is loopback"))
    if thread:
        targets.append(common.target("row UDF, thread mode: ports the job opens",
                                     thread.get("job_ports"), 0, "<=",
                                     "no Python worker, no gRPC endpoints"))
    if proc and thread and proc.get("records_per_s") and thread.get("records_per_s"):
        ratio = thread["records_per_s"] / proc["records_per_s"]
        words.append(
            f"execution mode: the row UDF in thread mode ran at {thread['records_per_s']:,.0f} "
            f"records/s, x{ratio:.2f} process mode's {proc['records_per_s']:,.0f} "
            f"({'faster' if ratio > 1.05 else 'slower' if ratio < 0.95 else 'the same, within 5%'}"
            f"); the job opened {proc.get('job_ports')} port(s) on the TaskManager in process "
            f"mode ({proc.get('job_ports_not_loopback')} not on loopback), "
            f"{thread.get('job_ports')} in thread mode")
        words.append(default_kept(ratio, "this run"))
    return targets, words


REPEAT_COLUMNS = [("run", "run", ""), ("first", "first", ""),
                  ("process rec/s", "process_rec_s", ",.0f"), ("thread rec/s", "thread_rec_s", ",.0f"),
                  ("thread / process", "ratio", ".2f"), ("ports, process", "process_ports", ""),
                  ("ports, thread", "thread_ports", ""), ("not loopback", "not_loopback", ""),
                  ("load", "load", ".1f")]


def repeated(p: Any, runs: int, private: bool, smoke: bool,
             run_once: Callable[..., dict]) -> dict:
    """``runs`` runs of row and row-thread (``run_once(p, smoke, quiet=True)``: bench/throughput.py's
    ``run``, or its ``run_private`` for a fresh instance each when ``private``), the order
    alternating (drift on a shared machine cancels out); the ratio's median is the verdict."""
    started = time.time()
    out = []
    for i in range(runs):
        pi = dataclasses.replace(p, thread_first=bool(i % 2), notes=[])
        res = run_once(pi, smoke, quiet=True)
        by_name = {r["variant"]: r for r in res["rows"]}
        proc, thread = by_name.get("row UDF", {}), by_name.get(ROW_THREAD, {})
        rates = proc.get("records_per_s"), thread.get("records_per_s")
        out.append({"run": i + 1, "first": "thread" if pi.thread_first else "process",
                    "process_rec_s": rates[0], "thread_rec_s": rates[1],
                    "ratio": round(rates[1] / rates[0], 3) if all(rates) else None,
                    "process_ports": proc.get("job_ports"), "thread_ports": thread.get("job_ports"),
                    "not_loopback": (proc.get("job_ports_not_loopback") or 0)
                    + (thread.get("job_ports_not_loopback") or 0),
                    "load": (common.loadavg() or [None])[0],
                    "error": thread.get("error") or proc.get("error")})
    ratios = sorted(r["ratio"] for r in out if r["ratio"] is not None)
    median = statistics.median(ratios) if ratios else None
    targets = [common.target("row UDF, thread mode: ports the job opens (worst run)",
                             max((r["thread_ports"] for r in out if r["thread_ports"] is not None),
                                 default=None), 0, "<="),
               common.target("Python UDF jobs: ports opened not on loopback",
                             sum(r["not_loopback"] for r in out), 0, "<=")]
    words = [f"{r['run']}: {r['error']}" for r in out if r["error"]]
    if median is not None:
        words.append(
            f"thread mode / process mode, row UDF, median of {len(ratios)} run(s): x{median:.2f} "
            f"(from x{ratios[0]:.2f} to x{ratios[-1]:.2f}); "
            + ("thread mode is faster in every run" if ratios[0] > 1 else
               "thread mode is slower in every run" if ratios[-1] < 1 else
               "neither mode is faster in every run"))
        words.append(default_kept(median, "median"))
    path = common.write_result("throughput_execution_mode", dict(vars(p), runs=runs,
                                                                 private=private),
                               out, targets, common.machine_info(), started, smoke,
                               extra={"verdict": words})
    text = common.report("row UDF: PyFlink process mode vs thread mode (each run on a fresh "
                         "private instance)" if private else "row UDF: process vs thread mode",
                         REPEAT_COLUMNS, out, targets, words)
    return common.finish(path, out, targets, text, smoke, quiet=False)


