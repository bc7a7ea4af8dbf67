"""The stack scripts: `stack/up.sh` on a running stack is a quick no-op, `stack/down.sh` of what
does not run is harmless, and stack/supervise.sh restarts a dead process, cleans up after it and
stops without leaving anything behind.

Only what is safe on a stack other tests use runs here: the supervisor is exercised on a `sleep`
in a temporary state folder, never on the session's services (tests/test_recovery.py kills those).
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from online_ml.harness.paths import ROOT, RUN
from online_ml.harness.stack import alive
from online_ml.harness.waiting import wait_for

SUPERVISE = ROOT / "stack" / "supervise.sh"


def pid_files() -> dict[str, str]:
    return {p.name: p.read_text().strip() for p in sorted(RUN.glob("*.pid"))}


def group_members(pgid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


# -- on the session's stack: only what changes nothing -------------------------------------------
@pytest.mark.integration
def test_up_on_a_running_stack_is_a_quick_no_op(redis_service, kafka_service, flink_service):
    before = pid_files()
    started = time.monotonic()
    out = subprocess.run(["bash", str(ROOT / "stack" / "up.sh")], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    took = time.monotonic() - started
    assert out.returncode == 0, out.stdout + out.stderr
    for service in ("Redis", "Kafka", "Flink"):
        assert f"{service} already running" in out.stdout, out.stdout
    assert "Starting" not in out.stdout
    # measured 0.6-0.8 s (three health checks); 15 s still means "no start-up happened"
    assert took < 15, f"up.sh on a running stack took {took:.1f} s"
    assert pid_files() == before  # nothing started, nothing restarted


@pytest.mark.integration
def test_down_of_what_does_not_run_is_harmless(redis_service):
    before = pid_files()
    for _ in range(2):
        out = subprocess.run(["bash", str(ROOT / "stack" / "down.sh"), "not-a-service-of-ours"],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
    assert pid_files() == before


# -- the supervisor, on a harmless child in a temporary folder -----------------------------------
@pytest.fixture
def supervised(tmp_path):
    """Start `sleep` under stack/supervise.sh the way up.sh does (own session, pid file)."""
    child_pid_file = tmp_path / "sleeper.child.pid"
    log = tmp_path / "sleeper.log"
    # the child also starts a grandchild, like a TaskManager starts Python workers
    script = "sleep 1000 & exec sleep 1000"
    with open(log, "ab") as out:
        proc = subprocess.Popen(["setsid", "bash", str(SUPERVISE), "sleeper", str(child_pid_file),
                                 "bash", "-c", script], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    child = wait_for(lambda: child_pid_file.exists() and int(child_pid_file.read_text()),
                     10, "the supervised child")
    yield proc, child_pid_file, log, child
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def test_supervisor_restarts_a_killed_child_and_kills_its_leftovers(supervised):
    proc, child_pid_file, log, child = supervised
    wait_for(lambda: len(group_members(proc.pid)) >= 3, 10, "child and grandchild")
    leftovers = [p for p in group_members(proc.pid) if p not in (proc.pid, child)]
    os.kill(child, signal.SIGKILL)
    new = wait_for(lambda: (p := int(child_pid_file.read_text())) != child and alive(p) and p,
                   15, "a new child")
    assert proc.poll() is None and os.getpgid(new) == proc.pid  # still one group, named by the pid file
    text = log.read_text()
    assert "sleeper died unexpectedly (killed by signal KILL)" in text and "restart #1 in 1 s" in text
    assert "killed 1 leftover process(es)" in text
    assert not any(alive(p) for p in leftovers), "the dead child's own children were left running"


def test_supervisor_stops_cleanly_on_term_without_restarting(supervised):
    proc, child_pid_file, log, child = supervised
    os.killpg(proc.pid, signal.SIGTERM)  # what stack/down.sh (stop_pid) sends
    assert proc.wait(15) == 0
    wait_for(lambda: group_members(proc.pid) == [], 10, "the whole group to be gone")
    assert not child_pid_file.exists()
    text = log.read_text()
    assert "sleeper stopped" in text and "died unexpectedly" not in text


def test_backoff_grows_while_the_child_keeps_dying(tmp_path):
    log = tmp_path / "crash.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(["setsid", "bash", str(SUPERVISE), "crasher",
                                 str(tmp_path / "crasher.child.pid"), "bash", "-c", "exit 3"],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: "restart #3" in log.read_text(), 20, "three restarts")
        text = log.read_text()
        assert "crasher died unexpectedly (exit code 3)" in text
        assert "restart #1 in 1 s" in text and "restart #2 in 2 s" in text and "restart #3 in 4 s" in text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(15) == 0


# -- pid files: never signal a process we did not start ------------------------------------------
def _start_time(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]


@pytest.mark.parametrize("recorded, stopped", [("right", True), ("stale", False)])
def test_down_signals_only_the_process_its_pid_file_started(tmp_path, recorded, stopped):
    """After a crash or a reboot a pid file may name a pid that now belongs to an unrelated
    process: `stack/down.sh` stops the process only when its start time is the recorded one, and
    otherwise just removes the stale pid file."""
    other = subprocess.Popen(["setsid", "sleep", "120"])  # its own session, like our services
    try:
        wait_for(lambda: alive(other.pid) and os.getpgid(other.pid) == other.pid, 10, "sleep")
        start = _start_time(other.pid) if recorded == "right" else "12345"
        run = tmp_path / "run"
        run.mkdir()
        (run / "server.pid").write_text(f"{other.pid} {start}\n")
        out = subprocess.run(["bash", str(ROOT / "stack" / "down.sh"), "server"], cwd=ROOT,
                             env=dict(os.environ, ONLINE_ML_STATE=str(tmp_path)),
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        assert not (run / "server.pid").exists()
        if stopped:
            assert other.wait(30) is not None
        else:
            time.sleep(1)
            assert other.poll() is None and alive(other.pid), "down.sh signalled a foreign process"
    finally:
        if other.poll() is None:
            other.kill()
        other.wait(10)
