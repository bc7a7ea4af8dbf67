"""A private redis-server, for tests that stop and restart Redis (never the shared one).

Why: outages are part of what the job and the server must survive, but the stack's Redis is
shared by every test (and by the demo); a test that stops Redis stops its own.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import redis

from online_ml.harness.net import free_port
from online_ml.harness.processes import stop_process
from online_ml.harness.waiting import wait_for

PASSWORD = "private_redis_password"


class PrivateRedis:
    """One redis-server subprocess on a free port, with a password; stop() keeps its data.

    No automatic snapshots (``--save ''``) and no AOF: ``stop()`` writes the data once
    (SHUTDOWN SAVE) and ``start()`` reads it back, so a restarted server has the same models and
    version counter, like a real Redis after an outage.
    """

    def __init__(self, port: int | None = None, password: str = PASSWORD):
        self.port = port or free_port()
        self.password = password
        self.dir = Path(tempfile.mkdtemp(prefix="private_redis_"))
        self.proc: subprocess.Popen | None = None

    def client(self, db: int = 1, **options) -> redis.Redis:
        options = {"socket_connect_timeout": 2, "socket_timeout": 5, **options}
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, db=db,
                           **options)

    def start(self) -> PrivateRedis:
        assert not self.running, "already running"
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--requirepass", self.password, "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--dbfilename", "dump.rdb", "--logfile", "redis.log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = self.client()
        try:
            wait_for(client.ping, 10, f"the private redis-server on port {self.port}", 0.05)
        finally:
            client.close()
        return self

    def stop(self, save: bool = True) -> None:
        """Shut down; with ``save`` the data comes back with the next start(), without it the
        next start() is an empty Redis (one restarted without persistence)."""
        if self.proc is None or not self.running:
            return
        client = self.client()
        try:
            client.shutdown(save=save, nosave=not save)
        except redis.exceptions.ConnectionError:
            pass
        finally:
            client.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            stop_process(self.proc)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        """Stop for good and delete the data (also when a test failed halfway)."""
        if self.proc is not None:
            stop_process(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
