"""Our own set of clean digits drawn with a mouse: several per digit, the way people draw them.

Why: issue 10 wants "clean digits drawn with the mouse on our board and on the tutorial's
jSignature page, at least 9 in 10 right", and "a plain 1 drawn as one stroke, with or without a
flag or a base, is a 1". The same strokes are checked offline through the server's feature path
(tests/test_features.py) and drawn with real mouse moves in Chromium (tests/test_browser.py), so a
miss can be reproduced and understood without a browser.

Each drawing is a list of strokes; a stroke is a list of control points in a 100x100 box (y
down) that the mouse moves through in straight lines. :func:`mouse_path` turns them into the
points a board records (one every few pixels, as a mouse reports them).

>>> len(SET) >= 40, sorted({d for d, _, _ in SET}) == list(range(10))
(True, True)
>>> [name for d, name, _ in SET if d == 1][:3]
['plain', 'flag', 'flag and base']
>>> pts = mouse_path([(0, 0), (10, 0)], ox=0, oy=0, scale=1.0, step=4.0)
>>> pts[0], pts[-1], len(pts)
((0.0, 0.0), (10.0, 0.0), 4)
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from .drawings import Point, arc

__all__ = ["SET", "mouse_path", "strokes_on_board", "board_svg_of", "flagged_based_ones",
           "ones_by_base", "ones_by_flag"]

Drawing = list[list[Point]]


def _ellipse(cx: float, cy: float, rx: float, ry: float, start: float, turn: float,
             n: int = 36) -> list[Point]:
    return arc(cx, cy, rx, ry, start, start + turn, n)


#: (digit, name, strokes): clean, upright-ish digits as a person draws them with a mouse.
SET: list[tuple[int, str, Drawing]] = [
    # 0: an oval, either way round, starting at the top
    (0, "oval anticlockwise", [_ellipse(50, 50, 24, 42, -90, -365)]),
    (0, "oval clockwise", [_ellipse(50, 50, 26, 43, -95, 368)]),
    (0, "narrow oval", [_ellipse(50, 50, 17, 43, -80, -362)]),
    (0, "round", [_ellipse(50, 52, 32, 38, -90, 362)]),
    # 1: one stroke, plain, with a flag at the top, with a base
    (1, "plain", [[(50, 6), (50, 94)]]),
    (1, "flag", [[(36, 22), (52, 6), (52, 94)]]),
    (1, "flag and base", [[(36, 22), (52, 6), (52, 94)], [(34, 94), (70, 94)]]),
    (1, "base", [[(50, 6), (50, 94)], [(32, 94), (68, 94)]]),
    (1, "short flag", [[(44, 14), (53, 6), (52, 94)]]),
    (1, "slight lean", [[(56, 6), (46, 94)]]),
    # 2
    (2, "curve and base", [_ellipse(50, 30, 24, 22, 200, 190, 24) + [(26, 92), (78, 92)]]),
    (2, "swan", [_ellipse(48, 30, 26, 24, 210, 170, 24) + [(30, 88), (28, 92), (80, 90)]]),
    (2, "Z-like", [[(26, 14), (48, 8), (70, 14), (72, 30), (28, 92), (80, 92)]]),
    (2, "loop at the bottom", [_ellipse(50, 30, 24, 22, 200, 190, 24)
                               + [(30, 86), (36, 80), (42, 88), (36, 94), (80, 92)]]),
    # 3
    (3, "two bumps", [_ellipse(48, 28, 24, 20, -160, 255, 30) + _ellipse(48, 71, 27, 23, -95, 255, 30)]),
    (3, "flat top", [[(26, 8), (74, 8), (46, 40)] + _ellipse(48, 68, 27, 26, -100, 260, 30)]),
    (3, "narrow", [_ellipse(50, 27, 18, 20, -160, 250, 30) + _ellipse(50, 72, 20, 22, -95, 255, 30)]),
    (3, "two strokes", [_ellipse(48, 28, 24, 20, -160, 255, 30), _ellipse(48, 71, 27, 23, -95, 255, 30)]),
    # 4
    (4, "open", [[(58, 6), (22, 64), (82, 64)], [(64, 30), (64, 96)]]),
    (4, "closed", [[(62, 96), (62, 6), (22, 66), (84, 66)]]),
    (4, "L and stem", [[(30, 8), (28, 58), (80, 58)], [(66, 10), (66, 96)]]),
    (4, "narrow open", [[(56, 6), (30, 62), (76, 62)], [(62, 32), (62, 96)]]),
    # 5
    (5, "one stroke", [[(74, 8), (34, 8), (30, 46)] + _ellipse(48, 68, 26, 25, -140, 285, 30)]),
    (5, "hat last", [[(34, 8), (30, 46)] + _ellipse(48, 68, 26, 25, -140, 285, 30),
                     [(34, 8), (74, 8)]]),
    (5, "round belly", [[(72, 8), (32, 10), (28, 48)] + _ellipse(50, 68, 28, 26, -150, 295, 30)]),
    (5, "narrow", [[(68, 8), (36, 8), (34, 44)] + _ellipse(50, 68, 20, 25, -140, 285, 30)]),
    # 6
    (6, "curl", [[(68, 8), (44, 28), (28, 62)] + _ellipse(50, 72, 22, 22, 180, 360, 30)]),
    (6, "long neck", [[(64, 6), (40, 30), (30, 64)] + _ellipse(50, 74, 20, 20, 180, 360, 30)]),
    (6, "round", [_ellipse(62, 60, 34, 52, -100, -90, 12) + _ellipse(50, 72, 22, 22, 180, 360, 30)]),
    (6, "small loop", [[(66, 6), (40, 36), (32, 70)] + _ellipse(48, 78, 16, 16, 180, 360, 30)]),
    # 7
    (7, "plain", [[(20, 8), (80, 8), (42, 94)]]),
    (7, "crossbar", [[(20, 8), (80, 8), (42, 94)], [(40, 50), (72, 50)]]),
    (7, "curved stem", [[(22, 10), (80, 8), (60, 40), (50, 68), (46, 94)]]),
    (7, "short top", [[(30, 8), (76, 8), (44, 94)]]),
    # 8
    (8, "two loops", [_ellipse(50, 27, 21, 20, 90, 360, 36), _ellipse(50, 72, 26, 23, -90, 360, 36)]),
    (8, "one stroke", [_ellipse(50, 27, 21, 20, 30, -300, 30) + _ellipse(50, 72, 26, 23, -90, 360, 36)
                       + _ellipse(50, 27, 21, 20, 90, -60, 8)]),
    (8, "snowman", [_ellipse(50, 24, 17, 18, 90, 360, 36), _ellipse(50, 68, 28, 27, -90, 360, 36)]),
    (8, "narrow", [_ellipse(50, 27, 16, 20, 90, 360, 36), _ellipse(50, 72, 19, 23, -90, 360, 36)]),
    # 9
    (9, "loop and stem", [_ellipse(50, 30, 24, 22, 0, -360, 36) + [(74, 30), (72, 94)]]),
    (9, "curved stem", [_ellipse(50, 30, 23, 22, 0, -360, 36) + [(74, 30), (70, 70), (60, 94)]]),
    (9, "two strokes", [_ellipse(48, 28, 22, 21, 0, 360, 36), [(70, 20), (70, 94)]]),
    (9, "small loop", [_ellipse(52, 24, 18, 18, 0, -360, 36) + [(70, 24), (68, 94)]]),
]


def mouse_path(points: Sequence[Point], ox: float, oy: float, scale: float,
               step: float = 4.0) -> list[Point]:
    """The control points placed at ``ox, oy``, scaled, and walked in straight lines with a point
    about every ``step`` px, as a mouse reports a steady hand."""
    placed = [(ox + x * scale, oy + y * scale) for x, y in points]
    out = [placed[0]]
    for (x0, y0), (x1, y1) in zip(placed, placed[1:]):
        n = max(1, math.ceil(math.hypot(x1 - x0, y1 - y0) / step))
        out.extend((x0 + (x1 - x0) * i / n, y0 + (y1 - y0) * i / n) for i in range(1, n + 1))
    return [(round(x, 2), round(y, 2)) for x, y in out]


def strokes_on_board(drawing: Drawing, board: tuple[float, float],
                     height: float = 0.7) -> list[list[Point]]:
    """The drawing centred on a board of size ``board``, ``height`` of the board high."""
    scale = board[1] * height / 100
    ox, oy = board[0] / 2 - 50 * scale, board[1] / 2 - 50 * scale
    return [mouse_path(stroke, ox, oy, scale) for stroke in drawing]


def board_svg_of(drawing: Drawing, board: tuple[float, float] = (360, 240)) -> str:
    """The SVG our board (static/board.js) sends for this drawing on a board of size ``board``."""
    from .drawings import stroke_svg

    return stroke_svg(strokes_on_board(drawing, board), board=board)


#: A "1" with both a flag and a base, varied the way people vary it: the flag's start (its length
#: and angle) and the base's ends (its width and where it sits under the stem), in a 100x100 box.
FLAGS: list[Point] = [(36, 22), (42, 16), (30, 28)]
BASES: list[tuple[float, float]] = [(34, 70), (28, 76), (38, 66), (30, 62)]
#: Boards (size, the digit's height as a share of it) the board form is drawn on.
BOARDS: list[tuple[tuple[float, float], float]] = [((360, 240), 0.7), ((300, 150), 0.5),
                                                   ((300, 150), 0.85)]


def flagged_based_ones(seed: int = 3) -> list[tuple[str, str, str]]:
    """(form, name, SVG) of 1s with a flag and a base: every flag with every base, on each board
    of ``BOARDS`` at a random place (``board``) and as an SVG just the ink's size with a thin pen
    (``cropped``, as the tutorial's jSignature page sends it) — 48 drawings.

    Why: the mouse set has one such 1; whether it is a 1 must not hang on one drawing's size,
    place or proportions.

    >>> ones = flagged_based_ones()
    >>> len(ones), sorted({form for form, _, _ in ones})
    (48, ['board', 'cropped'])
    """
    import random

    rng = random.Random(seed)
    out = []
    for flag in FLAGS:
        for left, right in BASES:
            drawing: Drawing = [[flag, (52, 6), (52, 94)], [(left, 94), (right, 94)]]
            name = f"flag from {flag}, base {left}..{right}"
            out += [(form, name, svg) for form, svg in _placed_forms(drawing, rng)]
    return out


def _placed_forms(drawing: Drawing, rng) -> list[tuple[str, str]]:
    """(form, SVG): the drawing on each board of ``BOARDS`` at a random place (``board``), and as
    an SVG just the ink's size with a thin pen (``cropped``, as jSignature sends it)."""
    from .drawings import stroke_svg

    out = []
    for board, height in BOARDS:
        scale = board[1] * height / 100
        ox, oy = rng.uniform(0, board[0] - 100 * scale), rng.uniform(0, board[1] - 100 * scale)
        out.append(("board", stroke_svg([mouse_path(s, ox, oy, scale) for s in drawing],
                                        board=board)))
    strokes = [mouse_path(s, 0, 0, 0.9) for s in drawing]
    x0 = min(x for s in strokes for x, _ in s) - 3
    y0 = min(y for s in strokes for _, y in s) - 3
    strokes = [[(x - x0, y - y0) for x, y in s] for s in strokes]
    size = (max(x for s in strokes for x, _ in s) + 3, max(y for s in strokes for _, y in s) + 3)
    out.append(("cropped", stroke_svg(strokes, board=size, width=3)))
    return out


#: Feet a 1's stem can end in, drawn in the same stroke to the right (as ``digits``' based 1s
#: have it: their base lies right of the stem's top): the foot's length in the 100x100 box.
FEET: list[float] = [12, 18, 24, 30]


def ones_by_base(seed: int = 5) -> list[dict]:
    """1s with every base a person might give one, with and without each flag of ``FLAGS``, on
    each board of ``BOARDS`` at a random place and cropped to the ink: dicts of ``base`` (its
    name), ``width`` (the base's width over the stem's height), ``strokes`` ("one" or "two"),
    ``flag`` (bool), ``form`` and ``svg``.

    The bases: none; a foot to the right in the stem's stroke (``FEET``); each base of ``BASES``
    as a second stroke, and in the stem's stroke (down the stem, back along the base's left half
    and across it). Why: which 1s the model reads as 1 hangs on the base's width, not on the
    stroke order, the board or the place (bench/strokes.py).

    >>> ones = ones_by_base()
    >>> len(ones), sorted({o["strokes"] for o in ones}), sorted({o["form"] for o in ones})
    (208, ['one', 'two'], ['board', 'cropped'])
    """
    import random

    rng = random.Random(seed)
    stem_height = 94 - 6
    kinds: list[tuple[str, float, str, list[Point], list[Point]]] = [("none", 0.0, "one", [], [])]
    kinds += [(f"foot 52..{52 + foot:g}", foot / stem_height, "one", [(52 + foot, 94)], [])
              for foot in FEET]
    for left, right in BASES:
        name, width = f"base {left:g}..{right:g}", (right - left) / stem_height
        kinds.append((name, width, "two", [], [(left, 94), (right, 94)]))
        kinds.append((name, width, "one", [(left, 94), (right, 94)], []))
    out = []
    for name, width, strokes, tail, second in kinds:
        for flag in [None, *FLAGS]:
            stem = ([flag] if flag else []) + [(52, 6), (52, 94)] + tail
            drawing: Drawing = [stem] + ([second] if second else [])
            svgs = _placed_forms(drawing, rng)
            out += [{"base": name, "width": width, "strokes": strokes, "flag": flag is not None,
                     "form": form, "svg": svg} for form, svg in svgs]
    return out


#: How far a flag reaches left of the stem's top and down from it (fraction of the stem's
#: height), and the bases under it (width over the stem's height) in :func:`ones_by_flag`:
#: ``FLAGS`` are 45-degree flags 0.11 to 0.25 long each way; people's flags are often flatter
#: (a board drawing of 2026-12-04: 0.20 across, 0.17 down, over a base 0.59 wide, read 2).
FLAG_REACH = (0.13, 0.20, 0.26)
FLAG_DROP = (0.13, 0.17, 0.22)
FLAG_BASES = (0.0, 0.39, 0.53, 0.60, 0.66)


def ones_by_flag(seed: int = 7, one_stroke: bool = False) -> list[dict]:
    """1s by the shape of their flag: each reach of ``FLAG_REACH`` and drop of ``FLAG_DROP``,
    over each base of ``FLAG_BASES`` (0: none; else a second stroke centred under the stem), on
    each board of ``BOARDS`` at a random place and cropped: dicts of ``reach``, ``drop``, ``base``,
    ``form``, ``stroke`` and ``svg``. ``one_stroke``: the based ones only, each base drawn in the
    stem's own stroke, out to the left first and back across (``stroke`` "left first"), and out
    to the right first (``"right first"``), as the issue's "a plain 1 drawn as one stroke".

    >>> ones = ones_by_flag()
    >>> len(ones), sorted({o["base"] for o in ones})[:2]
    (180, [0.0, 0.39])
    >>> once = ones_by_flag(one_stroke=True)
    >>> len(once), sorted({o["stroke"] for o in once}), min(o["base"] for o in once) > 0
    (288, ['left first', 'right first'], True)
    """
    import random

    rng = random.Random(seed)
    top, bottom, x = 12.0, 88.0, 55.0
    height = bottom - top
    out = []
    for reach in FLAG_REACH:
        for drop in FLAG_DROP:
            for base in FLAG_BASES:
                stem = [(x - reach * height, top + drop * height), (x, top), (x, bottom)]
                half = base * height / 2
                if one_stroke:
                    drawings = {"left first": [stem + [(x - half, bottom), (x + half, bottom)]],
                                "right first": [stem + [(x + half, bottom), (x - half, bottom)]]
                                } if base else {}
                elif base:
                    drawings = {"two strokes": [stem, [(x - half, bottom), (x + half, bottom)]]}
                else:
                    drawings = {"one stroke": [stem]}
                out += [{"reach": reach, "drop": drop, "base": base, "form": form,
                         "stroke": stroke, "svg": svg}
                        for stroke, drawing in drawings.items()
                        for form, svg in _placed_forms(drawing, rng)]
    return out
