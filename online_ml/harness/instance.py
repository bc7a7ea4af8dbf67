"""A private stack instance: a state folder and ports of its own, its services started and stopped
with the stack's own scripts (``stack/up.sh`` / ``down.sh``).

Why: some measurements break or reconfigure what they run on -- ``kill -9`` of a JobManager,
Flink with ZooKeeper high availability -- and must never do that to the stack on the default
ports, which other people use. tests/conftest.py points a whole test run at another instance
through the environment; a benchmark that needs a fresh cluster per trial makes its own with
this class. Jars are not fetched again: ``jars`` links to those of the instance the environment
names (``make install`` fetched them).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from online_ml.config import Settings
from online_ml.harness.net import free_port, listening_sockets
from online_ml.harness.paths import ROOT, STATE, VENV_BIN
from online_ml.supervision import Supervisor

#: Port variables of stack/env.sh that an instance sets (Kafka's is in KAFKA_BOOTSTRAP_SERVERS).
PORT_VARIABLES = ("REDIS_PORT", "KAFKA_CONTROLLER_PORT", "FLINK_REST_PORT", "FLINK_RPC_PORT",
                  "ZOOKEEPER_PORT")
#: Variables of the calling environment that would point a client at another instance.
FOREIGN = ("FLINK_REST_URL", "FLINK_CONF_DIR", "FLINK_LOG_DIR", "KAFKA_BOOTSTRAP_SERVERS",
           "ONLINE_ML_STATE", "FLINK_HA_ZOOKEEPER_QUORUM", "FLINK_HA_CLUSTER_ID", *PORT_VARIABLES)


class StackFailed(RuntimeError):
    """A stack script of the instance failed (its output is in the message)."""


class Instance(contextlib.AbstractContextManager):
    """One private instance under ``root`` (a new temporary folder by default); the ``with``
    block ends with ``stack/down.sh`` of everything it started, and the folder removed unless
    ``keep``."""

    def __init__(self, root: Path | None = None, jars: Path | None = None, keep: bool = False):
        self.root = Path(root or tempfile.mkdtemp(prefix="online_ml_instance_"))
        self.keep = keep
        ports = {name: str(free_port()) for name in PORT_VARIABLES}
        base = {k: v for k, v in os.environ.items() if k not in FOREIGN}
        self.env: dict[str, str] = dict(
            base, ONLINE_ML_STATE=str(self.root), **ports,
            KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",
            FLINK_REST_URL=f"http://localhost:{ports['FLINK_REST_PORT']}",
            FLINK_CONF_DIR=str(self.root / "flink" / "conf"),
            FLINK_LOG_DIR=str(self.root / "logs" / "flink"),
            PATH=f"{VENV_BIN}:{base.get('PATH', '')}")
        source = Path(jars or STATE / "jars").resolve()
        if not (source / "kafka").is_dir():
            raise StackFailed(f"no Kafka jars in {source}: run 'make install'")
        self.root.mkdir(parents=True, exist_ok=True)
        link = self.root / "jars"
        if not link.exists():
            link.symlink_to(source, target_is_directory=True)

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def port(self, name: str) -> int:
        return int(self.env[name])

    def settings(self, **overrides) -> Settings:
        """Settings for clients of this instance (its Redis, Kafka and Flink)."""
        return Settings.from_env(self.env, **overrides)

    def script(self, name: str, *args: str, env: Mapping[str, str] | None = None,
               timeout: float = 600) -> str:
        """``stack/<name> args`` with this instance's environment (plus ``env``); its output."""
        done = subprocess.run(["bash", str(ROOT / "stack" / name), *args], cwd=ROOT,
                              env=dict(self.env, **(env or {})), capture_output=True, text=True,
                              timeout=timeout)
        if done.returncode != 0:
            raise StackFailed(f"stack/{name} {' '.join(args)} failed ({done.returncode}):\n"
                              f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done.stdout

    def up(self, *services: str, env: Mapping[str, str] | None = None) -> str:
        return self.script("up.sh", *services, env=env)

    def down(self, *names: str) -> str:
        return self.script("down.sh", *names, timeout=300)

    def running(self) -> list[str]:
        """The supervised services whose process runs (supervisord's record)."""
        return sorted(i["name"] for i in Supervisor(self.root).services() if i["pid"])

    def pid(self, name: str) -> int | None:
        """The pid of the service's running process, or None."""
        return Supervisor(self.root).pid(name)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send ``sig`` to the service's own process, after checking that
        it is a JVM of this instance; returns its pid."""
        pid = self.pid(name)
        if pid is None:
            raise StackFailed(f"{name} is not running in {self.root}")
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if not cmdline[0].endswith(b"java") or str(self.root).encode() not in b" ".join(cmdline):
            raise StackFailed(f"pid {pid} of {name} is not a JVM of {self.root}: not killed")
        os.kill(pid, sig)
        return pid

    def rss_mb(self, name: str) -> float | None:
        """Resident memory of the service's own process, in MB."""
        pid = self.pid(name)
        try:
            status = Path(f"/proc/{pid}/status").read_text() if pid else ""
        except OSError:
            return None
        kb = next((int(line.split()[1]) for line in status.splitlines()
                   if line.startswith("VmRSS:")), None)
        return None if kb is None else round(kb / 1024, 1)

    def listening_ports(self, name: str) -> list[int]:
        """The TCP ports the service's own process listens on (from /proc, no tools needed)."""
        pid = self.pid(name)
        if pid is None:
            return []
        return sorted({s["port"] for s in listening_sockets() if s["pid"] == pid})

    def __exit__(self, *exc: object) -> None:
        try:
            self.down()
        finally:
            if not self.keep:
                shutil.rmtree(self.root, ignore_errors=True)
