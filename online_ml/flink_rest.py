"""A small client for Flink's REST API, and a CLI for the stack scripts.

Why one module: the server's health check, a job watcher, the stack scripts (is Flink ready? is
the training job running? cancel the jobs before stopping the cluster), docker-compose's
job-submitting service, the tests and the benchmarks all ask Flink the same few questions. They
used to do it with five copies of urllib code; now they ask this client, and the training job is
found by its name from ``Settings.job_name`` (env JOB_NAME) everywhere.

Only the standard library: the CLI runs in the stack scripts and in the Flink image.

    python -m online_ml.flink_rest ready [--taskmanagers N] [--free-slots N] [--wait SECONDS]
    python -m online_ml.flink_rest job-running
    python -m online_ml.flink_rest cancel-all [--timeout SECONDS]

Each prints one human line per finding and exits 0 (yes / done) or 1 (no / failed, or the REST
API does not answer); a bad setting is one ``error:`` line and exit 2, like every entry point.

The decisions are plain functions of the REST API's answers, testable without a cluster:

>>> readiness({"taskmanagers": 1, "slots-total": 2, "slots-available": 1}, taskmanagers=1)
(True, '1 TaskManager(s), 2 slot(s), 1 free')
>>> readiness({"taskmanagers": 0, "slots-total": 0, "slots-available": 0}, taskmanagers=1)[0]
False
>>> [j["jid"] for j in active([{"jid": "a", "state": "CANCELED"}, {"jid": "b", "state": "RUNNING"}])]
['b']
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from typing import Any

#: States a job does not leave: nothing more will happen to it.
TERMINAL = frozenset({"FINISHED", "CANCELED", "FAILED"})
#: The metric group of the training UDF (stream.py registers its metrics under it).
UDF_GROUP = "online_ml"


class FlinkUnreachable(OSError):
    """The REST API did not answer (cluster down, wrong FLINK_REST_URL). ``refused``: the
    connection was refused, i.e. nothing listens there (the JobManager process is gone), as
    opposed to a timeout (it may be alive and busy)."""

    refused = False


def readiness(overview: dict, taskmanagers: int = 1, free_slots: int = 0) -> tuple[bool, str]:
    """Whether ``/overview`` shows a cluster that can run a job, and why (one line)."""
    tms = int(overview.get("taskmanagers", 0))
    total = int(overview.get("slots-total", 0))
    free = int(overview.get("slots-available", 0))
    found = f"{tms} TaskManager(s), {total} slot(s), {free} free"
    if tms < taskmanagers:
        return False, f"{found}; waiting for {taskmanagers} TaskManager(s)"
    if taskmanagers and total < 1:
        return False, f"{found}; no task slot registered yet"
    if free < free_slots:
        return False, f"{found}; {free_slots} must be free"
    return True, found


def active(jobs: Iterable[dict]) -> list[dict]:
    """The jobs of a ``/jobs/overview`` answer that are not finished, cancelled or failed."""
    return [j for j in jobs if j.get("state") not in TERMINAL]


def short_metric_names(ids: Iterable[str], group: str = UDF_GROUP) -> dict[str, str]:
    """Metric id -> its name within ``group`` (``0.Map.online_ml.sample_count`` -> ``sample_count``).

    >>> short_metric_names(["0.Source.numRecordsIn", "0.Calc.online_ml.sample_count"])
    {'0.Calc.online_ml.sample_count': 'sample_count'}
    """
    marker = f".{group}."
    return {i: i.split(marker, 1)[1] for i in ids if marker in i}


class FlinkRest:
    """The REST calls the project makes. Every call raises :class:`FlinkUnreachable` when the
    cluster does not answer, and ``urllib.error.HTTPError`` for an unknown job."""

    def __init__(self, base: str = "http://localhost:8081", timeout: float = 5.0):
        self.base = base.rstrip("/")
        self.timeout = timeout

    @property
    def address(self) -> str:
        """``host:port``, as ``flink run -m`` wants it."""
        return urllib.parse.urlsplit(self.base).netloc

    def _call(self, path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(self.base + path, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError:
            raise
        except (OSError, ValueError) as exc:  # URLError, refused, timeout, bad URL
            reason = getattr(exc, "reason", exc)
            unreachable = FlinkUnreachable(f"the Flink REST API at {self.base} does not answer: "
                                           f"{reason}")
            unreachable.refused = isinstance(reason, ConnectionRefusedError)
            raise unreachable from None
        return json.loads(body) if body else None

    # -- the cluster -------------------------------------------------------------------------------
    def overview(self) -> dict:
        return self._call("/overview")

    def ready(self, taskmanagers: int = 1, free_slots: int = 0) -> bool:
        try:
            return readiness(self.overview(), taskmanagers, free_slots)[0]
        except FlinkUnreachable:
            return False

    def direct_memory(self) -> dict[str, tuple[float, float]]:
        """Each TaskManager's JVM direct memory in use and its limit, in MB: where the Python
        workers' gRPC buffers come from (stack/flink/config.yaml, ``task.off-heap``); near the
        limit, a TaskManager's Python workers fail to start."""
        out = {}
        for tm in self._call("/taskmanagers")["taskmanagers"]:
            detail = self._call(f"/taskmanagers/{tm['id']}")
            memory = detail.get("memoryConfiguration", {})  # -XX:MaxDirectMemorySize is their sum
            limit = sum(memory.get(k, 0) for k in ("frameworkOffHeap", "taskOffHeap", "networkMemory"))
            out[tm["id"]] = (detail.get("metrics", {}).get("directUsed", 0) / 2**20, limit / 2**20)
        return out

    # -- jobs --------------------------------------------------------------------------------------
    def jobs(self) -> list[dict]:
        """Every job the cluster knows (``jid``, ``name``, ``state``, ...), running or not."""
        return self._call("/jobs/overview")["jobs"]

    def jobs_named(self, name: str) -> list[dict]:
        return [j for j in self.jobs() if j.get("name") == name]

    def job(self, job_id: str) -> dict:
        return self._call(f"/jobs/{job_id}")

    def state(self, job_id: str) -> str:
        return self.job(job_id)["state"]

    def fully_running(self, job_id: str) -> bool:
        """RUNNING with every operator RUNNING (after a restart the job is RUNNING first)."""
        job = self.job(job_id)
        return job["state"] == "RUNNING" and all(v["status"] == "RUNNING" for v in job["vertices"])

    def cancel(self, job_id: str) -> None:
        """Ask Flink to cancel the job (returns at once; see :meth:`wait_stopped`)."""
        self._call(f"/jobs/{job_id}?mode=cancel", method="PATCH")

    def wait_stopped(self, job_ids: Sequence[str], timeout: float = 20.0) -> list[str]:
        """Wait until the jobs reached a terminal state; return those that did not in time."""
        deadline = time.monotonic() + timeout
        while True:
            states = {j["jid"]: j["state"] for j in self.jobs()}
            left = [j for j in job_ids if states.get(j, "FINISHED") not in TERMINAL]
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.5)

    def cancel_all(self, timeout: float = 20.0) -> tuple[list[dict], list[str]]:
        """Cancel every job that is not finished yet: the UDF's close() then writes a last model
        backup. Returns the jobs cancelled and the ids of those still not stopped at the end."""
        jobs = active(self.jobs())
        for job in jobs:
            self.cancel(job["jid"])
        return jobs, self.wait_stopped([j["jid"] for j in jobs], timeout) if jobs else []

    # -- what a job reports ------------------------------------------------------------------------
    def udf_metrics(self, job_id: str, group: str = UDF_GROUP) -> dict[str, str]:
        """Every metric of the UDF's group, short name -> value (a string, as Flink gives it)."""
        out: dict[str, str] = {}
        for vertex in self.job(job_id)["vertices"]:
            path = f"/jobs/{job_id}/vertices/{vertex['id']}/metrics"
            names = short_metric_names((m["id"] for m in self._call(path)), group)
            if not names:
                continue
            query = urllib.parse.quote(",".join(names), safe=",")
            for m in self._call(f"{path}?get={query}"):
                out[names[m["id"]]] = m["value"]
        return out

    def restarts(self, job_id: str) -> int | None:
        """How often the job restarted (a killed TaskManager, ...): explains outliers."""
        got = self._call(f"/jobs/{job_id}/metrics?get=numRestarts")
        return int(got[0]["value"]) if got else None

    def exception_history(self, job_id: str) -> list[dict]:
        """The job's failures as Flink lists them (each with its ``stacktrace``)."""
        history = self._call(f"/jobs/{job_id}/exceptions").get("exceptionHistory") or {}
        return list(history.get("entries") or [])

    def root_exception(self, job_id: str) -> str:
        """The latest failure's stack trace (at most 2000 characters), or ''."""
        return (self._call(f"/jobs/{job_id}/exceptions").get("rootException") or "")[:2000]

    def completed_checkpoints(self, job_id: str) -> int:
        return int(self._call(f"/jobs/{job_id}/checkpoints")["counts"]["completed"])


# -- the CLI ---------------------------------------------------------------------------------------
def _ready(flink: FlinkRest, args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.wait
    while True:
        try:
            ok, why = readiness(flink.overview(), args.taskmanagers, args.free_slots)
        except FlinkUnreachable as exc:
            ok, why = False, str(exc)
        if ok or time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    print(f"Flink at {flink.base} is {'ready' if ok else 'not ready'}: {why}",
          file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def _job_running(flink: FlinkRest, job_name: str) -> int:
    jobs = active(flink.jobs_named(job_name))
    if not jobs:
        print(f"the training job '{job_name}' is not running on {flink.base}")
        return 1
    print("; ".join(f"the training job '{job_name}' is {j['state']} ({j['jid']})" for j in jobs))
    return 0


def _cancel_all(flink: FlinkRest, timeout: float) -> int:
    jobs = active(flink.jobs())
    for job in jobs:
        print(f"==> Cancelling Flink job '{job['name']}' ({job['jid']})", flush=True)
        flink.cancel(job["jid"])
    left = flink.wait_stopped([j["jid"] for j in jobs], timeout) if jobs else []
    if left:
        print(f"error: still not stopped after {timeout:g} s: {', '.join(left)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    from online_ml.config import Settings

    parser = argparse.ArgumentParser(prog="python -m online_ml.flink_rest",
                                     description="Ask the Flink cluster (FLINK_REST_URL).")
    commands = parser.add_subparsers(dest="command", required=True)
    ready = commands.add_parser("ready", help="exit 0 when the cluster can run jobs")
    ready.add_argument("--taskmanagers", type=int, default=1, metavar="N",
                       help="TaskManagers that must be registered (default 1; 0: REST answers)")
    ready.add_argument("--free-slots", type=int, default=0, metavar="N",
                       help="task slots that must be free (default 0)")
    ready.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                       help="keep asking this long before giving up (default: ask once)")
    commands.add_parser("job-running", help="exit 0 when the training job (JOB_NAME) runs")
    cancel = commands.add_parser("cancel-all", help="cancel every running job and wait for it")
    cancel.add_argument("--timeout", type=float, default=20.0, metavar="SECONDS")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ValueError as exc:  # a bad setting: say which, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    flink = FlinkRest(settings.flink_rest_url, timeout=3.0)
    try:
        if args.command == "ready":
            return _ready(flink, args)
        if args.command == "job-running":
            return _job_running(flink, settings.job_name)
        return _cancel_all(flink, args.timeout)
    except (FlinkUnreachable, urllib.error.HTTPError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
