"""Small network helpers: a free local port and a JSON request.

Why: servers and private redis-servers started by tests and benchmarks must not collide with
the stack's fixed ports or with each other, and half the HTTP checks only want a JSON answer.
"""
from __future__ import annotations

import json
import socket
import urllib.request
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
