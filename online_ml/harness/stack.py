"""The local services, started and stopped through the same scripts `make up` / `make down` use.

Why through the scripts: a test of the real system must run the services the way a user gets
them (ports, passwords, supervision, configuration), so the tests use ``stack/up.sh`` and
``stack/down.sh`` rather than starting Redis, Kafka or Flink their own way. A service that was
already running is used and left running; only what this session started is stopped.
"""
from __future__ import annotations

import os
import subprocess

from online_ml.harness.paths import ROOT
from online_ml.procfs import alive, pgid
from online_ml.supervision import UP_STATES, Supervisor

__all__ = ["alive", "pid_alive", "service_pid", "stack_script", "Stack", "stack_sockets"]

#: The supervised services (online_ml/supervision.py) of each part of the stack, in start order.
SERVICES = {"redis": ["redis"], "kafka": ["kafka"],
            "flink": ["flink-jobmanager", "flink-taskmanager"]}


def pid_alive(name: str) -> bool:
    """Whether service ``name`` of the stack instance in use is supervised and up."""
    return Supervisor().state_of(name) in UP_STATES


def service_pid(name: str) -> int | None:
    """The pid of service ``name``'s running process (supervisord's record), None without one."""
    return Supervisor().pid(name)


def stack_script(script: str, *args: str, timeout: float = 240,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``stack/<script> args...`` (``env`` on top of ours) and capture its output (the caller
    checks the code)."""
    return subprocess.run(["bash", str(ROOT / "stack" / script), *args], cwd=ROOT,
                          env=dict(os.environ, **(env or {})), capture_output=True, text=True,
                          timeout=timeout)


class Stack:
    """Starts services on demand, remembers which ones it started, and stops only those."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def up(self, service: str) -> None:
        if service not in self.started and not all(pid_alive(n) for n in SERVICES[service]):
            self.started.append(service)  # ours to stop; one already running is left alone
        done = stack_script("up.sh", service, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"stack/up.sh {service} failed ({done.returncode}):\n"
                               f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")

    def down(self) -> None:
        names = [n for s in reversed(self.started) for n in reversed(SERVICES[s])]
        if names:
            stack_script("down.sh", *names)


def stack_sockets() -> list[dict]:
    """The listening TCP sockets of the stack's processes, each with its ``service``: supervisord
    makes every service's process the leader of a process group of its own, and everything it
    starts, a TaskManager's Python workers included, stays in that group."""
    from online_ml.harness.net import listening_sockets

    services = {info["pid"]: info["name"] for info in Supervisor().services() if info["pid"]}
    out = []
    for sock in listening_sockets():
        group = pgid(sock["pid"]) if sock["pid"] is not None else None
        if group in services:
            out.append(dict(sock, service=services[group]))
    return out
