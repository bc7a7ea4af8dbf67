"""What /proc says about processes: alive or not, process group, environment, who carries a mark.

Why a module: the stack's process manager (online_ml/supervision.py) finds the processes it
started by a mark in their environment and what a dead service left behind by its process group,
and the tests and benchmarks ask the same questions; no psutil needed.

>>> import os
>>> alive(os.getpid()) and pgid(os.getpid()) == os.getpgid(0)
True
>>> alive(2 ** 22 + 1)  # above any pid Linux hands out
False
"""
from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path


def _stat(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name (which may hold spaces and parens)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as dead)."""
    try:
        return _stat(pid)[0] != "Z"
    except (OSError, IndexError):
        return False


def pgid(pid: int) -> int | None:
    """The process group of ``pid``, None if it is gone."""
    try:
        return int(_stat(pid)[2])
    except (OSError, ValueError, IndexError):
        return None


def start_time(pid: int) -> str | None:
    """The start time of ``pid`` (clock ticks since boot, stat field 22), None if it is gone."""
    try:
        return _stat(pid)[19]
    except (OSError, IndexError):
        return None


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system, stat fields 14 and 15) ``pid`` has used, None if it is gone."""
    try:
        fields = _stat(pid)
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def children(pid: int) -> list[int]:
    """The processes any thread of ``pid`` started (a process's children are listed per thread:
    granian's workers are started by a thread other than the main one)."""
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            found += map(int, Path(f"/proc/{pid}/task/{task}/children").read_text().split())
    return found


def parents_and_commands() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process /proc lets us read.

    >>> os.getppid() == parents_and_commands()[os.getpid()][0]
    True
    """
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(_stat(int(entry.name))[1])
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        out[int(entry.name)] = (ppid, cmd)
    return out


def environ(pid: int) -> set[bytes]:
    """The ``NAME=value`` entries of ``pid``'s environment (empty if gone or not ours to read)."""
    try:
        return set(Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"))
    except OSError:
        return set()


def carrying(entries: Iterable[str]) -> list[int]:
    """Live processes (not this one) whose environment holds every ``NAME=value`` of
    ``entries``."""
    wanted = {e.encode() for e in entries}
    return sorted(int(p.name) for p in Path("/proc").iterdir()
                  if p.name.isdigit() and int(p.name) != os.getpid()
                  and wanted <= environ(int(p.name)) and alive(int(p.name)))


def terminate(pids: list[int], grace: float, group: bool = False) -> None:
    """TERM ``pids`` (their process groups with ``group``), KILL what is left after ``grace`` s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.killpg(pid, sig) if group else os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + grace
        while sig == signal.SIGTERM and any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.3)
