"""Small network helpers: a free local port, a JSON request, who listens where.

Why: servers and private redis-servers started by tests and benchmarks must not collide with
the stack's fixed ports or with each other, half the HTTP checks only want a JSON answer, and
the tests and bench/throughput.py ask which ports a service or a job opened, and where.
"""
from __future__ import annotations

import ipaddress
import json
import os
import socket
import urllib.request
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url: str, method: str = "GET", data: bytes | None = None, timeout: float = 5) -> Any:
    """The decoded JSON answer (``None`` for an empty body); HTTP errors raise ``HTTPError``."""
    req = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


def listening_sockets() -> list[dict[str, Any]]:
    """Every listening TCP socket of this machine: ``{"address", "port", "pid", "command"}``
    (pid and command of the process holding it, where /proc lets us see them).

    Read from /proc (``net/tcp``, ``net/tcp6`` and each process's fds), so it needs neither ``ss``
    nor psutil. IPv4 addresses inside IPv6 sockets (``::ffff:127.0.0.1``) come out as IPv4.

    >>> all(isinstance(s["port"], int) for s in listening_sockets())
    True
    """
    inodes: dict[str, tuple[str, int]] = {}
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            rows = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            hex_addr, hex_port = fields[1].split(":")
            inodes[fields[9]] = (_address(hex_addr, width), int(hex_port, 16))
    owners: dict[str, tuple[int, str]] = {}
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            fds = list(fd_dir.iterdir())
            command = (fd_dir.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace").strip()
        except OSError:
            continue  # gone, or not ours to read
        links = []
        for fd in fds:  # a busy JVM closes fds while we look: skip those, not the process
            try:
                links.append(os.readlink(fd))
            except OSError:
                continue
        for link in links:
            if link.startswith("socket:[") and link[8:-1] in inodes:
                owners[link[8:-1]] = (int(fd_dir.parent.name), command)
    return [{"address": addr, "port": port, "pid": owners.get(inode, (None, ""))[0],
             "command": owners.get(inode, (None, ""))[1]}
            for inode, (addr, port) in sorted(inodes.items(), key=lambda kv: kv[1][1])]


def _address(hex_addr: str, width: int) -> str:
    """/proc/net/tcp's little-endian hex address -> text (IPv4-mapped IPv6 -> IPv4)."""
    raw = bytes.fromhex(hex_addr)
    if width == 8:
        return str(ipaddress.IPv4Address(raw[::-1]))
    # four little-endian 32-bit words
    packed = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    address = ipaddress.IPv6Address(packed)
    return str(address.ipv4_mapped or address)


def is_loopback(address: str) -> bool:
    """``127.0.0.0/8`` or ``::1``.

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("0.0.0.0"), is_loopback("::")
    (True, True, False, False)
    """
    return ipaddress.ip_address(address).is_loopback


TASKMANAGER_MAIN = "org.apache.flink.runtime.taskexecutor.TaskManagerRunner"


def taskmanager_sockets(state: Path | None = None) -> list[dict[str, Any]]:
    """The listening sockets of the TaskManagers of the stack instance in ``state`` (default: the
    one the environment names now, as stack/env.sh does) and of every process they started
    (PyFlink's Python workers), found by command line and parent, so that it holds whichever
    process manager started them."""
    from online_ml import procfs

    from .paths import ROOT

    if state is None:
        state = Path(os.environ.get("ONLINE_ML_STATE") or ROOT / ".state").resolve()
    procs = procfs.parents_and_commands()
    tms = {pid for pid, (_, cmd) in procs.items() if TASKMANAGER_MAIN in cmd and str(state) in cmd}

    def in_tree(pid: int | None) -> bool:
        for _ in range(64):  # up the parent chain
            if pid is None or pid <= 1:
                return False
            if pid in tms:
                return True
            pid = procs.get(pid, (None, ""))[0]
        return False

    return [s for s in listening_sockets() if in_tree(s["pid"])]


def added_sockets(before: list[dict], during: list[dict]) -> dict[str, Any]:
    """What a job added to the TaskManager's listening sockets: count, how many not on
    loopback, and ``address:port command`` of each (for a benchmark's JSON).

    >>> added_sockets([{"address": "127.0.0.1", "port": 1, "pid": 5, "command": "java"}],
    ...               [{"address": "127.0.0.1", "port": 1, "pid": 5, "command": "java"},
    ...                {"address": "0.0.0.0", "port": 2, "pid": 6, "command": "python"}])
    {'job_ports': 1, 'job_ports_not_loopback': 1, 'job_sockets': ['0.0.0.0:2 pid 6 python']}
    """
    old = {(s["address"], s["port"]) for s in before}
    new = [s for s in during if (s["address"], s["port"]) not in old]
    return {"job_ports": len(new),
            "job_ports_not_loopback": sum(not is_loopback(s["address"]) for s in new),
            "job_sockets": [f"{s['address']}:{s['port']} pid {s['pid']} {s['command'][:80]}"
                            for s in new]}
