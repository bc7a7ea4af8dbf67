"""Small network helpers: a free local port and a JSON request.

Why: servers and private redis-servers started by tests and benchmarks must not collide with
the stack's fixed ports or with each other, and half the HTTP checks only want a JSON answer.
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
