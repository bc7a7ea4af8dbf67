"""The job watcher: training never stops silently, and a lost job comes back.

Why: a standalone Flink cluster without high availability forgets its jobs when the JobManager
dies. The stack's supervisor restarts the JobManager within seconds, but it comes back empty:
nothing trains any more while the producer goes on writing and the board goes on answering from
a model that no longer learns. Every ``WATCH_INTERVAL_SECONDS`` the watcher asks Flink's REST API
for the training job (``JOB_NAME``) and

* brings back a job it has seen running that is now gone (no job of that name, or a JobManager
  that refuses connections: its process is gone, and with it the job) or ``FAILED``:
  ``flink run -m <REST address> -d -py stream.py`` from the repository, with the environment the
  watcher was started with, when the cluster has room for it (:func:`room_for`), with backoff.
  The new job resumes from the Kafka group's committed offsets (Flink's Kafka source commits
  them at each checkpoint) and from the newest model in Redis;
* leaves alone a job that was cancelled (or stopped) on purpose, until someone submits a job of
  that name again;
* writes the training state to Redis for the server and the board (``online_ml.training_state``)
  and one ``training_stopped`` / ``training_resumed`` record to ``ALERT_TOPIC`` per transition.

Its memory (the job seen running, "cancelled on purpose", pending alerts) is that same record,
so a restarted watcher does not resurrect a cancelled job. It is not a way to start training:
``make demo`` (or the user) submits the first job.

    python -m online_ml.watcher [run] [--once]   watch (stack/up.sh runs it under the supervisor)
    python -m online_ml.watcher status           one line; exit 0 when a watcher reports
    python -m online_ml.watcher mark-stopped     the job is stopped on purpose (stack/down.sh)

The decisions are plain functions of what Flink answered (:func:`observe`, :func:`due`):

>>> m = observe(Memory(job_name="J"), [{"jid": "a", "state": "RUNNING", "start-time": 1}], now=10)
>>> m.state, m.watched_job, due(m, now=10)
('running', 'a', False)
>>> m = observe(m, [], now=12)                       # the JobManager came back without it
>>> m.state, due(m, now=12), [a["kind"] for a in m.pending_alerts]
('absent', True, ['training_stopped'])
>>> m = observe(m, [{"jid": "a", "state": "CANCELED", "start-time": 1}], now=14)
>>> m.cancelled, due(m, now=14)                      # cancelled on purpose: stays so
(True, False)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
from datetime import datetime
from pathlib import Path
from typing import Any

from online_ml import training_state
from online_ml.config import Settings
from online_ml.flink_rest import TERMINAL, FlinkRest, FlinkUnreachable, readiness
from online_ml.model_store import ModelStore
from online_ml.schema import TS_FORMAT
from online_ml.training_state import ABSENT, RESUBMITTING, RUNNING, UNKNOWN, UNREACHABLE
from online_ml.watcher_kafka import KafkaSide

log = logging.getLogger("online_ml.watcher")

ROOT = Path(__file__).resolve().parents[1]
#: Job states after which the job does not run again by itself (SUSPENDED: its JobManager let go).
ENDED = TERMINAL | {"SUSPENDED"}
#: Ended by someone on purpose (``flink cancel``, ``flink stop``): never brought back.
ON_PURPOSE = frozenset({"CANCELED", "FINISHED"})
#: Brought back after these states of a job the watcher saw running.
BRING_BACK = frozenset({ABSENT, "failed", "suspended"})
BACKOFF_BASE, BACKOFF_MAX = 5.0, 60.0  # s between resubmissions of a job that keeps failing
STABLE_SECONDS = 60.0  # running this long resets the backoff
SUBMIT_TIMEOUT = 300.0  # a `flink run` still busy after this is killed
VISIBLE_TIMEOUT = 60.0  # a submitted job Flink does not list after this was lost
#: A remembered running job older than this is not brought back: the watcher was stopped (make
#: down, make up) rather than restarted by its supervisor, and `make demo` submits the job.
MEMORY_TRUST_SECONDS = 60.0
STOPPED, RESUMED = "training_stopped", "training_resumed"
#: `flink run` started while the JobManager restarts retries its submission every second for
#: two minutes (Flink's defaults: 20 tries 3 s apart; a loaded 2-core machine restarted the
#: JobManager in up to 49 s)
CLIENT_RETRY = ("-Drest.retry.max-attempts=120", "-Drest.retry.delay=1s")
_JOB_ID = re.compile(r"JobID ([0-9a-f]{32})")


# -- the decisions, without I/O --------------------------------------------------------------------
@dataclasses.dataclass
class Memory:
    """The record under ``ModelStore.training_key()``: public state plus the watcher's memory."""

    job_name: str = ""
    state: str = UNKNOWN
    job_id: str | None = None
    since: float | None = None
    checked_at: float | None = None
    action: str | None = None  # "resubmitting" from `flink run` until Flink lists the new job
    watched_job: str | None = None  # the last job seen RUNNING: the one to bring back
    cancelled: bool = False  # stopped on purpose: nothing is brought back ...
    cancelled_job: str | None = None  # ... until a job other than this one is submitted
    resubmits: int = 0  # in a row; reset after STABLE_SECONDS of running
    last_submit_at: float | None = None
    submitted_job: str | None = None  # submitted, not listed by Flink yet
    up: bool | None = None  # running at the last check; None until first seen running
    down_since: float | None = None
    pending_alerts: list[dict] = dataclasses.field(default_factory=list)
    source_offsets: int | None = None  # sum of the source topic's end offsets
    records_at: float | None = None  # when they last grew
    message: str = ""
    refused: bool = False  # unreachable because nothing listens: the JobManager process is gone

    def to_record(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls, record: dict | None, job_name: str, now: float) -> Memory:
        """The memory a watcher left (fields of another job name or unknown ones are dropped).
        A submission in flight died with its watcher; a job remembered as running is only
        trusted when the record is recent (see :data:`MEMORY_TRUST_SECONDS`)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in (record or {}).items() if k in names}
        if values.get("job_name") != job_name:
            return cls(job_name=job_name)
        memory = cls(**values)
        memory.action = memory.submitted_job = None
        if memory.checked_at is None or now - memory.checked_at > MEMORY_TRUST_SECONDS:
            memory.watched_job = None
        return memory


def current_job(jobs: list[dict]) -> dict | None:
    """The job that counts: the newest one still active, else the newest one that ended."""
    active = [j for j in jobs if j.get("state") not in ENDED]
    pool = active or jobs
    return max(pool, key=lambda j: (j.get("start-time") or 0, j.get("last-modification") or 0),
               default=None)


def ts(now: float) -> str:
    return datetime.fromtimestamp(now).strftime(TS_FORMAT)


def alert(kind: str, memory: Memory, previous: str, now: float) -> dict:
    """One record for the alert topic (``kind`` is ``training_stopped`` or ``training_resumed``)."""
    out: dict[str, Any] = {"kind": kind, "job_name": memory.job_name, "state": memory.state,
                           "previous_state": previous, "job_id": memory.job_id, "ts": ts(now)}
    if kind == RESUMED and memory.down_since is not None:
        out["down_seconds"] = round(now - memory.down_since, 1)
    return out


def observe(memory: Memory, jobs: list[dict] | None, now: float, refused: bool = False) -> Memory:
    """The memory after one look at the jobs of that name (``None``: Flink did not answer;
    ``refused``: because the connection was refused)."""
    m = dataclasses.replace(memory, pending_alerts=list(memory.pending_alerts))
    previous = m.state
    m.refused = jobs is None and refused
    if jobs is None:
        state, job_id = UNREACHABLE, m.job_id
    else:
        job = current_job(jobs)
        state, job_id = (ABSENT, None) if job is None else (job["state"].lower(), job["jid"])
        if job is not None and job["state"] not in ENDED and m.cancelled \
                and job_id != m.cancelled_job:
            m.cancelled = False  # someone submitted it again
        if m.submitted_job is not None and (
                (job is not None and job["state"] not in ENDED)
                or any(j.get("jid") == m.submitted_job for j in jobs)):
            m.submitted_job, m.action = None, None  # the job we submitted is there (or one like it)
        if job is not None and job["state"] == "RUNNING":
            m.watched_job = job_id
        if job is not None and job["state"] in ON_PURPOSE and not m.cancelled \
                and job_id != m.cancelled_job:
            m.cancelled, m.cancelled_job = True, job_id
    if state != previous or m.since is None:
        m.since = now
    m.state, m.job_id, m.checked_at = state, job_id, now
    if state == RUNNING and now - m.since >= STABLE_SECONDS:
        m.resubmits = 0
    up = state == RUNNING  # alerts only about training that was seen running
    if up and m.up is False:
        m.pending_alerts.append(alert(RESUMED, m, previous, now))
    elif not up and m.up:
        m.down_since = now
        m.pending_alerts.append(alert(STOPPED, m, previous, now))
    if up or m.up is not None:
        m.up = up
    if m.submitted_job is not None and now - (m.last_submit_at or now) > VISIBLE_TIMEOUT:
        m.submitted_job, m.action = None, None  # lost: may be submitted again after the backoff
    return m


def backoff(resubmits: int) -> float:
    """Seconds to wait before the next resubmission, after ``resubmits`` in a row.

    >>> [backoff(n) for n in range(6)]
    [0.0, 5.0, 10.0, 20.0, 40.0, 60.0]
    """
    return 0.0 if resubmits <= 0 else min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (resubmits - 1))


def wants_resubmit(m: Memory) -> bool:
    """A job seen running is gone or failed, was not stopped on purpose, and none is on its way.

    Gone includes a JobManager that refuses connections: a standalone cluster without high
    availability loses its jobs with its JobManager process, so `flink run` can start while the
    supervisor restarts it (the client builds the job meanwhile and retries the submission until
    the REST API answers). A JobManager that does not answer in time may be alive and busy with
    the job: then nothing is submitted.
    """
    gone = m.state in BRING_BACK or (m.state == UNREACHABLE and m.refused)
    return (gone and m.watched_job is not None and not m.cancelled
            and m.action is None and m.submitted_job is None)


def due(m: Memory, now: float) -> bool:
    last = m.last_submit_at
    return wants_resubmit(m) and (last is None or now >= last + backoff(m.resubmits))


def room_for(overview: dict, slots: int) -> tuple[bool, str]:
    """Whether to submit now: the cluster has ``slots`` free task slots, or no TaskManager has
    registered yet. A JobManager that just restarted answers a few seconds before its
    TaskManagers are back (7 s measured); `flink run -py` needs longer than that to build the
    job, so it starts at once and Flink deploys the job when the slots arrive. A cluster whose
    TaskManagers are all busy is waited for instead of queueing a job behind it.

    >>> room_for({"taskmanagers": 0, "slots-total": 0, "slots-available": 0}, 1)[0]
    True
    >>> room_for({"taskmanagers": 1, "slots-total": 2, "slots-available": 0}, 1)
    (False, '1 TaskManager(s), 2 slot(s), 0 free; 1 must be free')
    """
    if int(overview.get("taskmanagers", 0)) == 0:
        return True, "no TaskManager registered yet: Flink deploys the job when one is"
    return readiness(overview, taskmanagers=1, free_slots=slots)


def mark_stopped(m: Memory, why: str) -> Memory:
    """The job is stopped on purpose (the stack is going down): do not bring it back."""
    return dataclasses.replace(m, cancelled=True, cancelled_job=m.job_id or m.watched_job,
                               action=None, submitted_job=None, message=why, up=None,
                               pending_alerts=[])


# -- I/O -----------------------------------------------------------------------------------------
def flink_cli() -> str:
    """The venv's configured ``flink`` next to this Python, else the one on PATH."""
    beside = Path(sys.executable).parent / "flink"
    return str(beside) if beside.exists() else shutil.which("flink") or "flink"


class Watcher:
    """One watcher of one job name; :meth:`tick` is one look, :meth:`run` looks until stopped."""

    def __init__(self, settings: Settings, script: Path = ROOT / "stream.py",
                 flink: str | None = None, environ: dict[str, str] | None = None):
        self.settings = settings
        self.script = script
        self.flink_cli = flink or flink_cli()
        self.environ = dict(os.environ if environ is None else environ)
        self.rest = FlinkRest(settings.flink_rest_url, timeout=3.0)
        self.store = ModelStore(settings.redis_client(socket_connect_timeout=1, socket_timeout=2),
                                prefix=settings.model_key)
        self.kafka = KafkaSide(settings)
        self.memory = Memory(job_name=settings.job_name)
        self.loaded = False  # nothing is submitted before the memory was read
        self.proc: subprocess.Popen | None = None
        self.proc_out: Any = None
        self.stopping = threading.Event()

    def _look(self, now: float) -> Memory:
        """One look at the jobs of that name: the memory after it."""
        try:
            jobs, refused = self.rest.jobs_named(self.settings.job_name), False
        except FlinkUnreachable as exc:
            jobs, refused = None, exc.refused
        except (urllib.error.HTTPError, ValueError, KeyError):
            jobs, refused = None, False
        return observe(self.memory, jobs, now, refused)

    def _load(self, now: float) -> None:
        try:
            record = training_state.read(self.store)
        except Exception as exc:
            self.memory.message = f"waiting for Redis to read the watcher's memory: {exc}"
            return
        self.memory = Memory.from_record(record, self.settings.job_name, now)
        self.loaded = True
        log.info("watching '%s' on %s (memory: state %s, job seen running %s, cancelled %s)",
                 self.settings.job_name, self.rest.base, self.memory.state,
                 self.memory.watched_job, self.memory.cancelled)

    def tick(self, now: float | None = None) -> Memory:
        now = time.time() if now is None else now
        if not self.loaded:
            self._load(now)
        before = self.memory.state
        self.memory = self._look(now)
        if self.memory.state != before:
            log.info("training job '%s': %s -> %s (%s)", self.settings.job_name, before,
                     self.memory.state, self.memory.job_id)
        self._poll_submission(now)
        if self.loaded and due(self.memory, now):
            self._resubmit(now)
        self.kafka.tick(self.memory, now)
        if self.loaded:
            try:
                training_state.write(self.store, self.memory.to_record())
            except Exception as exc:
                log.warning("could not write the training state to Redis: %s", exc)
        return self.memory

    def _resubmit(self, now: float) -> None:
        if not self.memory.refused:  # else there is no cluster to ask yet
            try:
                ok, why = room_for(self.rest.overview(), max(1, self.settings.parallelism))
            except (FlinkUnreachable, urllib.error.HTTPError) as exc:
                ok, why = False, str(exc)
            if not ok:
                self.memory.message = f"waiting to resubmit: {why}"
                return
        # check again right before submitting: never two jobs
        self.memory = self._look(now)
        if not due(self.memory, now):
            return
        self.proc_out = tempfile.TemporaryFile()
        command = [self.flink_cli, "run", "-m", self.rest.address, "-d", *CLIENT_RETRY,
                   "-py", str(self.script)]
        log.warning("training job '%s' is %s: resubmitting it (%s in a row): %s",
                    self.settings.job_name, self.memory.state, self.memory.resubmits + 1,
                    " ".join(command))
        self.proc = subprocess.Popen(command, cwd=ROOT, env=self.environ, stdin=subprocess.DEVNULL,
                                     stdout=self.proc_out, stderr=subprocess.STDOUT)
        m = self.memory
        m.action, m.resubmits, m.last_submit_at = RESUBMITTING, m.resubmits + 1, now
        m.message = f"resubmitting at {ts(now)}"

    def _poll_submission(self, now: float) -> None:
        if self.proc is None:
            return
        rc = self.proc.poll()
        if rc is None:
            if now - (self.memory.last_submit_at or now) <= SUBMIT_TIMEOUT:
                return
            self.proc.kill()
            rc = self.proc.wait()
        self.proc_out.seek(0)
        output = self.proc_out.read().decode(errors="replace")
        self.proc_out.close()
        self.proc = None
        found = _JOB_ID.search(output)
        if rc == 0 and found:
            self.memory.submitted_job = found.group(1)
            self.memory.message = f"resubmitted as job {found.group(1)} at {ts(now)}"
            log.warning("resubmitted '%s' as job %s", self.settings.job_name, found.group(1))
        else:
            self.memory.action = None
            self.memory.message = f"resubmission failed (exit code {rc}) at {ts(now)}"
            log.error("resubmitting '%s' failed (exit code %s); next try in %.0f s:\n%s",
                      self.settings.job_name, rc, backoff(self.memory.resubmits), output[-3000:])

    def run(self) -> None:
        interval = self.settings.watch_interval_seconds
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                self.tick()
            except Exception:  # one bad look must not end the watch
                log.exception("watcher tick failed")
            self.stopping.wait(max(0.0, interval - (time.monotonic() - started)))
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # stopped (make down) while submitting: submit nothing
        self.kafka.close()

    def stop(self, *_: object) -> None:
        self.stopping.set()


# -- the CLI ---------------------------------------------------------------------------------------
def _status(settings: Settings) -> int:
    store = ModelStore(settings.redis_client(), prefix=settings.model_key)
    record = training_state.read(store)
    now = time.time()
    seen = training_state.view(record, now, settings.watch_interval_seconds)
    if seen["training"] == UNKNOWN:
        print(f"training '{settings.job_name}': unknown (no watcher has reported in the last "
              f"{training_state.FRESH_INTERVALS * settings.watch_interval_seconds:g} s)")
        return 1
    assert record is not None
    since = seen["training_since"]
    details = [f"job {record['job_id']}" if record.get("job_id") else "",
               f"since {ts(since)}" if since else "", seen["training_action"] or ""]
    print(f"training '{settings.job_name}': {seen['training']} "
          f"({', '.join(d for d in details if d)})")
    return 0


def _mark_stopped(settings: Settings) -> int:
    store = ModelStore(settings.redis_client(), prefix=settings.model_key)
    now = time.time()
    memory = Memory.from_record(training_state.read(store), settings.job_name, now)
    memory = mark_stopped(memory, f"stopped on purpose at {ts(now)}")
    training_state.write(store, memory.to_record())
    print(f"training '{settings.job_name}': stopped on purpose; the watcher will not bring it back")
    return 0


def _settings_or_none() -> Settings | None:
    """The settings; a bad one is named on stderr instead (exit code 2), without a traceback."""
    try:
        return Settings.from_env()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m online_ml.watcher",
                                     description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    run = commands.add_parser("run", help="watch the training job (the default)")
    for p in (parser, run):
        p.add_argument("--once", action="store_true", help="look once, then exit")
        p.add_argument("--script", type=Path, default=ROOT / "stream.py",
                       help="the job to resubmit (default: stream.py of this checkout)")
        p.add_argument("--flink", help="the flink CLI (default: the venv's, else PATH's)")
    commands.add_parser("status", help="print the training state; exit 0 when a watcher reports")
    commands.add_parser("mark-stopped", help="the job is stopped on purpose: do not bring it back")
    args = parser.parse_args(argv)
    settings = _settings_or_none()
    if settings is None:
        return 2
    try:
        if args.command == "status":
            return _status(settings)
        if args.command == "mark-stopped":
            return _mark_stopped(settings)
    except Exception as exc:  # Redis unreachable, most likely
        print(f"error: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)  # its connection chatter
    watcher = Watcher(settings, script=args.script, flink=args.flink)
    if args.once:
        watcher.tick()
        if watcher.proc is not None:  # a resubmission: see it through
            watcher.proc.wait(SUBMIT_TIMEOUT)
            watcher.tick()
        print(json.dumps(watcher.memory.to_record(), sort_keys=True))
        return 0
    signal.signal(signal.SIGTERM, watcher.stop)
    signal.signal(signal.SIGINT, watcher.stop)
    watcher.run()
    log.info("watcher stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
