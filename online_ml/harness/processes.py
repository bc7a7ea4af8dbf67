"""Processes the tests and benchmarks start: the prediction server, and stopping anything.

Why a real process: the server's behaviour under load, after a kill -9 or with its production
WSGI server (granian, gunicorn, waitress) only shows in a process of its own, started as a user would.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from online_ml import procfs
from online_ml.harness.net import free_port, http_json
from online_ml.harness.paths import LOGS, PY, ROOT, venv_tool
from online_ml.harness.waiting import GiveUp, wait_for


def stop_process(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """TERM, then KILL after ``grace`` seconds; always reaps it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)


def granian_command(call: str, host: str, port: int, workers: int,
                    program: str | None = None) -> list[str]:
    """The production server's command (``stack/demo.sh`` runs the same): granian, ``workers``
    processes each answering one request at a time in one Python thread (the work is GIL-bound:
    more threads only contend), keep-alive connections handled in Rust; a worker that dies is
    replaced after 1 s while the others go on answering (by default granian would exit). A
    worker that does not stop within 3 s of a TERM is killed: granian 2.8.9 waits forever for a
    replaced worker otherwise, and stopping the server by KILL then leaves that worker behind
    (tests/test_load.py). ``call`` is ``module:factory``; ``program``, granian's path (the
    venv's by default; ``granian`` in an image)."""
    return [program or venv_tool("granian"), "--interface", "wsgi", "--host", host, "--port", str(port),
            "--workers", str(workers), "--blocking-threads", "1", "--respawn-failed-workers",
            "--respawn-interval", "1", "--workers-kill-timeout", "3", "--factory", call]


class Server(contextlib.AbstractContextManager):
    """The prediction server (or another WSGI app) as a real process on a free port.

    * ``call="module:factory"``: the app under waitress with ``threads`` (one process), or with
      ``workers`` under ``wsgi``: ``"granian"`` (that many worker processes of one Python thread
      each, as README and ``make demo``) or ``"gunicorn"`` (that many sync workers; with
      ``gunicorn_threads``, gthread workers of that many threads);
    * ``script="model_server.py"``: the tutorial's command, ``python model_server.py --port N``.

    ``env`` is added to this process's environment; the server runs in ``cwd`` (the WSGI
    servers import the app from there). Its output goes to a log file in ``log_dir``, deleted on a
    clean exit unless ``keep_log``. Stopped (TERM, then KILL) when the ``with`` block ends.
    """

    def __init__(self, call: str | None = None, env: Mapping[str, str] | None = None, *,
                 script: str | None = None, threads: int = 8, workers: int = 0,
                 name: str = "server", cwd: Path = ROOT, log_dir: Path | None = None,
                 keep_log: bool = False, gunicorn_threads: int = 0, wsgi: str = "gunicorn"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = name
        self.keep_log = keep_log
        if wsgi not in ("granian", "gunicorn"):
            raise ValueError(f"wsgi={wsgi!r}: granian or gunicorn")
        if script:
            command = [PY, str(ROOT / script), "--port", str(self.port)]
        elif call and workers and wsgi == "granian":
            command = granian_command(call, "127.0.0.1", self.port, workers)
        elif call and workers:
            module, factory = call.split(":")
            command = [venv_tool("gunicorn"), "--bind", f"127.0.0.1:{self.port}",
                       "--workers", str(workers), f"{module}:{factory}()"]
            if gunicorn_threads:  # gthread workers: keep-alive connections, threads each
                command[-1:-1] = ["--worker-class", "gthread", "--threads",
                                  str(gunicorn_threads)]
        elif call:
            command = [venv_tool("waitress-serve"), "--host", "127.0.0.1", "--port",
                       str(self.port), "--threads", str(threads), "--call", call]
        else:
            raise ValueError("Server needs call='module:factory' or script='file.py'")
        log_dir = log_dir or LOGS
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}-{self.port}.log"
        self._log = open(self.log_path, "wb")
        # a mark in the environment of the server and everything it starts: what __exit__ may
        # kill once the server itself is stopped (its own processes, never anyone else's)
        mark = uuid.uuid4().hex
        self._mark = f"ONLINE_ML_TEST_SERVER={mark}"
        self.proc = subprocess.Popen(command, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, **(env or {}), ONLINE_ML_TEST_SERVER=mark))

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the server and every process it started, at any depth,
        have used so far (all carry its mark); None once the server itself is gone."""
        own = procfs.cpu_seconds(self.proc.pid)
        if own is None:
            return None
        others = (procfs.cpu_seconds(pid) for pid in procfs.carrying([self._mark])
                  if pid != self.proc.pid)
        return own + sum(cpu for cpu in others if cpu is not None)

    def workers(self) -> set[int]:
        """The processes the server started itself (gunicorn's or granian's workers)."""
        return set(procfs.children(self.proc.pid))

    def wait_ready(self, path: str = "/healthz", timeout: float = 60.0,
                   until: Callable[[Any], Any] | None = None) -> Any:
        """Wait until ``path`` answers 200 (with ``until``: until ``until(its JSON)`` is truthy);
        fail at once, naming the log, if the process exits meanwhile."""
        def up() -> Any:
            if self.proc.poll() is not None:
                raise GiveUp(f"{self.name} exited with {self.proc.returncode}; see "
                             f"{self.log_path}:\n{self.log_path.read_text(errors='replace')[-2000:]}")
            answer = http_json(self.url + path, timeout=2)
            return until(answer) if until else True

        return wait_for(up, timeout, f"{self.name} on {self.url} (log: {self.log_path})",
                        interval=0.3)

    def __exit__(self, *exc: object) -> None:
        stop_process(self.proc)
        # what outlived it (a worker granian replaced, if granian was KILLed: see granian_command)
        for pid in procfs.carrying([self._mark]):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        self._log.close()
        if exc[0] is None and not self.keep_log:
            with contextlib.suppress(OSError):
                self.log_path.unlink()
