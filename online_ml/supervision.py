"""The local stack's process manager: supervisord (PyPI ``supervisor``) from the venv.

Why supervisord rather than a script of our own: it is a well-kept process manager that restarts
a service that dies (a standalone Flink cluster does not replace a dead TaskManager, and a job
with a restart strategy would then wait for slots forever), keeps its logs, shows ``status``, and
stops each service with its whole process group. stack/up.sh, down.sh, demo.sh and status.sh,
the tests and the benchmarks all go through this module (``python -m online_ml.supervision``).

What it adds to supervisord:

* **One supervisord per stack instance** (its state folder): configuration in
  ``STATE/supervisor/``, control socket ``STATE/run/supervisor.sock`` (a Unix socket, mode 0700:
  no TCP port at all), log ``STATE/logs/supervisord.log``. A new supervisord starts with no
  services: a service is added when a script starts it and removed when it stops it.
* **Each service runs with the environment of the command that started it**, saved with its
  command line in a 0600 file that ``launch`` reads and then ``exec``s: passwords never appear on
  a command line that ``ps`` shows, and nothing needs quoting for supervisord's configuration.
* **Every process we start carries a mark**, ``ONLINE_ML_STACK=<state folder>`` in its
  environment, inherited by everything it starts (a TaskManager's Python workers). Cleaning up
  after a crash of supervisord itself looks for that mark and nothing else, so no pid file can
  make a script signal a process it did not start, after a reboot or ever.
* **Leftovers of a dead service are killed** (``reaper``, a supervisord event listener): a
  TaskManager killed with -9 leaves its Python workers running, a stale UDF that would back up a
  stale model after the job restarted elsewhere. Each service leads a process group of its own
  (supervisord does that), and supervisord names the service in its environment
  (``SUPERVISOR_PROCESS_NAME``), so what a dead service left is: processes with our mark and its
  name whose group leader is dead.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import xmlrpc.client
from pathlib import Path
from typing import Any

from online_ml import procfs

#: Set in the environment of every process the stack starts: the state folder's path.
MARK = "ONLINE_ML_STACK"
#: supervisord states in which a service counts as up (or coming back up on its own).
UP_STATES = {"STARTING", "RUNNING", "BACKOFF"}
#: Restart policy: a service that dies while running is started again at once; one that dies
#: within START_SECONDS of its start waits 1, 2, 3, ... s between START_RETRIES attempts
#: (supervisord's backoff), then is given up (FATAL) and `make up` starts it afresh.
START_SECONDS, START_RETRIES, STOP_WAIT_SECONDS = 3, 10, 30


def state_dir() -> Path:
    """The stack instance's state folder (stack/env.sh computes the same)."""
    root = Path(__file__).resolve().parents[1]
    return Path(os.environ.get("ONLINE_ML_STATE") or root / ".state").resolve()


class Supervisor:
    """supervisord of the stack instance whose state folder is ``state``."""

    def __init__(self, state: Path | None = None):
        self.state = (state or state_dir()).resolve()
        self.run, self.logs = self.state / "run", self.state / "logs"
        self.home = self.state / "supervisor"
        self.programs = self.home / "programs"
        self.socket = self.run / "supervisor.sock"
        self.conf = self.home / "supervisord.conf"

    # --- the daemon --------------------------------------------------------------------------
    def rpc(self) -> Any:
        from supervisor.xmlrpc import SupervisorTransport

        transport = SupervisorTransport(None, None, f"unix://{self.socket}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def running(self) -> bool:
        """Whether this instance's supervisord answers on its socket."""
        if not self.socket.exists():
            return False
        try:
            return self.rpc().getState()["statename"] == "RUNNING"
        except (OSError, xmlrpc.client.Error):
            return False

    def start_daemon(self, timeout: float = 20) -> None:
        """Start supervisord unless it runs. A new one supervises nothing yet: what a dead one
        left (services still running without it, stale files) is cleaned up first, and so are
        services a checkout from before supervisord started (they are started again, supervised)."""
        if self.running():
            return
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / "start.lock", "w") as lock:  # two scripts starting at once
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not self.running():
                self._start_daemon(timeout)

    def _start_daemon(self, timeout: float) -> None:
        self.stop_orphans()
        for name in self.legacy_services():  # a stack of a checkout from before supervisord
            self.stop_legacy(name)
        for d in (self.run, self.logs, self.programs):
            d.mkdir(parents=True, exist_ok=True)
        for f in [*self.programs.iterdir(), self.socket, self.run / "supervisord.pid"]:
            f.unlink(missing_ok=True)
        esc = lambda p: str(p).replace("%", "%%")  # noqa: E731  (supervisord expands %(x)s)
        self.conf.write_text(f"""\
; written by online_ml/supervision.py for the stack instance in {esc(self.state)}
[unix_http_server]
file={esc(self.socket)}
chmod=0700

[supervisord]
logfile={esc(self.logs / "supervisord.log")}
logfile_maxbytes=10MB
logfile_backups=2
pidfile={esc(self.run / "supervisord.pid")}
directory={esc(self.state)}
childlogdir={esc(self.logs)}
identifier=online_ml

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{esc(self.socket)}

[eventlistener:reaper]
command={esc(sys.executable)} -m online_ml.supervision reaper
events=PROCESS_STATE_EXITED,PROCESS_STATE_BACKOFF
autorestart=true
stderr_logfile={esc(self.logs / "reaper.log")}

[include]
files={esc(self.programs)}/*.conf
""")
        env = dict(os.environ, **{MARK: str(self.state)})
        with open(self.logs / "supervisord.out", "ab") as out:  # never the caller's pipes
            subprocess.run([str(Path(sys.executable).with_name("supervisord")), "-c",
                            str(self.conf)], env=env, check=True, stdin=subprocess.DEVNULL,
                           stdout=out, stderr=out)
        deadline = time.monotonic() + timeout
        while not self.running():
            if time.monotonic() > deadline:
                raise RuntimeError(f"supervisord did not answer on {self.socket} within "
                                   f"{timeout:.0f} s: see {self.logs / 'supervisord.log'}")
            time.sleep(0.2)

    def shutdown(self) -> None:
        """Stop supervisord (and so whatever it still supervises)."""
        if self.running():
            self.rpc().shutdown()
            deadline = time.monotonic() + 60
            while self.socket.exists() and time.monotonic() < deadline:
                time.sleep(0.2)

    # --- services ----------------------------------------------------------------------------
    def start(self, name: str, log: Path, argv: list[str]) -> int:
        """Supervise ``argv`` as service ``name`` (output to ``log``), with the caller's
        environment; returns its pid. A service of that name that is not up is replaced."""
        self.start_daemon()
        rpc = self.rpc()
        if self.state_of(name) in UP_STATES:
            raise RuntimeError(f"{name} is already supervised and up")
        self._remove(rpc, name)
        spec = self.programs / f"{name}.json"
        fd = os.open(spec, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:  # 0600: the environment holds the Redis password
            json.dump({"argv": argv, "env": dict(os.environ, **{MARK: str(self.state)}),
                       "cwd": os.getcwd()}, f)
        log.parent.mkdir(parents=True, exist_ok=True)
        (self.programs / f"{name}.conf").write_text(
            f"[program:{name}]\n"
            f"command={shlex.join([sys.executable, '-m', 'online_ml.supervision', 'launch', str(spec)])}\n"
            .replace("%", "%%")
            + f"autostart=true\nautorestart=true\nstartsecs={START_SECONDS}\n"
              f"startretries={START_RETRIES}\nstopsignal=TERM\nstopwaitsecs={STOP_WAIT_SECONDS}\n"
              "stopasgroup=true\nkillasgroup=true\nredirect_stderr=true\n"
            + f"stdout_logfile={log}\n".replace("%", "%%")
            + "stdout_logfile_maxbytes=50MB\nstdout_logfile_backups=2\n")
        rpc.reloadConfig()
        rpc.addProcessGroup(name)  # autostart: spawned now
        return self.pid(name) or 0

    def _remove(self, rpc: Any, name: str) -> None:
        try:
            rpc.stopProcess(name, True)
        except xmlrpc.client.Fault:
            pass  # not running, or not known
        try:
            rpc.removeProcessGroup(name)
        except xmlrpc.client.Fault:
            pass
        for suffix in (".conf", ".json"):
            (self.programs / f"{name}{suffix}").unlink(missing_ok=True)

    def stop(self, name: str) -> bool:
        """Stop service ``name`` with its process group (TERM, then KILL after
        STOP_WAIT_SECONDS) and stop supervising it. False if it was not supervised."""
        legacy = self.stop_legacy(name)
        if not self.running():  # supervisord crashed: what it left of this service
            return bool(self.stop_orphans(name=name)) or legacy
        known = self.info(name) is not None
        self._remove(self.rpc(), name)
        return known or legacy

    def stop_legacy(self, name: str, grace: float = STOP_WAIT_SECONDS) -> bool:
        """A service started by a checkout from before supervisord (stack/supervise.sh under a
        pid file ``RUN/<name>.pid`` holding "PID STARTTIME"): TERM its process group, KILL what
        is left after ``grace`` s, remove its pid files. Only when the pid's start time is the
        recorded one (a pid file may name a reused pid after a reboot). True if it was stopped."""
        f = self.run / f"{name}.pid"
        try:
            pid_text, started = f.read_text().split()[:2]
            pid = int(pid_text)
        except (OSError, ValueError):
            pid, started = 0, ""
        ours = pid > 1 and procfs.start_time(pid) == started
        if ours:
            procfs.terminate([pid], grace, group=True)
        if f.exists():
            f.unlink(missing_ok=True)
            (self.run / f"{name}.child.pid").unlink(missing_ok=True)
        return ours

    def legacy_services(self) -> list[str]:
        """Names of the pid files a checkout from before supervisord left in RUN (Flink's own
        pid files there, flink-online-ml-*.pid, are not ours)."""
        return sorted(p.stem for p in self.run.glob("*.pid") if not p.stem.endswith(".child")
                      and p.stem != "supervisord" and not p.stem.startswith("flink-online-ml-"))

    def info(self, name: str) -> dict | None:
        """supervisord's record of service ``name``; None when it is not supervised or no
        supervisord answers (one RPC: callers poll this)."""
        if not self.socket.exists():
            return None
        try:
            info: dict = self.rpc().getProcessInfo(name)
            return info
        except (OSError, xmlrpc.client.Error):  # Fault (unknown name) is an xmlrpc Error
            return None

    def state_of(self, name: str) -> str | None:
        """supervisord's state name of service ``name`` (RUNNING, BACKOFF, FATAL, ...), None
        when it is not supervised."""
        info = self.info(name)
        return info["statename"] if info else None

    def pid(self, name: str) -> int | None:
        """The pid of service ``name``'s running process, None while it has none."""
        info = self.info(name)
        return info["pid"] or None if info else None

    def services(self) -> list[dict]:
        """Every supervised service (supervisord's process info), the reaper left out."""
        if not self.running():
            return []
        return [p for p in self.rpc().getAllProcessInfo() if p["group"] != "reaper"]

    # --- after a crash of supervisord --------------------------------------------------------
    def orphans(self, name: str | None = None) -> list[int]:
        """Live processes carrying this instance's mark (of service ``name`` only, if given)
        while its supervisord is gone: what a crashed supervisord left running. Only our own
        marked processes count."""
        marks = [f"{MARK}={self.state}"] + ([f"SUPERVISOR_PROCESS_NAME={name}"] if name else [])
        return procfs.carrying(marks)

    def stop_orphans(self, grace: float = 20, name: str | None = None,
                     rounds: int = 5) -> list[int]:
        """TERM the orphans (of ``name``), KILL what is left after ``grace`` s; their pids.

        A process caught in the middle of an ``exec`` (a service's launcher becoming the service)
        shows an empty environment for an instant, so one look can miss it, and it runs on (a CI
        run saw that): look again until two looks in a row find nothing, at most ``rounds``
        times."""
        stopped: list[int] = []
        quiet = 0
        for _ in range(rounds):
            pids = [p for p in self.orphans(name) if p not in stopped]
            if pids:
                procfs.terminate(pids, grace)
                stopped += pids
                quiet = 0
            else:
                quiet += 1
                if quiet == 2:
                    break
                time.sleep(0.2)
        return stopped


def launch(spec_path: str) -> None:
    """Become the service described by ``spec_path`` (what ``Supervisor.start`` saved)."""
    spec = json.loads(Path(spec_path).read_text())
    # supervisord's own variables (SUPERVISOR_PROCESS_NAME: what the reaper looks for) are kept
    env = dict(spec["env"], **{k: v for k, v in os.environ.items() if k.startswith("SUPERVISOR_")})
    os.chdir(spec["cwd"])
    os.execvpe(spec["argv"][0], spec["argv"], env)


def leftovers(state: Path, name: str) -> list[int]:
    """Processes of service ``name`` of the instance in ``state`` whose process group leader
    (the service's process: supervisord makes each one a group leader) is dead: what a dead
    service left behind. A restarted service leads a new group, so it is never among them."""
    return [pid for pid in procfs.carrying([f"{MARK}={state}", f"SUPERVISOR_PROCESS_NAME={name}"])
            if (group := procfs.pgid(pid)) is not None and not procfs.alive(group)]


def reaper(stdin: Any = None, stdout: Any = None) -> None:
    """supervisord event listener: when a service's process exits (or dies at start), KILL what
    it left behind (its children, e.g. a dead TaskManager's Python workers)."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    state = Path(os.environ.get(MARK) or state_dir())
    while True:
        stdout.write("READY\n")
        stdout.flush()
        line = stdin.readline()
        if not line:
            return
        header = dict(t.split(":", 1) for t in line.split())
        payload = stdin.read(int(header["len"]))
        fields = dict(t.split(":", 1) for t in payload.split("\n", 1)[0].split() if ":" in t)
        name = fields.get("processname", "")
        killed = []
        for pid in leftovers(state, name) if name else []:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except OSError:
                pass
        if killed:
            print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} killed {len(killed)} leftover "
                  f"process(es) of the dead {name}: {killed}", file=sys.stderr, flush=True)
        stdout.write("RESULT 2\nOK")
        stdout.flush()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m online_ml.supervision", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="supervise CMD as NAME, its output in LOG")
    s.add_argument("name")
    s.add_argument("log", type=Path)
    s.add_argument("argv", nargs=argparse.REMAINDER)
    for cmd in ("stop", "up", "pid", "state"):
        sub.add_parser(cmd).add_argument("name")
    sub.add_parser("status")
    d = sub.add_parser("down", help="stop supervisord once it supervises nothing, or the services "
                                    "a crashed one left")
    d.add_argument("--all", action="store_true",
                   help="also services of a checkout from before supervisord (make down)")
    sub.add_parser("launch").add_argument("spec")
    sub.add_parser("reaper")
    a = p.parse_args(argv)
    sv = Supervisor()
    if a.cmd == "launch":
        launch(a.spec)
    elif a.cmd == "reaper":
        reaper()
    elif a.cmd == "start":
        argv_ = a.argv[1:] if a.argv[:1] == ["--"] else a.argv
        print(sv.start(a.name, a.log, argv_))
    elif a.cmd == "stop":
        return 0 if sv.stop(a.name) else 1
    elif a.cmd == "up":  # exit 0 when NAME is supervised and up (or coming back up)
        return 0 if sv.state_of(a.name) in UP_STATES else 1
    elif a.cmd == "pid":
        pid = sv.pid(a.name)
        if pid is None:
            return 1
        print(pid)
    elif a.cmd == "state":
        print(sv.state_of(a.name) or "ABSENT")
    elif a.cmd == "status":
        for info in sv.services():
            what = f"pid {info['pid']}" if info["pid"] else info["spawnerr"] or ""
            print(f"  {info['name']:<18} {info['statename'].lower():<9} {what}")
    elif a.cmd == "down":
        for name in sv.legacy_services() if a.all else []:  # a partial down stops only the named
            if sv.stop_legacy(name):
                print(f"stopped {name}, started by a checkout from before supervisord")
        if sv.running():
            if not sv.services():
                sv.shutdown()
        elif a.all:
            left = sv.stop_orphans()
            if left:
                print(f"supervisord was gone: stopped {len(left)} process(es) it had started "
                      f"(marked {MARK}={sv.state}): {left}")
            for f in (sv.socket, sv.run / "supervisord.pid"):
                f.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
