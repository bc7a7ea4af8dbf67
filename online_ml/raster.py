"""Reportlab shapes to ink coverage, the way renderPM would draw them, a third of its cost.

svg_render converts an SVG to reportlab shapes; this module rasterises them on a small raster.
Groups and paths (every board, jSignature and bitmap-as-path drawing) go straight to cairo with
exactly the calls renderPM's rlPyCairo backend makes (:func:`_cairo_surface`: the same pixels,
tests/test_features.py checks them for every pen the ink fitting may try); anything else
(``<rect>``, ``<circle>``, ...) goes through renderPM itself.
"""
from __future__ import annotations

import logging

import numpy as np

from .drawing_input import FeatureError

log = logging.getLogger(__name__)

__all__ = ["rasterise"]


def rasterise(contents: list, transform: tuple, width: int, height: int) -> np.ndarray:
    """Ink coverage (1 = black) of reportlab shapes, transformed by ``transform``, rendered with
    cairo on a ``width`` x ``height`` px raster (what renderPM makes of a
    ``Drawing(width, height)`` holding a ``Group(*contents)`` with that transform).

    Groups and paths (every board, jSignature and bitmap-as-path drawing) go straight to cairo
    (:func:`_cairo_surface`, the same pixels); anything else through reportlab's renderPM.
    """
    try:
        if _is_board(contents):
            return _green_ink(_board_surface(contents[0], transform, width, height))
        return _green_ink(_cairo_surface(contents, transform, width, height))
    except _NotDirect:
        pass
    except Exception as exc:  # let renderPM fail (or not) the way it always did
        log.debug("direct rendering failed (%r); renderPM instead", exc)
    return _rasterise_renderpm(_drawing_of(contents, transform, width, height))


def _drawing_of(contents: list, transform: tuple, width: int, height: int):
    from reportlab.graphics.shapes import Drawing, Group

    outer = Group(*contents)
    outer.transform = transform
    drawing = Drawing(width, height)
    drawing.add(outer)
    return drawing


def _green_ink(surface) -> np.ndarray:
    """Ink coverage from a cairo RGB24 surface's green channel, read straight from its buffer
    (rlPyCairo's pixBuf converts pixel by pixel in Python)."""
    surface.flush()
    height, width = surface.get_height(), surface.get_width()
    buf = np.frombuffer(surface.get_data(), dtype=np.uint8)
    green = buf.reshape(height, surface.get_stride())[:, : width * 4].reshape(height, width, 4)[:, :, 1]
    return 1.0 - green.astype(np.float32) / 255.0


def _rasterise_renderpm(drawing) -> np.ndarray:
    from reportlab.graphics import renderPM

    try:
        canvas = renderPM.drawToPMCanvas(drawing, dpi=72, bg=0xFFFFFF, backend="rlPyCairo")
    except Exception as exc:
        log.info("rendering failed: %r", exc)
        raise FeatureError(f"SVG could not be rendered: {exc}") from None
    surface = getattr(getattr(canvas, "_gs", None), "surface", None)
    if surface is not None:
        return _green_ink(surface)
    green = np.asarray(canvas.toPIL().convert("L"))  # another backend: go through PIL
    return 1.0 - green.astype(np.float32) / 255.0


class _NotDirect(Exception):
    """The drawing has something the direct renderer does not draw (renderPM does)."""


# cairo's fill rule for reportlab's fill mode (rlPyCairo's table: even-odd 0 -> 1, non-zero 1 -> 0)
_FILL_RULE = (1, 0)


def _white_surface(width: float, height: float):
    """(surface, context, height in px) of the canvas renderPM paints at dpi 72: an RGB24 surface
    of the size rounded, antialiased at its best, the background painted white as GState does."""
    import cairo

    width, height = int(width + 0.5), int(height + 0.5)
    surface = cairo.ImageSurface(cairo.FORMAT_RGB24, width, height)
    ctx = cairo.Context(surface)
    ctx.set_antialias(cairo.ANTIALIAS_BEST)
    ctx.rectangle(0, 0, width, height)
    ctx.set_source_rgb(1.0, 1.0, 1.0)
    ctx.fill()
    return surface, ctx, height


def _is_board(contents: list) -> bool:
    """Whether ``contents`` is the board's drawing as svg_render's converter builds it (marked
    ``_board``: one group of groups of one round-capped polyline each, no fill, no dashes)."""
    return len(contents) == 1 and getattr(contents[0], "_board", False)


def _board_surface(main, transform: tuple, width: int, height: int):
    """The board's strokes painted as :func:`_cairo_surface` paints them, without its per-node
    state machinery: renderPM's matrices (the groups of single strokes have the identity
    transform, so the ctm is the main group's), each polyline stroked on its own with its line
    width, round caps and joins. The same pixels (tests/test_features.py), a quarter less time."""
    import cairo
    from reportlab.graphics.transform import mmult

    surface, ctx, height = _white_surface(width, height)
    identity = (1.0, 0, 0, 1.0, 0, 0)  # the canvas's and the drawing's, as _cairo_surface has them
    ctm = mmult(mmult(mmult(identity, identity), transform), main.transform)
    ctx.set_matrix(cairo.Matrix(*mmult((1, 0, 0, -1, 0, height), ctm)))
    ctx.set_line_cap(cairo.LINE_CAP_ROUND)
    ctx.set_line_join(cairo.LINE_JOIN_ROUND)
    ctx.set_source_rgb(0.0, 0.0, 0.0)
    for group in main.contents:
        (path,) = group.contents
        if not path.strokeWidth > 0:  # as _cairo_surface: no stroke without a width
            continue
        ctx.set_line_width(path.strokeWidth)
        ctx.new_path()
        points = path.points
        ctx.move_to(points[0], points[1])
        for i in range(2, len(points), 2):
            ctx.line_to(points[i], points[i + 1])
        ctx.stroke()
    return surface


def _cairo_surface(contents: list, transform: tuple, width: int, height: int):
    """``contents`` painted on a cairo surface with exactly the calls renderPM's rlPyCairo backend
    makes for ``_drawing_of(contents, transform, width, height)`` (same matrices, line widths,
    caps, joins, dashes, fill rules, colours, paths), so the pixels are the same
    (tests/test_features.py), without renderPM's per-node Python state machinery and shape
    validation (measured: 0.55 -> 0.19 ms a rendering of a board drawing). Only groups and paths;
    anything else raises ``_NotDirect``.

    What renderPM does, and so this: a state stack per node (reportlab's ``StateTracker``: the
    node's public attributes that are graphics state replace the parent's, transforms compose
    with ``mmult``), cairo's matrix = ``mmult(flip, ctm)``, then per path ``_renderPath`` and
    fill / stroke as ``_PMRenderer.drawPath`` and ``rlPyCairo.GState`` decide.
    """
    import cairo
    from reportlab.graphics.shapes import STATE_DEFAULTS, EmptyClipPath, Group, Path, _renderPath
    from reportlab.graphics.transform import mmult
    from reportlab.lib.colors import toColor

    surface, ctx, height = _white_surface(width, height)
    flip = (1, 0, 0, -1, 0, height)
    funcs = (ctx.move_to, ctx.line_to, ctx.curve_to, ctx.close_path)

    base = dict(STATE_DEFAULTS)
    base["transform"] = base["ctm"] = (1.0, 0, 0, 1.0, 0, 0)  # initState at dpi 72, x = y = 0

    def visit(node, parent: dict) -> None:
        state = dict(parent)
        for key, value in node.__dict__.items():
            if key[:1] != "_" and key in STATE_DEFAULTS:
                state[key] = value
                if key == "transform":
                    state["ctm"] = mmult(parent["ctm"], value)
        if isinstance(node, Path):
            if node is EmptyClipPath or node.isClipPath:
                raise _NotDirect("clip path")
            draw_path(node, state)
        elif isinstance(node, Group):
            for child in node.getContents():
                visit(child, state)
        else:
            raise _NotDirect(type(node).__name__)

    def draw_path(path, s: dict) -> None:
        ctx.set_matrix(cairo.Matrix(*mmult(flip, s["ctm"])))
        ctx.set_line_width(s["strokeWidth"])
        ctx.set_line_cap(cairo.LineCap(int(s["strokeLineCap"])))
        ctx.set_line_join(cairo.LineJoin(int(s["strokeLineJoin"])))
        ctx.set_fill_rule(cairo.FillRule(_FILL_RULE[int(s["fillMode"])]))
        da = s["strokeDashArray"]
        if da:  # _PMRenderer.applyState, then GState.dashArray
            if not isinstance(da, (list, tuple)):
                da = (da,)
            if len(da) != 2 or not isinstance(da[1], (list, tuple)):
                da = (0, da)
        if not da or not isinstance(da, (list, tuple)):
            da = (0, ())
        elif isinstance(da[0], (list, tuple)):
            da = (da[1], da[0])
        ctx.set_dash(da[1], da[0])
        fill_color = toColor(s["fillColor"]) if s["fillColor"] is not None else None
        stroke_color = toColor(s["strokeColor"]) if s["strokeColor"] is not None else None
        fill_mode = getattr(path, "fillMode", -1)

        def outline(force_close: bool = False) -> bool:
            ctx.new_path()
            return _renderPath(path, funcs, forceClose=force_close)

        def fill() -> None:
            if fill_color:
                if fill_mode is not None:
                    before = _FILL_RULE[int(ctx.get_fill_rule())]
                    if before != fill_mode:
                        ctx.set_fill_rule(cairo.FillRule(_FILL_RULE[int(fill_mode)]))
                ctx.set_source_rgb(*fill_color.rgb())
                ctx.fill_preserve()
                if fill_mode is not None and before != fill_mode:
                    ctx.set_fill_rule(cairo.FillRule(_FILL_RULE[int(before)]))

        def stroke() -> None:
            if stroke_color and ctx.get_line_width() > 0:
                ctx.set_source_rgb(*stroke_color.rgb())
                ctx.stroke_preserve()

        autoclose = getattr(path, "autoclose", "")
        if autoclose == "svg":
            if fill_color is not None and stroke_color is not None:
                outline(True)
                fill()
                outline()
                stroke()
            elif fill_color is not None:
                outline(True)
                fill()
            elif stroke_color is not None:
                outline()
                stroke()
        elif autoclose == "pdf":
            outline(True)
            if fill_color is not None:
                fill()
            if stroke_color is not None:
                stroke()
        else:
            if outline():
                fill()
            stroke()

    # the Drawing (identity transform) and the Group holding the contents, as _drawing_of makes
    # them: their only graphics state is their transform
    in_drawing = dict(base, transform=(1, 0, 0, 1, 0, 0), ctm=mmult(base["ctm"], (1, 0, 0, 1, 0, 0)))
    in_group = dict(in_drawing, transform=transform, ctm=mmult(in_drawing["ctm"], transform))
    for node in contents:
        visit(node, in_group)
    return surface
