"""Serving: latency and throughput of POST /predict with drawings as the board sends them.

Servers in the same run, each a real process, all reading the same model from Redis:

* ``project``: online_ml.server (model cached by version, features rendered in memory at the
  scale the features need) under gunicorn with one sync worker per core, as README and
  ``make demo`` run it;
* ``project-waitress``: the same app under waitress, one process with 8 threads (one GIL);
* ``tutorial``: bench/tutorial_server.py, the tutorial's per-request work (model reloaded from
  Redis, drawing rendered through temporary files at the board's full size), under gunicorn
  like ``project``.

The load generator is a thread per simulated client, each with its own keep-alive connection,
sending requests back to back for ``seconds`` at each concurrency level. The drawings are a few
strokes of each digit, sampled like mouse input, on a 300x150 board, SVG paths as the board
(static/board.js, jSignature's format) writes them.
"""
from __future__ import annotations

import base64
import http.client
import json
import math
import random
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass

from common import (
    BENCH_REDIS_DB,
    ROOT,
    Server,
    delete_model_keys,
    finish,
    machine_info,
    percentile,
    progress,
    table,
    target,
    targets_table,
    write_result,
)

from online_ml.config import Settings

BOARD = (300, 150)
PEN_WIDTH = 8  # static/board.js


@dataclass
class Params:
    concurrency: tuple[int, ...] = (1, 8, 32)
    seconds: float = 20.0  # of load per server and concurrency level
    warmup_requests: int = 30
    servers: tuple[str, ...] = ("project", "project-waitress", "tutorial")
    threads: int = 8  # waitress threads
    workers: int = 2  # gunicorn workers (one per core here)
    drawings: int = 40
    seed: int = 7

    @classmethod
    def smoke(cls) -> Params:
        return cls(seconds=1.0, warmup_requests=5, drawings=10)


# -- drawings ----------------------------------------------------------------------------------
def _arc(cx, cy, rx, ry, a0, a1, n=40):
    return [(cx + rx * math.cos(math.radians(a0 + (a1 - a0) * i / (n - 1))),
             cy + ry * math.sin(math.radians(a0 + (a1 - a0) * i / (n - 1)))) for i in range(n)]


# strokes of each digit in a 100x100 box, y down, as a person might draw them
TEMPLATES: dict[int, list[list[tuple[float, float]]]] = {
    0: [_arc(50, 50, 26, 44, -90, 275)],
    1: [[(35, 25), (55, 8), (52, 95)]],
    2: [_arc(50, 32, 25, 23, 200, 390, 24) + [(28, 92), (80, 92)]],
    3: [_arc(48, 28, 24, 19, -160, 95, 24) + _arc(48, 71, 27, 23, -95, 160, 24)],
    4: [[(62, 8), (22, 66), (84, 66)], [(66, 36), (64, 96)]],
    5: [[(76, 8), (32, 8), (28, 46)] + _arc(48, 68, 27, 26, -130, 150, 24)],
    6: [[(72, 8), (48, 28), (28, 62)] + _arc(50, 72, 23, 22, 180, 540, 30)],
    7: [[(15, 8), (85, 8), (40, 95)]],
    8: [_arc(50, 27, 22, 20, 90, 450), _arc(50, 72, 27, 23, -90, 270)],
    9: [_arc(50, 30, 24, 22, 0, 360) + [(74, 30), (68, 95)]],
}


def _mouse(points, step: float, rng: random.Random):
    """Resample a polyline like mouse events: a point every ``step`` px, integers, jitter."""
    out = []
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        n = max(1, int(math.hypot(x1 - x0, y1 - y0) / step))
        for i in range(n):
            t = i / n
            out.append((x0 + (x1 - x0) * t + rng.uniform(-0.8, 0.8),
                        y0 + (y1 - y0) * t + rng.uniform(-0.8, 0.8)))
    out.append(points[-1])
    return [(round(x), round(y)) for x, y in out]


def board_svg(digit: int, rng: random.Random) -> str:
    """One drawing of ``digit`` as static/board.js writes it (one <path> per stroke)."""
    size = rng.uniform(0.9, 1.3)  # the digit is 90..130 px high on a 150 px board
    ox = rng.uniform(10, BOARD[0] - 10 - 100 * size)
    oy = rng.uniform(2, max(3, BOARD[1] - 2 - 100 * size))
    paths = []
    for stroke in TEMPLATES[digit]:
        pts = _mouse([(ox + x * size, oy + y * size) for x, y in stroke], 4.0, rng)
        d = f"M {pts[0][0]} {pts[0][1]}" + "".join(f" L {x} {y}" for x, y in pts[1:])
        paths.append(f'<path fill="none" stroke="#000000" stroke-width="{PEN_WIDTH}" '
                     f'stroke-linecap="round" stroke-linejoin="round" d="{d}"/>')
    w, h = BOARD
    return (f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{w}" height="{h}" '
            f'viewBox="0 0 {w} {h}">' + "".join(paths) + "</svg>")


def drawings(n: int, seed: int) -> list[tuple[int, bytes]]:
    """``n`` (digit, form body) pairs, digits 0..9 in turn."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        digit = i % 10
        url = "data:image/svg+xml;base64," + base64.b64encode(
            board_svg(digit, rng).encode()).decode()
        out.append((digit, urllib.parse.urlencode({"imgStr": url}).encode()))
    return out


# -- load --------------------------------------------------------------------------------------
HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}


def _post(conn: http.client.HTTPConnection, body: bytes) -> tuple[int, bytes]:
    conn.request("POST", "/predict", body=body, headers=HEADERS)
    resp = conn.getresponse()
    return resp.status, resp.read()


def load(url: str, bodies: list[bytes], concurrency: int, seconds: float) -> dict:
    """``concurrency`` clients sending back to back for ``seconds``; latency of every request."""
    host, port = urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    statuses: list[dict] = [{} for _ in range(concurrency)]
    ready = threading.Barrier(concurrency + 1)
    window: dict[str, float] = {}

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=60)
        k = i * 7
        ready.wait()
        stop = window["stop"]
        while time.perf_counter() < stop:
            body = bodies[k % len(bodies)]
            k += 1
            t0 = time.perf_counter()
            try:
                status, _ = _post(conn, body)
            except (OSError, http.client.HTTPException):
                status = -1
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=60)
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
    lat = sorted(v for per in latencies for v in per)
    codes: dict[str, int] = {}
    for per in statuses:
        for code, n in per.items():
            codes[str(code)] = codes.get(str(code), 0) + n
    ms = [v * 1000 for v in lat]
    return {
        "concurrency": concurrency,
        "requests": len(lat),
        "seconds": round(elapsed, 2),
        "requests_per_s": round(len(lat) / elapsed, 1) if elapsed > 0 else None,
        "p50_ms": round(percentile(ms, 50), 2) if ms else None,
        "p95_ms": round(percentile(ms, 95), 2) if ms else None,
        "p99_ms": round(percentile(ms, 99), 2) if ms else None,
        "max_ms": round(ms[-1], 2) if ms else None,
        "status": codes,
        "errors": sum(n for code, n in codes.items() if code != "200"),
    }


def recognised(url: str, samples: list[tuple[int, bytes]]) -> float | None:
    """Fraction of the drawings whose answer is the digit drawn (one pass, not timed)."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    right = total = 0
    for digit, body in samples:
        status, data = _post(conn, body)
        if status == 200:
            total += 1
            right += json.loads(data).get("predict_result") == digit
    conn.close()
    return round(right / total, 3) if total else None


# -- the model both servers serve ------------------------------------------------------------------
def store_model(settings: Settings, key: str) -> dict:
    """Train the job's learner on two passes over the digits and store it as a new version."""
    from online_ml.learner import OnlineLearner, make_model
    from online_ml.model_store import ModelStore
    from online_ml.producer import iter_records

    name = getattr(settings, "learner", "sgd")
    params = settings.learner_kwargs() if hasattr(settings, "learner_kwargs") else {}
    learner = OnlineLearner(make_model(name, **params))
    xs, ys = [], []
    for x, y in iter_records(seed=1, epochs=2):
        xs.append(x)
        ys.append(y)
        if len(xs) == 64:
            learner.learn_many(xs, ys)
            xs, ys = [], []
    if xs:
        learner.learn_many(xs, ys)
    store = ModelStore(settings.redis_client(db=BENCH_REDIS_DB), key)
    snap = learner.snapshot()
    return store.save(learner.model, snap, snapshot=snap)


def run(p: Params, smoke: bool = False, quiet: bool = False) -> dict:
    started = time.time()
    settings = Settings.from_env()
    machine = machine_info(settings)
    key = f"bench_{uuid.uuid4().hex[:8]}_serving"
    samples = drawings(p.drawings, p.seed)
    bodies = [b for _, b in samples]
    rows: list[dict] = []
    env = {"REDIS_DB": str(BENCH_REDIS_DB), "MODEL_KEY": key}
    specs = {
        "project": dict(call="online_ml.server:create_app", name="project-server",
                        workers=p.workers),
        "project-waitress": dict(call="online_ml.server:create_app", name="project-waitress"),
        "tutorial": dict(call="tutorial_server:create_app", name="tutorial-server",
                         pythonpath=[str(ROOT / "bench")], workers=p.workers),
    }
    try:
        meta = store_model(settings, key)
        progress(f"serving: model version {meta['version']} stored under db {BENCH_REDIS_DB} "
                 f"{key}")
        for server_name in p.servers:
            with Server(env=env, threads=p.threads, **specs[server_name]) as server:
                server.wait_ready()
                for _, body in zip(range(p.warmup_requests), bodies * p.warmup_requests):
                    load_one = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
                    _post(load_one, body)
                    load_one.close()
                acc = recognised(server.url, samples)
                for c in p.concurrency:
                    progress(f"serving: {server_name} server, concurrency {c}, "
                             f"{p.seconds:g} s")
                    cpu_before = server.cpu_seconds()
                    row = load(server.url, bodies, c, p.seconds)
                    cpu_after = server.cpu_seconds()
                    if cpu_before is not None and cpu_after is not None and row["requests"]:
                        row["server_cpu_ms_per_request"] = round(
                            (cpu_after - cpu_before) * 1000 / row["requests"], 2)
                    row.update(server=server_name, drawings_recognised=acc)
                    rows.append(row)
    finally:
        delete_model_keys(settings, [key])

    by = {(r["server"], r["concurrency"]): r for r in rows}
    for r in rows:
        base = by.get(("tutorial", r["concurrency"]))
        r["p99_vs_tutorial"] = (round(r["p99_ms"] / base["p99_ms"], 3)
                                if base and base["p99_ms"] and r["p99_ms"] else None)
        r["rps_vs_tutorial"] = (round(r["requests_per_s"] / base["requests_per_s"], 2)
                                if base and base["requests_per_s"] and r["requests_per_s"]
                                else None)
    p8 = by.get(("project", 8))
    targets = [target("project /predict p99 at concurrency 8 (ms)",
                      p8["p99_ms"] if p8 else None, 30, "<=",
                      "" if p8 else "concurrency 8 not measured")]
    params = dict(vars(p), board=list(BOARD), pen_width=PEN_WIDTH, model_key_db=BENCH_REDIS_DB,
                  load_generator="python threads, one keep-alive http.client connection each",
                  model_version=meta.get("version"), model_size_bytes=meta.get("size_bytes"))
    path = write_result("serving", params, rows, targets, machine, started, smoke)
    return finish(path, rows, targets, report(rows, targets), smoke, quiet)


COLUMNS = [("server", "server", ""), ("clients", "concurrency", "d"),
           ("requests", "requests", ""), ("req/s", "requests_per_s", ",.1f"),
           ("p50 ms", "p50_ms", ".1f"), ("p95 ms", "p95_ms", ".1f"), ("p99 ms", "p99_ms", ".1f"),
           ("errors", "errors", "d"), ("server CPU ms/req", "server_cpu_ms_per_request", ".1f"),
           ("p99 vs tutorial", "p99_vs_tutorial", ".2f"),
           ("req/s vs tutorial", "rps_vs_tutorial", ".1f"),
           ("drawings recognised", "drawings_recognised", ".0%")]


def report(rows, targets) -> str:
    return "\n".join([table("serving: POST /predict, board drawings (300x150 SVG); project and tutorial "
                            "under gunicorn, 2 workers; project-waitress: 8 threads",
                            COLUMNS, rows), "", targets_table(targets)])
