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

The decisions are plain functions of what Flink answered: :mod:`online_ml.watcher_rules`.
"""
from __future__ import annotations

import argparse
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
from pathlib import Path
from typing import Any

from online_ml import training_state
from online_ml.config import Settings
from online_ml.flink_rest import FlinkRest, FlinkUnreachable
from online_ml.model_store import ModelStore
from online_ml.training_state import RESUBMITTING, UNKNOWN
from online_ml.watcher_kafka import KafkaSide
from online_ml.watcher_rules import Memory, backoff, due, mark_stopped, observe, room_for, ts

log = logging.getLogger("online_ml.watcher")

ROOT = Path(__file__).resolve().parents[1]
SUBMIT_TIMEOUT = 300.0  # a `flink run` still busy after this is killed
#: `flink run` started while the JobManager restarts retries its submission every second for
#: two minutes (Flink's defaults: 20 tries 3 s apart; a loaded 2-core machine restarted the
#: JobManager in up to 49 s)
CLIENT_RETRY = ("-Drest.retry.max-attempts=120", "-Drest.retry.delay=1s")
_JOB_ID = re.compile(r"JobID ([0-9a-f]{32})")



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
