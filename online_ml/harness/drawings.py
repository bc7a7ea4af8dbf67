"""Drawings as the board sends them: SVG strokes (static/board.js writes jSignature's format),
digits images drawn as ink squares, PNG canvases, and the form bodies of ``POST /predict``.

Why one place: the feature tests, the server tests, the load test and the serving benchmark all
need "a drawing of a digit"; when the board's format changes, it changes here once.
"""
from __future__ import annotations

import base64
import io
import math
import random
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import Any

Point = tuple[float, float]
Stroke = Sequence[Point]

BOARD = (300, 150)  # the board's size in the page (CSS px)
PEN_WIDTH = 8  # static/board.js
SVG_PREFIX = "data:image/svg+xml;base64,"
#: What jSignature (the tutorial's board) puts before its <svg>.
JSIGNATURE_HEAD = ('<?xml version="1.0" encoding="UTF-8" standalone="no"?>'
                   '<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" '
                   '"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">')
#: A board nobody drew on.
EMPTY_BOARD = '<svg xmlns="http://www.w3.org/2000/svg" width="300" height="150"></svg>'
#: An XML bomb: entities that expand a thousandfold (refused before any expansion).
BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa">'
                  '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>'
                  '<svg xmlns="http://www.w3.org/2000/svg"><desc>&c;</desc></svg>')


def svg_data_url(svg: str, prefix: str = SVG_PREFIX) -> str:
    """The SVG as the board's data URL (``prefix`` + base64)."""
    return prefix + base64.b64encode(svg.encode()).decode()


def png_data_url(img: Any) -> str:
    """A PIL image as a canvas's ``toDataURL()``."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def form_body(data_url: str) -> bytes:
    """The board's ``POST /predict`` body (form field ``imgStr``, the tutorial's name)."""
    return urllib.parse.urlencode({"imgStr": data_url}).encode()


def _num(v: float) -> str:
    return f"{round(v, 2):g}"


def stroke_svg(strokes: Sequence[Stroke], ox: float = 0.0, oy: float = 0.0, size: float = 1.0,
               board: tuple[float, float] = BOARD, width: float = PEN_WIDTH,
               color: str = "#000000", head: str = "") -> str:
    """Strokes (polylines in a 100x100 box, placed at ``ox, oy`` and scaled by ``size``) as
    static/board.js writes them: one stroked ``<path>`` per stroke, ``M x y L x y ...``."""
    paths = []
    for points in strokes:
        pts = [(ox + x * size, oy + y * size) for x, y in points]
        d = "M " + " L ".join(f"{_num(x)} {_num(y)}" for x, y in pts)
        paths.append(f'<path fill="none" stroke="{color}" stroke-width="{_num(width)}" '
                     f'stroke-linecap="round" stroke-linejoin="round" d="{d}"/>')
    w, h = (f"{v:.0f}" for v in board)
    return (f'{head}<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{w}" '
            f'height="{h}" viewBox="0 0 {w} {h}">' + "".join(paths) + "</svg>")


def arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float,
        n: int = 24) -> list[Point]:
    """``n`` points of an elliptic arc from angle ``a0`` to ``a1`` (degrees, y down)."""
    return [(cx + rx * math.cos(math.radians(a0 + (a1 - a0) * i / (n - 1))),
             cy + ry * math.sin(math.radians(a0 + (a1 - a0) * i / (n - 1)))) for i in range(n)]


#: Strokes of each digit in a 100x100 box, y down, as a person might draw them.
TEMPLATES: dict[int, list[list[Point]]] = {
    0: [arc(50, 50, 26, 44, -90, 275, 40)],
    1: [[(35, 25), (55, 8), (52, 95)]],
    2: [arc(50, 32, 25, 23, 200, 390) + [(28, 92), (80, 92)]],
    3: [arc(48, 28, 24, 19, -160, 95) + arc(48, 71, 27, 23, -95, 160)],
    4: [[(62, 8), (22, 66), (84, 66)], [(66, 36), (64, 96)]],
    5: [[(76, 8), (32, 8), (28, 46)] + arc(48, 68, 27, 26, -130, 150)],
    6: [[(72, 8), (48, 28), (28, 62)] + arc(50, 72, 23, 22, 180, 540, 30)],
    7: [[(15, 8), (85, 8), (40, 95)]],
    8: [arc(50, 27, 22, 20, 90, 450, 40), arc(50, 72, 27, 23, -90, 270, 40)],
    9: [arc(50, 30, 24, 22, 0, 360, 40) + [(74, 30), (68, 95)]],
}


def mouse(points: Stroke, step: float, rng: random.Random) -> list[Point]:
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
    """One drawing of ``digit`` on the board, 90..130 px high at a random place, sampled like
    mouse input."""
    size = rng.uniform(0.9, 1.3)
    ox = rng.uniform(10, BOARD[0] - 10 - 100 * size)
    oy = rng.uniform(2, max(3, BOARD[1] - 2 - 100 * size))
    strokes = [mouse([(ox + x * size, oy + y * size) for x, y in stroke], 4.0, rng)
               for stroke in TEMPLATES[digit]]
    return stroke_svg(strokes)


def drawings(n: int, seed: int) -> list[tuple[int, bytes]]:
    """``n`` (digit, ``POST /predict`` form body) pairs, digits 0..9 in turn."""
    rng = random.Random(seed)
    return [(i % 10, form_body(svg_data_url(board_svg(i % 10, rng)))) for i in range(n)]


def digit_cells(img8: Any, ox: float, oy: float, w: float,
                h: float) -> Iterator[tuple[float, float, float, float]]:
    """Each block of a digits image (8x8, ink 0..16) as a square ``(x, y, width, height)`` in
    the box ``ox, oy, w, h`` whose area is its ink count: what the features count back."""
    cw, ch = w / 8, h / 8
    for r in range(8):
        for c in range(8):
            v = img8[r][c]
            if v <= 0:
                continue
            f = math.sqrt(v / 16)
            yield (ox + c * cw + cw * (1 - f) / 2, oy + r * ch + ch * (1 - f) / 2, cw * f, ch * f)


def digit_rects_svg(img8: Any, ox: float = 100, oy: float = 20, w: float = 96, h: float = 96,
                    board: tuple[float, float] = BOARD, fill: str = "#000") -> str:
    """A digits image drawn as ink squares on a board (see :func:`digit_cells`)."""
    rects = "".join(f'<rect x="{x:.2f}" y="{y:.2f}" width="{cw:.2f}" height="{ch:.2f}" '
                    f'fill="{fill}"/>' for x, y, cw, ch in digit_cells(img8, ox, oy, w, h))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{board[0]:.0f}" '
            f'height="{board[1]:.0f}">{rects}</svg>')
