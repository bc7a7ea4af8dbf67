"""What every benchmark shares: the machine it ran on, tables, JSON results, and the real services.

Benchmarks talk to the local stack (``make up``) exactly as a user would: topics created with the
Kafka admin API, jobs submitted with ``flink run``, servers started as processes. Everything a
benchmark creates is named ``bench_<run id>_...`` (topics, consumer groups, Redis keys in
``BENCH_REDIS_DB``, default 2) and removed again when it ends, also on errors and Ctrl-C, so a
benchmark never touches the demo's data (Redis db 0, topics ``handwritten_digit`` /
``digit_predict``) nor a test's (Redis db 1).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import glob
import importlib.metadata
import json
import logging
import math
import os
import platform
import re
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from online_ml.config import Settings  # noqa: E402

log = logging.getLogger("bench")

RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR") or ROOT / "bench" / "results")
VENV_BIN = ROOT / ".venv" / "bin"
PY = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
BENCH_REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "2"))
PACKAGES = ("apache-flink", "scikit-learn", "kafka-python", "redis", "numpy", "pandas", "skops",
            "flask", "waitress", "svglib", "reportlab", "rlPyCairo", "pillow", "requests")


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
        with urllib.request.urlopen(settings.flink_rest_url + "/overview", timeout=5) as r:
            overview = json.load(r)
        services["flink"] = overview.get("flink-version")
        services["flink_task_slots"] = overview.get("slots-total")
    except Exception:
        services["flink"] = None
    jars = sorted(glob.glob(str(ROOT / ".state" / "jars" / "**" / "kafka_2.*-*.jar"),
                            recursive=True))
    m = re.search(r"kafka_[0-9.]+-([0-9][^/]*?)\.jar$", jars[0]) if jars else None
    services["kafka"] = m.group(1) if m else None
    connector = sorted(glob.glob(str(ROOT / ".state" / "jars" / "**" /
                                     "flink-sql-connector-kafka-*.jar"), recursive=True))
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
def fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return "-"
    if spec:
        return format(value, spec)
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


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


def target(name: str, value: float | None, limit: float, op: str, detail: str = "") -> dict:
    """One target and whether this run met it (``op`` is ``>=`` or ``<=``)."""
    met = None if value is None else (value >= limit if op == ">=" else value <= limit)
    return {"target": name, "value": value, "limit": limit, "op": op, "met": met,
            "detail": detail}


def _target_rows(targets: Sequence[dict]) -> list[dict]:
    return [dict(t, verdict="n/a" if t["met"] is None else "met" if t["met"] else "NOT met",
                 want=f"{t['op']} {fmt(t['limit'])}") for t in targets]


TARGET_COLUMNS = [("target", "target", ""), ("value", "value", ""), ("wanted", "want", ""),
                  ("verdict", "verdict", ""), ("detail", "detail", "")]


def markdown_targets(targets: Sequence[dict]) -> str:
    return markdown_table(TARGET_COLUMNS, _target_rows(targets))


def targets_table(targets: Sequence[dict]) -> str:
    return table("targets", TARGET_COLUMNS, _target_rows(targets))


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


# -- statistics ------------------------------------------------------------------------------------
def finish(path: Path, rows: list, targets: Sequence[dict], text: str, smoke: bool,
           quiet: bool) -> dict:
    """Print a benchmark's report (marked when it is a smoke run) and return its summary."""
    if smoke:
        text = "SMOKE RUN: tiny sizes, the numbers mean nothing\n" + text
    if not quiet:
        print(text)
        print(f"wrote {shown(path)}\n")
    return {"path": str(path), "rows": rows, "targets": targets, "text": text}


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


# -- waiting ---------------------------------------------------------------------------------
def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5):
    """Poll until ``predicate`` is truthy; raise TimeoutError naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # not up yet
            last_exc = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}"
                               + (f" (last error: {last_exc})" if last_exc else ""))
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- Kafka -----------------------------------------------------------------------------------------
class Topics(contextlib.AbstractContextManager):
    """Creates single-partition topics on demand; on exit deletes them and the consumer groups
    named with :meth:`group` (the jobs commit their offsets under those)."""

    def __init__(self, settings: Settings):
        from kafka import KafkaAdminClient

        self.settings = settings
        self.admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
        self.names: list[str] = []
        self.groups: list[str] = []

    def group(self, name: str) -> str:
        self.groups.append(name)
        return name

    def create(self, name: str) -> str:
        from kafka.admin import NewTopic

        self.admin.create_topics([NewTopic(name, 1, 1)])
        self.names.append(name)
        return name

    def __exit__(self, *exc) -> None:
        try:
            if self.names:
                self.admin.delete_topics(self.names)
        except Exception as e:  # never hide the benchmark's own error behind this one
            log.warning("could not delete topics %s: %s", self.names, e)
        try:
            if self.groups:
                existing = {g["group_id"] if isinstance(g, dict) else g[0]
                            for g in self.admin.list_groups()}
                mine = [g for g in self.groups if g in existing]
                if mine:  # kafka-python 3 calls it delete_groups (2.x: delete_consumer_groups)
                    delete = getattr(self.admin, "delete_groups", None) or self.admin.delete_consumer_groups
                    delete(mine)
        except Exception as e:  # a group without committed offsets is "not found": fine
            log.info("could not delete consumer groups %s: %s", self.groups, e)
        finally:
            self.admin.close()


class TopicReader:
    """Reads single records of a one-partition topic by offset: cheap even for huge topics."""

    def __init__(self, settings: Settings, topic: str):
        from kafka import KafkaConsumer, TopicPartition

        self.tp = TopicPartition(topic, 0)
        self.consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers,
                                      enable_auto_commit=False, group_id=None)
        self.consumer.assign([self.tp])

    def end_offset(self) -> int:
        return int(self.consumer.end_offsets([self.tp])[self.tp])

    def read(self, start: int, count: int, timeout: float = 30.0) -> list:
        """Records ``start .. start+count-1`` (ConsumerRecord: offset, timestamp ms, value)."""
        out: list = []
        if count <= 0:
            return out
        self.consumer.seek(self.tp, start)
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            batch = self.consumer.poll(timeout_ms=1000, max_records=min(count - len(out), 5000))
            for records in batch.values():
                out.extend(r for r in records if r.offset < start + count)
        return out[:count]

    def at(self, offset: int):
        got = self.read(offset, 1)
        if not got:
            raise TimeoutError(f"could not read offset {offset} of {self.tp.topic}")
        return got[0]

    def close(self) -> None:
        self.consumer.close()


def _producer(settings: Settings, topic: str, count: int, seed: int) -> subprocess.Popen:
    return subprocess.Popen(
        [PY, "kafka_producer.py", "--rate", "0", "--count", str(count), "--topic", topic,
         "--seed", str(seed), "--quiet", "--bootstrap-servers", settings.kafka_bootstrap_servers],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def preload(settings: Settings, topic: str, count: int, seed: int, procs: int = 1,
            head: int = 20_000) -> dict:
    """Fill ``topic`` with ``count`` records with the project's producer, as fast as it goes.

    The first ``head`` records come from one producer (one clean shuffled sequence: what the
    accuracy columns look at); the rest from ``procs`` producers in parallel (seeds ``seed+1``,
    ...), because one kafka-python producer manages only ~10-15k records/s.
    """
    started = time.monotonic()
    first = min(count, head) if procs > 1 else count
    stages = [[(first, seed)]]
    rest = count - first
    if rest > 0:
        stages.append([(rest // procs + (i < rest % procs), seed + 1 + i) for i in range(procs)])
    for stage in stages:
        running = [_producer(settings, topic, n, s) for n, s in stage if n > 0]
        try:
            for proc in running:
                out, err = proc.communicate(timeout=max(300, count / 1000))
                if proc.returncode != 0:
                    raise RuntimeError(f"producer failed ({proc.returncode}): {out}\n{err}")
        finally:
            for proc in running:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    elapsed = time.monotonic() - started
    return {"records": count, "producers": max(len(s) for s in stages),
            "seconds": round(elapsed, 1), "records_per_s": round(count / elapsed, 1)}


# -- Flink -----------------------------------------------------------------------------------------
class Flink:
    """Submits jobs with the flink CLI and always cancels the ones it submitted."""

    def __init__(self, settings: Settings):
        self.base = settings.flink_rest_url.rstrip("/")
        self.jobs: list[str] = []

    def _get(self, path: str):
        with urllib.request.urlopen(self.base + path, timeout=5) as r:
            return json.load(r)

    def submit(self, script: str, env: dict, args: Sequence[str] = ()) -> str:
        full_env = dict(os.environ, **env, PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}")
        flink = str(VENV_BIN / "flink") if (VENV_BIN / "flink").exists() else "flink"
        out = subprocess.run([flink, "run", "-m", self.base.split("://", 1)[-1], "-d", "-py",
                              script, *args],
                             cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=300)
        m = re.search(r"JobID ([0-9a-f]{32})", out.stdout) or re.search(
            r"\b([0-9a-f]{32})\b", out.stdout)
        if out.returncode != 0 or not m:
            raise RuntimeError(f"flink run {script} failed ({out.returncode}):\n"
                               f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        self.jobs.append(m.group(1))
        return m.group(1)

    def state(self, job_id: str) -> str:
        return self._get(f"/jobs/{job_id}")["state"]

    def restarts(self, job_id: str) -> int | None:
        """How often the job restarted (a killed TaskManager, ...): explains outliers."""
        try:
            got = self._get(f"/jobs/{job_id}/metrics?get=numRestarts")
            return int(got[0]["value"]) if got else None
        except Exception:
            return None

    def cancel(self, job_id: str, wait: float = 60.0) -> None:
        try:
            req = urllib.request.Request(f"{self.base}/jobs/{job_id}?mode=cancel", method="PATCH")
            urllib.request.urlopen(req, timeout=10).read()
            wait_for(lambda: self.state(job_id) in ("CANCELED", "FINISHED", "FAILED"), wait,
                     f"job {job_id} to stop")
        except Exception as exc:
            log.warning("could not cancel job %s: %s", job_id, exc)
        finally:
            if job_id in self.jobs:
                self.jobs.remove(job_id)

    def cancel_all(self) -> None:
        for job_id in list(self.jobs):
            self.cancel(job_id)

    def exceptions(self, job_id: str) -> str:
        try:
            root = self._get(f"/jobs/{job_id}/exceptions").get("rootException")
            return (root or "")[:2000]
        except Exception:
            return ""


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


# -- processes -------------------------------------------------------------------------------------
class Server(contextlib.AbstractContextManager):
    """A WSGI app as a real process, under waitress (``threads``, one process) or, with
    ``workers``, under gunicorn (that many sync worker processes); stopped on exit."""

    def __init__(self, call: str, env: dict, threads: int = 8, name: str = "server",
                 pythonpath: Sequence[str] = (), workers: int = 0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = name
        full_env = dict(os.environ, **env)
        if pythonpath:
            full_env["PYTHONPATH"] = os.pathsep.join(
                [*pythonpath, *filter(None, [os.environ.get("PYTHONPATH")])])
        self.log_path = RESULTS / f".{name}-{self.port}.log"
        RESULTS.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        if workers:
            module, factory = call.split(":")
            command = [str(VENV_BIN / "gunicorn"), "--bind", f"127.0.0.1:{self.port}",
                       "--workers", str(workers), f"{module}:{factory}()"]
        else:
            command = [str(VENV_BIN / "waitress-serve"), "--host", "127.0.0.1", "--port",
                       str(self.port), "--threads", str(threads), "--call", call]
        self.proc = subprocess.Popen(command, cwd=ROOT, env=full_env, stdout=self._log,
                                     stderr=subprocess.STDOUT)

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the server and its worker processes have used so far."""
        def cpu(pid: int) -> float:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        try:
            pid = self.proc.pid
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            return cpu(pid) + sum(cpu(int(c)) for c in children)
        except (OSError, ValueError, IndexError):
            return None

    def wait_ready(self, path: str = "/healthz", timeout: float = 60.0) -> None:
        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see "
                                   f"{self.log_path}")
            with urllib.request.urlopen(self.url + path, timeout=2) as r:
                return r.status == 200

        wait_for(up, timeout, f"{self.name} on {self.url}", interval=0.3)

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        if exc[0] is None:
            with contextlib.suppress(OSError):
                self.log_path.unlink()
