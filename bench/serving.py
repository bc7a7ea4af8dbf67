"""Serving: latency and throughput of POST /predict with drawings as the board sends them.

Servers in the same run, each a real process, all reading the same model from Redis:

* ``project``: online_ml.server (model cached by version, features rendered in memory at the
  scale the features need) under granian with one worker process per core, as README and
  ``make demo`` run it;
* ``project-gunicorn``: the same app under gunicorn with one sync worker per core (what
  ``make demo`` ran until 2026-12-02: a new connection per request);
* ``project-waitress``: the same app under waitress, one process with 8 threads (one GIL);
* ``project-blas``: ``project`` with numpy's BLAS free to use every core in each worker
  (``BLAS_THREADS=0``), as before 2026-12-04: what one BLAS thread (online_ml/blas.py) changes;
* ``tutorial``: bench/tutorial_server.py, the tutorial's per-request work (model reloaded from
  Redis, drawing rendered through temporary files at the board's full size), under gunicorn
  with one sync worker per core.

The load generator (online_ml/harness/http_load.py, shared with tests/test_load.py) is a thread
per simulated client, each with its own keep-alive connection, sending requests back to back for
``seconds`` at each concurrency level. The drawings (online_ml/harness/drawings.py) are a few
strokes of each digit, sampled like mouse input, on a 300x150 board, SVG paths as the board
(static/board.js, jSignature's format) writes them, posted with ``explain=1`` as the board posts
every drawing (``Params.explain``; the tutorial's server ignores the field). Until 2026-12-04
the requests had no ``explain``: the project's rows of earlier runs measured a lighter request
than the board's.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import common

from online_ml.config import Settings
from online_ml.harness.drawings import BOARD, PEN_WIDTH, drawings
from online_ml.harness.http_load import connect, load, post
from online_ml.harness.processes import Server


@dataclass
class Params:
    concurrency: tuple[int, ...] = (1, 8, 32)
    seconds: float = 20.0  # of load per server and concurrency level
    warmup_requests: int = 30
    servers: tuple[str, ...] = ("project", "project-gunicorn", "project-waitress", "project-blas",
                                "tutorial")
    threads: int = 8  # waitress threads
    gthreads: int = 4  # threads per gunicorn gthread worker (project-gthread)
    workers: int = 2  # granian / gunicorn workers (one per core here)
    drawings: int = 40
    seed: int = 7
    explain: bool = True  # what the board sends with every drawing (static/board.js)

    @classmethod
    def smoke(cls) -> Params:
        return cls(seconds=1.0, warmup_requests=5, drawings=10)


def server_specs(p: Params) -> dict[str, dict[str, Any]]:
    """Each server this benchmark can measure: its name -> how ``Server`` starts it."""
    project = dict(call="online_ml.server:create_app", name="project-server",
                   workers=p.workers, wsgi="granian")
    return {
        "project": project,
        "project-gunicorn": dict(call="online_ml.server:create_app", name="project-gunicorn",
                                 workers=p.workers),
        "project-waitress": dict(call="online_ml.server:create_app", name="project-waitress"),
        "project-blas": dict(project, name="project-blas", env={"BLAS_THREADS": "0"}),
        "project-gthread": dict(call="online_ml.server:create_app", name="project-gthread",
                                workers=p.workers, gunicorn_threads=p.gthreads),
        # gunicorn imports the app from its working directory
        "tutorial": dict(call="tutorial_server:create_app", name="tutorial-server",
                         cwd=common.ROOT / "bench", workers=p.workers),
    }


#: The servers this benchmark can measure (``Params.servers`` measures all but project-gthread);
#: a spec's ``env`` is added to the servers' environment.
SERVERS = tuple(server_specs(Params()))


# -- what the answers say ---------------------------------------------------------------------
def recognised(url: str, samples: list[tuple[int, bytes]]) -> float | None:
    """Fraction of the drawings whose answer is the digit drawn (one pass, not timed)."""
    conn = connect(url)
    right = total = 0
    for digit, body in samples:
        status, data = post(conn, body)
        if status == 200:
            total += 1
            right += json.loads(data).get("predict_result") == digit
    conn.close()
    return round(right / total, 3) if total else None


# -- the model both servers serve ------------------------------------------------------------------
MODEL_RANDOM_STATE = 0


def store_model(settings: Settings, key: str) -> dict:
    """Train the job's learner on two passes over the digits and store it as a new version.
    Seeded (``random_state`` 0 unless LEARNER_PARAMS sets one): unseeded, SGD shuffles each
    mini-batch differently and every run served another model (bench/strokes.py: the templates'
    "recognised" ranges 80-90 % over SGD's random states)."""
    from online_ml.learner import OnlineLearner, make_model
    from online_ml.model_store import ModelStore
    from online_ml.producer import iter_records

    name = getattr(settings, "learner", "sgd")
    params = dict(settings.learner_kwargs() if hasattr(settings, "learner_kwargs") else {})
    if "random_state" in make_model(name).get_params():
        params.setdefault("random_state", MODEL_RANDOM_STATE)
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
    store = ModelStore(settings.redis_client(db=common.BENCH_REDIS_DB), key)
    snap = learner.snapshot()
    return store.save(learner.model, snap, snapshot=snap)


def run(p: Params, smoke: bool = False, quiet: bool = False) -> dict:
    started = time.time()
    settings = Settings.from_env()
    machine = common.machine_info(settings)
    key = f"bench_{uuid.uuid4().hex[:8]}_serving"
    samples = [(digit, body + b"&explain=1" if p.explain else body)
               for digit, body in drawings(p.drawings, p.seed)]
    bodies = [b for _, b in samples]
    rows: list[dict] = []
    env = {"REDIS_DB": str(common.BENCH_REDIS_DB), "MODEL_KEY": key}
    specs = server_specs(p)
    try:
        meta = store_model(settings, key)
        common.progress(f"serving: model version {meta['version']} stored under db "
                        f"{common.BENCH_REDIS_DB} {key}")
        for server_name in p.servers:
            spec = dict(specs[server_name])
            with Server(env={**env, **spec.pop("env", {})}, threads=p.threads,
                        log_dir=common.RESULTS, **spec) as server:
                server.wait_ready()
                for _, body in zip(range(p.warmup_requests), bodies * p.warmup_requests):
                    warm = connect(server.url)
                    post(warm, body)
                    warm.close()
                acc = recognised(server.url, samples)
                for c in p.concurrency:
                    common.progress(f"serving: {server_name} server, concurrency {c}, "
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
        common.delete_model_keys(settings, [key])

    by = {(r["server"], r["concurrency"]): r for r in rows}
    for r in rows:
        base = by.get(("tutorial", r["concurrency"]))
        r["p99_vs_tutorial"] = (round(r["p99_ms"] / base["p99_ms"], 3)
                                if base and base["p99_ms"] and r["p99_ms"] else None)
        r["rps_vs_tutorial"] = (round(r["requests_per_s"] / base["requests_per_s"], 2)
                                if base and base["requests_per_s"] and r["requests_per_s"]
                                else None)
        # the machine's speed cancels out: the tutorial's code does not change between runs
        cpu, base_cpu = (r.get("server_cpu_ms_per_request"),
                         base.get("server_cpu_ms_per_request") if base else None)
        r["cpu_vs_tutorial"] = round(cpu / base_cpu, 3) if cpu and base_cpu else None
    p1, p8 = by.get(("project", 1)), by.get(("project", 8))
    cpu1 = p1.get("server_cpu_ms_per_request") if p1 else None
    targets = [common.target("project /predict p99 at concurrency 8 (ms)",
                      p8["p99_ms"] if p8 else None, 30, "<=",
                      "" if p8 else "concurrency 8 not measured"),
               common.target("project server CPU per /predict at concurrency 1 (ms)", cpu1,
                             common.SERVING_CPU_BUDGET_MS, "<=",
                             "the server processes' CPU time over the run / requests answered"
                             if cpu1 is not None else "concurrency 1 not measured")]
    targets += _server_choice(by)
    params = dict(vars(p), board=list(BOARD), pen_width=PEN_WIDTH, model_key_db=common.BENCH_REDIS_DB,
                  load_generator="python threads, one keep-alive http.client connection each",
                  model_version=meta.get("version"), model_size_bytes=meta.get("size_bytes"),
                  model_random_state=MODEL_RANDOM_STATE)
    path = common.write_result("serving", params, rows, targets, machine, started, smoke)
    return common.finish(path, rows, targets, report(rows, targets), smoke, quiet)


def _server_choice(by: dict) -> list[dict]:
    """Why ``make demo`` runs granian with one BLAS thread: its CPU per request at one client
    and its requests per second at 8 clients against gunicorn's sync workers (what it ran
    before) and against BLAS on every core (before 2026-12-04), in the same run."""
    out = []
    for other, name in [("project-gunicorn", "granian / gunicorn"),
                        ("project-blas", "one BLAS thread / every core")]:
        for c, key, op, what in [(1, "server_cpu_ms_per_request", "<=", "server CPU per request"),
                                 (8, "requests_per_s", ">=", "requests per second")]:
            ours, theirs = by.get(("project", c)), by.get((other, c))
            if ours and theirs and ours.get(key) and theirs.get(key):
                out.append(common.target(
                    f"{name}, {what} at concurrency {c}",
                    round(ours[key] / theirs[key], 3), 1.0, op,
                    f"{ours[key]:,} vs {theirs[key]:,}"))
    return out


COLUMNS = [("server", "server", ""), ("clients", "concurrency", "d"),
           ("requests", "requests", ""), ("req/s", "requests_per_s", ",.1f"),
           ("p50 ms", "p50_ms", ".1f"), ("p95 ms", "p95_ms", ".1f"), ("p99 ms", "p99_ms", ".1f"),
           ("errors", "errors", "d"), ("server CPU ms/req", "server_cpu_ms_per_request", ".2f"),
           ("CPU vs tutorial", "cpu_vs_tutorial", ".2f"),
           ("p99 vs tutorial", "p99_vs_tutorial", ".2f"),
           ("req/s vs tutorial", "rps_vs_tutorial", ".1f"),
           ("drawings recognised", "drawings_recognised", ".0%")]


def report(rows, targets) -> str:
    title = ("serving: POST /predict, board drawings (300x150 SVG) with explain=1; project and "
             "project-blas (BLAS on every core) under granian, project-gunicorn and tutorial "
             "under gunicorn, 2 workers each; project-waitress: 8 threads")
    return common.report(title, COLUMNS, rows, targets)
