"""The stack scripts and their process manager (supervisord, online_ml/supervision.py):
`stack/up.sh` on a running stack is a quick no-op, `stack/down.sh` of what does not run is
harmless, a dead service is started again and what it left behind is killed, a stop leaves
nothing, and after a crash of supervisord or a reboot the scripts stop what we started and only
that.

Only what is safe on a stack other tests use runs on the session's services; supervisord itself
is exercised on `sleep`s in a temporary state folder (tests/test_recovery.py kills real services).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from online_ml.flink_rest import FlinkRest
from online_ml.harness.paths import ROOT
from online_ml.harness.stack import alive
from online_ml.harness.waiting import wait_for
from online_ml.procfs import start_time
from online_ml.supervision import Supervisor

#: a service that starts a child of its own, like a TaskManager starts Python workers
SLEEPER = ["bash", "-c", "sleep 1000 & exec sleep 1000"]


def services(sv: Supervisor | None = None) -> dict[str, int]:
    return {i["name"]: i["pid"] for i in (sv or Supervisor()).services()}


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


def down(state: Path, *names: str) -> subprocess.CompletedProcess:
    out = subprocess.run(["bash", str(ROOT / "stack" / "down.sh"), *names], cwd=ROOT,
                         env=dict(os.environ, ONLINE_ML_STATE=str(state)),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


# -- on the session's stack: only what changes nothing -------------------------------------------
@pytest.mark.integration
def test_up_on_a_running_stack_is_a_quick_no_op(redis_service, kafka_service, flink_service):
    before = services()
    started = time.monotonic()
    out = subprocess.run(["bash", str(ROOT / "stack" / "up.sh")], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    took = time.monotonic() - started
    assert out.returncode == 0, out.stdout + out.stderr
    for service in ("Redis", "Kafka", "Flink"):
        assert f"{service} already running" in out.stdout, out.stdout
    assert "Starting" not in out.stdout
    # measured 1.0-1.5 s (health checks and supervisord queries); 15 s still means "no start-up"
    assert took < 15, f"up.sh on a running stack took {took:.1f} s"
    assert services() == before  # nothing started, nothing restarted


@pytest.mark.integration
def test_down_of_what_does_not_run_is_harmless(redis_service):
    before = services()
    for _ in range(2):
        down(Supervisor().state, "not-a-service-of-ours")
    assert services() == before


@pytest.mark.integration
def test_no_password_on_a_command_line(redis_service, kafka_service, flink_service):
    """`ps` shows command lines to every user of the machine: the Redis password is in 0600
    files and environments only."""
    password = os.environ.get("REDIS_PASSWORD", "redis_password").encode()
    pids = [m for pid in services().values() if pid for m in group_members(pid)]
    assert pids
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        assert password not in cmdline, f"pid {pid} has the password on its command line"


@pytest.mark.integration
def test_taskmanagers_have_direct_memory_for_the_python_workers(settings, flink_service):
    """The Python workers' gRPC buffers are JVM direct memory. Flink leaves them none by default
    (only what the network buffers, allocated up front, and the framework do not use: ~120 MB),
    and a CI run of many jobs on one TaskManager spent that once, after which no Python worker
    of it started. Every TaskManager has the budget of stack/flink/config.yaml on top, and
    uses less than its limit. (A TaskManager that just started reports 0 until the REST API
    first fetches its metrics: wait for them.)"""
    flink = FlinkRest(settings.flink_rest_url)
    memory = wait_for(lambda: (m := flink.direct_memory()) and all(u for u, _ in m.values()) and m,
                      60, "every TaskManager's direct memory in the metrics")
    for tm, (used, limit) in memory.items():
        assert limit >= 128 + 256 + 200, f"TaskManager {tm}: direct memory limit {limit:.0f} MB"
        assert 0 < used < limit, f"TaskManager {tm}: {used:.0f} of {limit:.0f} MB direct memory"


# -- supervisord, on harmless sleeps in a temporary folder ---------------------------------------
@pytest.fixture
def sv(tmp_path):
    sv = Supervisor(tmp_path / "state")
    yield sv
    if sv.running():
        sv.stop("sleeper")
        sv.shutdown()
    sv.stop_orphans(grace=5)


def spawned_at(sv: Supervisor, name: str) -> list[datetime]:
    log = (sv.logs / "supervisord.log").read_text()
    return [datetime.strptime(m, "%Y-%m-%d %H:%M:%S,%f")
            for m in re.findall(rf"^(\S+ \S+) INFO spawned: '{name}'", log, re.M)]


@pytest.mark.parametrize("when", ["running", "starting"])
def test_a_killed_service_is_started_again_and_its_leftovers_killed(sv, tmp_path, when):
    """kill -9 of a service (after its start-up: supervisord restarts it at once; during it:
    after a backoff): a new process runs, and the dead one's own child is killed."""
    pid = sv.start("sleeper", tmp_path / "sleeper.log", SLEEPER)
    if when == "running":
        wait_for(lambda: sv.state_of("sleeper") == "RUNNING", 15, "RUNNING")
    wait_for(lambda: len(group_members(pid)) == 2, 10, "the service and its child")
    leftover = next(p for p in group_members(pid) if p != pid)
    os.kill(pid, signal.SIGKILL)
    new = wait_for(lambda: sv.pid("sleeper") not in (None, pid) and sv.pid("sleeper"), 15,
                   "a new process")
    # each service leads a process group of its own: the child supervisord forks makes it so
    # first thing, but a poll right after the fork can still see supervisord's group (CI, once:
    # pid 1707 in group 1703)
    wait_for(lambda: os.getpgid(new) == new, 5, "the new process leading its own group")
    wait_for(lambda: not alive(leftover), 10, "the dead service's child to be killed")
    assert "killed 1 leftover process(es) of the dead sleeper" in (sv.logs / "reaper.log").read_text()
    assert "exited: sleeper (terminated by SIGKILL; not expected)" in (
        sv.logs / "supervisord.log").read_text()


def test_stop_stops_the_whole_group_and_does_not_restart(sv, tmp_path):
    pid = sv.start("sleeper", tmp_path / "sleeper.log", SLEEPER)
    wait_for(lambda: len(group_members(pid)) == 2, 10, "the service and its child")
    assert sv.stop("sleeper")
    wait_for(lambda: group_members(pid) == [], 10, "the whole group to be gone")
    time.sleep(1.5)
    assert sv.state_of("sleeper") is None and services(sv) == {}


def test_backoff_grows_while_a_service_keeps_dying_at_start(sv, tmp_path):
    sv.start("crasher", tmp_path / "crasher.log", ["bash", "-c", "exit 3"])
    wait_for(lambda: len(spawned_at(sv, "crasher")) >= 4, 30, "three restarts")
    starts = spawned_at(sv, "crasher")
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:])]
    # supervisord waits 1, 2, 3 s before the 2nd, 3rd, 4th start, checked on its 1 s tick:
    # measured [2.2, 3.1, 3.1] on a loaded machine, so only "at least 1 s, and growing"
    assert gaps[0] >= 1 and max(gaps[1:]) >= gaps[0] + 0.5, gaps
    assert "exited: crasher (exit status 3; not expected)" in (sv.logs / "supervisord.log").read_text()
    sv.stop("crasher")


def test_the_environment_and_not_the_command_line_carries_secrets(sv, tmp_path, monkeypatch):
    monkeypatch.setenv("REDIS_PASSWORD", "s3cret-only-in-env")
    pid = sv.start("sleeper", tmp_path / "sleeper.log", SLEEPER)
    # the pid is the launcher's until it execs the service (a CI run read the environment in
    # between and got nothing): wait for the service's own command line
    wait_for(lambda: (cmd := Path(f"/proc/{pid}/cmdline").read_bytes())
             and b"online_ml.supervision" not in cmd, 10, "the launcher to become the service")
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert b"REDIS_PASSWORD=s3cret-only-in-env" in environ
    assert b"s3cret" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    spec = sv.programs / "sleeper.json"
    assert spec.stat().st_mode & 0o077 == 0, "the saved environment must be private (0600)"


# -- after a crash or a reboot: stop what we started, and nothing else ---------------------------
def test_down_after_a_crash_of_supervisord_stops_only_what_we_started(sv, tmp_path):
    pid = sv.start("sleeper", tmp_path / "sleeper.log", SLEEPER)
    wait_for(lambda: len(group_members(pid)) == 2, 10, "the service and its child")
    ours = group_members(pid)
    foreign = subprocess.Popen(["setsid", "sleep", "1000"])  # not started by the stack
    try:
        os.kill(int((sv.run / "supervisord.pid").read_text()), signal.SIGKILL)
        wait_for(lambda: not sv.running(), 10, "supervisord gone")
        assert all(alive(p) for p in ours)  # orphans: still running without their manager
        out = down(sv.state)
        assert "supervisord was gone: stopped" in out.stdout, out.stdout
        wait_for(lambda: not any(alive(p) for p in ours), 10, "our orphans stopped")
        assert foreign.poll() is None, "down.sh signalled a process the stack did not start"
        assert not sv.socket.exists()
    finally:
        foreign.kill()
        foreign.wait(10)


def test_up_after_a_crash_of_supervisord_starts_clean(sv, tmp_path):
    """What `make up` does first: a new supervisord replaces the dead one's orphans."""
    pid = sv.start("sleeper", tmp_path / "sleeper.log", SLEEPER)
    os.kill(int((sv.run / "supervisord.pid").read_text()), signal.SIGKILL)
    wait_for(lambda: not sv.running(), 10, "supervisord gone")
    sv.start_daemon()
    assert sv.running() and services(sv) == {}
    wait_for(lambda: not alive(pid), 25, "the orphan stopped")
    new = sv.start("sleeper", tmp_path / "sleeper.log", SLEEPER)
    assert new != pid and services(sv) == {"sleeper": new}


def test_an_orphan_missed_by_one_look_is_stopped_by_the_next(sv, monkeypatch):
    """A process in the middle of an exec shows an empty environment for an instant (a launcher
    becoming its service: a CI run left such an orphan running). One look that misses it must not
    leave it running."""
    marked = subprocess.Popen(["sleep", "1000"], env=dict(os.environ, **{
        "ONLINE_ML_STACK": str(sv.state)}))
    try:
        wait_for(lambda: marked.pid in sv.orphans(), 10, "the marked sleep")
        looks = []
        real = sv.orphans

        def orphans(name=None):  # the first look sees nothing, as during an exec
            looks.append(name)
            return real(name) if len(looks) > 1 else []

        monkeypatch.setattr(sv, "orphans", orphans)
        assert sv.stop_orphans(grace=5) == [marked.pid]
        assert marked.wait(10) is not None and len(looks) >= 3  # found, then two quiet looks
    finally:
        marked.kill()
        marked.wait(10)


def test_down_after_a_reboot_signals_nothing(tmp_path):
    """After a reboot the state folder names a supervisord pid and a socket that are stale; the
    pid may belong to an unrelated process by now. down.sh signals nothing (no process carries
    the instance's mark) and removes the stale files."""
    other = subprocess.Popen(["setsid", "sleep", "120"])
    try:
        sv = Supervisor(tmp_path / "state")
        sv.run.mkdir(parents=True)
        (sv.run / "supervisord.pid").write_text(f"{other.pid}\n")
        sv.socket.write_text("")  # a stale socket path: nothing listens
        out = down(sv.state)
        assert "stopped" in out.stdout
        time.sleep(1)
        assert other.poll() is None and alive(other.pid), "down.sh signalled a foreign process"
        assert not sv.socket.exists() and not (sv.run / "supervisord.pid").exists()
    finally:
        other.kill()
        other.wait(10)


@pytest.mark.parametrize("recorded, stopped", [("right", True), ("stale", False)])
def test_down_stops_a_service_of_a_checkout_from_before_supervisord(tmp_path, recorded, stopped):
    """A stack started by stack/supervise.sh left pid files "PID STARTTIME": down.sh stops such
    a service (with its group) only when the pid's start time is the recorded one, and otherwise
    just removes the stale pid file (the pid may belong to someone else by now)."""
    other = subprocess.Popen(["setsid", "sleep", "120"])  # its own group, like those services
    try:
        wait_for(lambda: alive(other.pid) and os.getpgid(other.pid) == other.pid, 10, "sleep")
        start = start_time(other.pid) if recorded == "right" else "12345"
        run = tmp_path / "state" / "run"
        run.mkdir(parents=True)
        (run / "server.pid").write_text(f"{other.pid} {start}\n")
        out = down(tmp_path / "state", "server")
        assert not (run / "server.pid").exists()
        if stopped:
            assert other.wait(30) is not None, out.stdout
        else:
            time.sleep(1)
            assert other.poll() is None and alive(other.pid), "down.sh signalled a foreign process"
    finally:
        if other.poll() is None:
            other.kill()
        other.wait(10)


def test_a_partial_down_stops_only_the_named_service(sv, tmp_path):
    """`down.sh NAME` stops NAME, also for an old checkout's stack and after a crash of
    supervisord: never the other services (a helper's `down.sh flink-taskmanager` once took an
    old stack's Redis and Kafka with it)."""
    old = subprocess.Popen(["setsid", "sleep", "120"])  # an old checkout's "redis"
    try:
        wait_for(lambda: alive(old.pid) and os.getpgid(old.pid) == old.pid, 10, "sleep")
        pid = sv.start("sleeper", tmp_path / "sleeper.log", SLEEPER)
        other = sv.start("other", tmp_path / "other.log", SLEEPER)
        (sv.run / "redis.pid").write_text(f"{old.pid} {start_time(old.pid)}\n")
        os.kill(int((sv.run / "supervisord.pid").read_text()), signal.SIGKILL)
        wait_for(lambda: not sv.running(), 10, "supervisord gone")
        down(sv.state, "sleeper")
        wait_for(lambda: not alive(pid), 25, "the named orphan stopped")
        time.sleep(1)
        assert alive(other) and old.poll() is None, "a partial down stopped a service not named"
    finally:
        old.kill()
        old.wait(10)
