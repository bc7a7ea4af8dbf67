"""What every benchmark reports: the machine it ran on, tables, targets and JSON results.

Benchmarks talk to the local stack (``make up``) exactly as a user would, through the harness the
tests use too (``online_ml.harness``: topics created with the Kafka admin API, jobs submitted with
``flink run``, servers started as processes). Everything a benchmark creates is named
``bench_<run id>_...`` (topics, consumer groups, Redis keys in ``BENCH_REDIS_DB``, default 2) and
removed again when it ends, also on errors and Ctrl-C, so a benchmark never touches the demo's
data (Redis db 0, topics ``handwritten_digit`` / ``digit_predict``) nor a test's (Redis db 1).
"""
from __future__ import annotations

import datetime as dt
import glob
import importlib.metadata
import itertools
import json
import logging
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from online_ml.config import Settings
from online_ml.flink_rest import FlinkRest
from online_ml.harness.paths import ROOT, STATE
from online_ml.harness.verdicts import fmt, target

__all__ = ["fmt", "target"]  # re-exported: every benchmark writes common.fmt, common.target

log = logging.getLogger("bench")

RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR") or ROOT / "bench" / "results")
BENCH_REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "2"))
#: Issue 10, point 5: the server's median CPU per /predict at concurrency 1 stays within this
#: (bench/serving.py's target; bench/handwriting.py weighs test-time augmentation against it).
SERVING_CPU_BUDGET_MS = 2.5
#: Images in sklearn's digits: one pass of the stream = every image seen once.
EPOCH = 1797
PACKAGES = ("apache-flink", "scikit-learn", "kafka-python", "redis", "numpy", "pandas", "skops",
            "flask", "granian", "gunicorn", "waitress", "svglib", "reportlab", "rlPyCairo",
            "pillow", "requests")


#: How far ahead one way of answering must be of another on the same drawings to count as ahead:
#: a paired comparison (McNemar's test, normal approximation) — of the drawings the two answer
#: differently, one must get right more than the other by this many standard deviations (1.96:
#: 95 %). Anything less is a tie. The rules that choose the features' width and the views a
#: drawing is scored by use it (bench/handwriting_width.py, handwriting.py, handwriting_strokes.py).
PAIRED_Z = 1.96


def paired(right: np.ndarray, other_right: np.ndarray) -> tuple[int, int, float]:
    """(gained, lost, z): of the same drawings, how many ``right`` gets right that ``other_right``
    gets wrong, the reverse, and their difference in standard deviations of a tie (McNemar's).

    >>> paired(np.array([1, 1, 1, 0], bool), np.array([0, 0, 1, 1], bool))
    (2, 1, 0.5773502691896258)
    """
    gained = int(np.count_nonzero(right & ~other_right))
    lost = int(np.count_nonzero(other_right & ~right))
    return gained, lost, (gained - lost) / float(np.sqrt(gained + lost)) if gained + lost else 0.0


def accuracy(pairs: Iterable[tuple[Any, Any] | None]) -> float | None:
    """The share of (predicted, actual) pairs that agree, to 4 places (``None`` entries skipped;
    ``None`` if no pair is left): prequential accuracy from a sink's predictions.

    >>> accuracy([(1, 1), (2, 3), None, (None, 4)])
    0.3333
    >>> accuracy([]) is None
    True
    """
    kept = [pair for pair in pairs if pair is not None]
    return round(sum(p == a for p, a in kept) / len(kept), 4) if kept else None


def run_id() -> str:
    """A short unique name part for everything one benchmark run creates."""
    return uuid.uuid4().hex[:8]


def progress(message: str) -> None:
    """Progress for the person waiting (stderr, so the tables on stdout stay clean)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the machine -----------------------------------------------------------------------------------
def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _cmd(args: Sequence[str]) -> str:
    try:
        out = subprocess.run(list(args), capture_output=True, text=True, timeout=20)
        return (out.stdout + out.stderr).strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine_info(settings: Settings | None = None) -> dict:
    """Cores, memory, CPU, OS and the versions of everything that shapes the numbers."""
    settings = settings or Settings.from_env()
    cpu = re.search(r"^model name\s*:\s*(.+)$", _read("/proc/cpuinfo"), re.MULTILINE)
    mem = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.MULTILINE)
    os_name = re.search(r'^PRETTY_NAME="?([^"\n]+)', _read("/etc/os-release"), re.MULTILINE)
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    services: dict[str, Any] = {}
    try:
        overview = FlinkRest(settings.flink_rest_url).overview()
        services["flink"] = overview.get("flink-version")
        services["flink_task_slots"] = overview.get("slots-total")
    except Exception:
        services["flink"] = None
    jars = sorted(glob.glob(str(STATE / "jars" / "**" / "kafka_2.*-*.jar"), recursive=True))
    m = re.search(r"kafka_[0-9.]+-([0-9][^/]*?)\.jar$", jars[0]) if jars else None
    services["kafka"] = m.group(1) if m else None
    connector = sorted(glob.glob(str(STATE / "jars" / "**" / "flink-sql-connector-kafka-*.jar"),
                                 recursive=True))
    m = re.search(r"flink-sql-connector-kafka-(.+)\.jar$", connector[0]) if connector else None
    services["flink_kafka_connector"] = m.group(1) if m else None
    try:
        info = settings.redis_client(db=BENCH_REDIS_DB).info("server")
        services["redis"] = info.get("redis_version")
    except Exception:
        services["redis"] = None
    java = _cmd(["java", "-version"]).splitlines()
    return {
        "hostname": platform.node(),
        "cores": os.cpu_count(),
        "memory_gb": round(int(mem.group(1)) / 1024 / 1024, 1) if mem else None,
        "cpu": cpu.group(1).strip() if cpu else platform.processor() or None,
        "os": os_name.group(1) if os_name else platform.platform(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "java": java[0] if java else None,
        "packages": versions,
        "services": services,
        "loadavg_at_start": loadavg(),
    }


# -- output ----------------------------------------------------------------------------------------
def cpu_ms(fn: Callable[[], object], n: int, rounds: int) -> float:
    """Milliseconds of this process's CPU per item of ``fn()``, which handles ``n`` items: the
    median over ``rounds`` calls."""
    runs = []
    for _ in range(rounds):
        started = time.process_time()
        fn()
        runs.append((time.process_time() - started) * 1000 / n)
    return float(statistics.median(runs))


def table(title: str, columns: Sequence[tuple[str, str, str]], rows: Iterable[dict]) -> str:
    """A plain text table; ``columns`` are ``(header, key, format spec)``."""
    rows = list(rows)
    cells = [[fmt(r.get(key), spec) for _, key, spec in columns] for r in rows]
    headers = [h for h, _, _ in columns]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(headers)]

    def line(values):
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                         for i, (v, w) in enumerate(zip(values, widths)))

    out = [title, line(headers), "  ".join("-" * w for w in widths)]
    out += [line(c) for c in cells]
    return "\n".join(out)


def markdown_table(columns: Sequence[tuple[str, str, str]], rows: Iterable[dict]) -> str:
    """The same table in Markdown, for the README."""
    rows = list(rows)
    out = ["| " + " | ".join(h for h, _, _ in columns) + " |",
           "| " + " | ".join("---" if i == 0 else "---:" for i in range(len(columns))) + " |"]
    for r in rows:
        out.append("| " + " | ".join(fmt(r.get(k), s) for _, k, s in columns) + " |")
    return "\n".join(out)


def _target_rows(targets: Sequence[dict]) -> list[dict]:
    return [dict(t, verdict="n/a" if t["met"] is None else "met" if t["met"] else "NOT met",
                 want=f"{t['op']} {fmt(t['limit'])}") for t in targets]


TARGET_COLUMNS = [("target", "target", ""), ("value", "value", ""), ("wanted", "want", ""),
                  ("verdict", "verdict", ""), ("detail", "detail", "")]


def markdown_targets(targets: Sequence[dict]) -> str:
    return markdown_table(TARGET_COLUMNS, _target_rows(targets))


def print_markdown(columns: Sequence[tuple[str, str, str]], result: dict) -> None:
    """A benchmark's table and targets in Markdown, for the README."""
    print(markdown_table(columns, result["rows"]) + "\n\n" + markdown_targets(result["targets"]))


def offline_main(doc: str | None, run: Any, params: Any,
                 tables: Sequence[tuple[Sequence[tuple[str, str, str]], str]]) -> int:
    """The ``main()`` of an offline benchmark: ``--smoke``, and ``--markdown`` printing each
    ``(columns, results key)`` of ``tables`` (a key ``a.b`` reads ``results[a][b]``), then the
    targets. ``run(params, smoke=...)`` returns what :func:`finish` returns, plus ``results``."""
    import argparse

    ap = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--markdown", action="store_true", help="the tables in Markdown too")
    args = ap.parse_args()
    from redis.exceptions import ConnectionError as RedisDown

    try:
        out = run(params.smoke() if args.smoke else params(), smoke=args.smoke)
    except RedisDown as exc:  # the benchmarks that store a model need the stack's Redis
        print(f"error: Redis is not reachable ({exc}); this benchmark needs the stack: "
              f"`make up` first", file=sys.stderr)
        return 2
    if args.markdown:
        parts = []
        for columns, key in tables:
            rows = out["results"]
            for name in key.split("."):
                rows = rows[name]
            parts.append(markdown_table(columns, rows))
        print("\n\n".join([*parts, markdown_targets(out["targets"])]))
    return 0


def targets_table(targets: Sequence[dict]) -> str:
    return table("targets", TARGET_COLUMNS, _target_rows(targets))


def report(title: str, columns: Sequence[tuple[str, str, str]], rows: Iterable[dict],
           targets: Sequence[dict], notes: Iterable[str] = ()) -> str:
    """A benchmark's text report: its table, its targets and its notes."""
    parts = [table(title, columns, rows), "", targets_table(targets)]
    return "\n".join(parts + [f"note: {n}" for n in notes])


def shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it."""
    path = Path(path)
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def write_result(name: str, parameters: dict, results: Any, targets: Sequence[dict],
                 machine: dict, started: float, smoke: bool, out_dir: Path | None = None,
                 extra: dict | None = None) -> Path:
    """bench/results/<name>.json: machine, parameters, results and targets of one benchmark."""
    out_dir = out_dir or RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    machine = dict(machine, loadavg_at_end=loadavg())
    doc = {
        "benchmark": name,
        "smoke": smoke,
        "started_at": dt.datetime.fromtimestamp(started).isoformat(timespec="seconds"),
        "duration_s": round(time.time() - started, 1),
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]) if sys.argv else None,
        "machine": machine,
        "parameters": parameters,
        "results": results,
        "targets": list(targets),
    }
    if extra:
        doc.update(extra)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return path


# -- the end of a run ------------------------------------------------------------------------------
def finish(path: Path, rows: list, targets: Sequence[dict], text: str, smoke: bool,
           quiet: bool) -> dict:
    """Print a benchmark's report (marked when it is a smoke run) and return its summary."""
    if smoke:
        text = "SMOKE RUN: tiny sizes, the numbers mean nothing\n" + text
    if not quiet:
        print(text)
        print(f"wrote {shown(path)}\n")
    return {"path": str(path), "rows": rows, "targets": targets, "text": text}


def finish_table(name: str, title: str, columns: Sequence[tuple[str, str, str]], rows: list,
                 targets: Sequence[dict], params: dict, machine: dict, started: float,
                 smoke: bool, quiet: bool) -> dict:
    """The end of a benchmark with one table: write its JSON, print its report, and return what
    :func:`finish` returns with ``results = {"rows": rows}`` (what :func:`offline_main` reads)."""
    path = write_result(name, params, rows, targets, machine, started, smoke)
    out = finish(path, rows, targets, report(title, columns, rows, targets), smoke, quiet)
    out["results"] = {"rows": rows}
    return out


def finish_verdict(name: str, title: str, columns: Sequence[tuple[str, str, str]], rows: list,
                   verdict: str, targets: Sequence[dict], params: dict, machine: dict,
                   started: float, smoke: bool, quiet: bool, **results: Any) -> dict:
    """The end of an offline benchmark with one table and a computed verdict under it: its JSON
    (``results``: the rows, the verdict and ``results``), its report, and what :func:`finish`
    returns with those ``results`` (what :func:`offline_main` reads)."""
    text = "\n\n".join([table(title, columns, rows), verdict, targets_table(targets)])
    out_results = {"rows": rows, "verdict": verdict, **results}
    path = write_result(name, params, out_results, targets, machine, started, smoke)
    out = finish(path, rows, targets, text, smoke, quiet)
    out["results"] = out_results
    return out


# -- clean-up --------------------------------------------------------------------------------
def delete_model_keys(settings: Settings, prefixes: Iterable[str]) -> None:
    """Remove the Redis keys of the models a benchmark stored (db BENCH_REDIS_DB only)."""
    from online_ml.model_store import ModelStore

    try:
        client = settings.redis_client(db=BENCH_REDIS_DB)
        for prefix in prefixes:
            keys = ModelStore(client, prefix).project_keys()
            if keys:
                client.delete(*keys)
        client.close()
    except Exception as exc:
        log.warning("could not delete bench model keys: %s", exc)


def learn_one_us(settings: Settings, records: int = 1797) -> float:
    """µs a record that the job's learner (``settings``) takes in ``OnlineLearner.learn_one``
    alone, over the first pass of the default stream, without Flink: what a row UDF cannot go
    below (``verdicts.row_bound_by_learner``)."""
    from online_ml.learner import OnlineLearner, make_model
    from online_ml.producer import iter_records

    learner = OnlineLearner(make_model(settings.learner, **settings.learner_kwargs()))
    pairs = [(x, y) for x, y in itertools.islice(iter_records(seed=0, epochs=1), records)]
    for x, y in pairs[:20]:  # not timed: a compiled learner loads its code on the first call
        learner.learn_one(x, y)
    started = time.perf_counter()
    for x, y in pairs[20:]:
        learner.learn_one(x, y)
    return (time.perf_counter() - started) * 1e6 / (len(pairs) - 20)
