"""Jobs submitted exactly as a user submits them, ``flink run -m HOST:PORT -d -py stream.py``,
and cancelled again, whatever happens in between.

Why the CLI: the tests and benchmarks must exercise the path a user takes (the CLI's Python
driver, the job's configuration from the environment), not a shortcut around it. What the job
does afterwards is read through the project's REST client, :class:`online_ml.flink_rest.FlinkRest`.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
from collections.abc import Mapping, Sequence

from online_ml.flink_rest import TERMINAL, FlinkRest
from online_ml.harness.paths import ROOT, VENV_BIN, instance_environment, venv_tool
from online_ml.harness.waiting import wait_for

log = logging.getLogger(__name__)


class SubmitFailed(RuntimeError):
    """``flink run`` failed or printed no job id (its output is in the message)."""


def job_id_in(output: str) -> str | None:
    """The job id ``flink run -d`` printed.

    >>> job_id_in("Job has been submitted with JobID 0123456789abcdef0123456789abcdef")
    '0123456789abcdef0123456789abcdef'
    >>> job_id_in("no job here") is None
    True
    """
    m = re.search(r"JobID ([0-9a-f]{32})", output) or re.search(r"\b([0-9a-f]{32})\b", output)
    return m.group(1) if m else None


class FlinkJobs(FlinkRest, contextlib.AbstractContextManager):
    """A REST client that also submits jobs with the ``flink`` CLI and remembers them, so that
    :meth:`cancel_submitted` (and the end of a ``with`` block) cancels exactly those."""

    def __init__(self, base: str, timeout: float = 5.0):
        super().__init__(base, timeout)
        self.submitted: list[str] = []

    def submit(self, script: str, env: Mapping[str, str] | None = None, args: Sequence[str] = (),
               flink_options: Sequence[str] = (), timeout: float = 300) -> str:
        """``flink run -m <this cluster> -d [flink_options] -py script [args]`` from the
        repository with ``env`` on top of this environment; returns the job id."""
        full_env = dict(os.environ, **(env or {}))
        full_env.update(instance_environment(full_env))  # another stack's CLI configuration
        full_env["PATH"] = f"{VENV_BIN}:{full_env.get('PATH', '')}"
        out = subprocess.run([venv_tool("flink"), "run", "-m", self.address, "-d", *flink_options,
                              "-py", script, *args],
                             cwd=ROOT, env=full_env, capture_output=True, text=True,
                             timeout=timeout)
        job_id = job_id_in(out.stdout)
        if out.returncode != 0 or not job_id:
            raise SubmitFailed(f"flink run {script} failed ({out.returncode}):\n"
                               f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        self.submitted.append(job_id)
        return job_id

    def cancel_and_wait(self, job_id: str, timeout: float = 60.0) -> str:
        """Cancel the job and wait until it stopped; returns its final state."""
        try:
            self.cancel(job_id)

            def stopped() -> str | None:
                state = self.state(job_id)
                return state if state in TERMINAL else None

            return wait_for(stopped, timeout, f"job {job_id} to stop")
        finally:
            if job_id in self.submitted:
                self.submitted.remove(job_id)

    def cancel_submitted(self) -> None:
        """Cancel every job submitted here and not cancelled yet; never raises (cleanup)."""
        for job_id in list(self.submitted):
            try:
                self.cancel_and_wait(job_id)
            except Exception as exc:
                log.warning("could not cancel job %s: %s", job_id, exc)

    def restarts_if_known(self, job_id: str) -> int | None:
        """:meth:`restarts`, or None when the REST API cannot tell (for reports)."""
        try:
            return self.restarts(job_id)
        except OSError:
            return None

    def failure_if_any(self, job_id: str) -> str:
        """The latest failure's stack trace, or '' (also when the REST API cannot tell)."""
        try:
            return self.root_exception(job_id)
        except OSError:
            return ""

    def __exit__(self, *exc: object) -> None:
        self.cancel_submitted()
