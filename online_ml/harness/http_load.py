"""Concurrent clients on ``POST /predict``: the load generator of the serving benchmark and of
the load test.

Why shared: the benchmark measures latency with it and the load test checks that nothing breaks
under it; both must put the same kind of load on the server (a thread per client, each with its
own keep-alive connection, requests back to back).
"""
from __future__ import annotations

import http.client
import math
import threading
import time
import urllib.parse
from collections.abc import Sequence

HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values (q in 0..100).

    >>> percentile([1, 2, 3, 4], 50), percentile([1, 2, 3, 4], 99), percentile([], 50)
    (2, 4, None)
    """
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def connect(url: str, timeout: float = 60) -> http.client.HTTPConnection:
    u = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=timeout)


def post(conn: http.client.HTTPConnection, body: bytes, path: str = "/predict") -> tuple[int, bytes]:
    """One form POST on a kept-alive connection: (status, body)."""
    conn.request("POST", path, body=body, headers=HEADERS)
    resp = conn.getresponse()
    return resp.status, resp.read()


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def load(url: str, bodies: list[bytes], concurrency: int, seconds: float) -> dict:
    """``concurrency`` clients sending back to back for ``seconds``; latency of every request,
    answers by status (``-1``: the connection failed)."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    statuses: list[dict[int, int]] = [{} for _ in range(concurrency)]
    ready = threading.Barrier(concurrency + 1)
    window: dict[str, float] = {}

    def client(i: int) -> None:
        conn = connect(url)
        k = i * 7
        ready.wait()
        stop = window["stop"]
        while time.perf_counter() < stop:
            body = bodies[k % len(bodies)]
            k += 1
            t0 = time.perf_counter()
            try:
                status, _ = post(conn, body)
            except (OSError, http.client.HTTPException):
                status = -1
                conn.close()
                conn = connect(url)
            latencies[i].append(time.perf_counter() - t0)
            statuses[i][status] = statuses[i].get(status, 0) + 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    window["start"] = time.perf_counter()
    window["stop"] = window["start"] + seconds
    ready.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - window["start"]
    codes: dict[str, int] = {}
    for per in statuses:
        for code, n in per.items():
            codes[str(code)] = codes.get(str(code), 0) + n
    ms = sorted(v * 1000 for per in latencies for v in per)
    return {
        "concurrency": concurrency,
        "requests": len(ms),
        "seconds": round(elapsed, 2),
        "requests_per_s": round(len(ms) / elapsed, 1) if elapsed > 0 else None,
        "p50_ms": _ms(percentile(ms, 50)),
        "p95_ms": _ms(percentile(ms, 95)),
        "p99_ms": _ms(percentile(ms, 99)),
        "max_ms": _ms(ms[-1] if ms else None),
        "status": codes,
        "errors": sum(n for code, n in codes.items() if code != "200"),
    }
