"""Parsed SVG to reportlab shapes: svglib for any SVG, and the board's own SVG built directly.

svg_render parses the SVG safely and renders the shapes' ink; this module makes the shapes. The
board (static/board.js) writes one simple kind of SVG, stroked ``M x y L x y ...`` paths with
fixed attributes; :func:`board_drawing` builds exactly svglib's shapes for it without svglib's
general path parser and style cascade (a tenth of the time, tests/test_features.py compares the
shapes). Anything else goes through svglib (:func:`_svglib_drawing`).
"""
from __future__ import annotations

import functools
import logging
import re
import warnings

from .drawing_input import FeatureError

log = logging.getLogger(__name__)

__all__ = ["board_drawing", "SVG_NS"]

SVG_NS = "http://www.w3.org/2000/svg"


def _svglib_drawing(root):
    """svglib's reportlab drawing of a parsed SVG."""
    from svglib.svglib import SvgRenderer

    logging.getLogger("svglib.svglib").setLevel(logging.ERROR)  # it warns about unknown attrs
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return SvgRenderer("").render(root)
    except FeatureError:
        raise
    except Exception as exc:
        log.info("svglib could not convert the SVG: %r", exc)
        raise FeatureError(f"SVG could not be rendered: {exc}") from None


# -- the board's own SVG, converted without svglib --------------------------------------------------
#: What static/board.js writes for each stroke of two points or more (besides ``d``).
_BOARD_STROKE = {"fill": "none", "stroke": "#000000", "stroke-linecap": "round",
                 "stroke-linejoin": "round"}
_BOARD_ROOT_ATTRS = frozenset({"version", "width", "height", "viewBox"})
_SIMPLE_NUMBER = r"-?[0-9]+(?:\.[0-9]+)?"
_SIMPLE_WIDTH = re.compile(_SIMPLE_NUMBER + r"\Z")
_BOARD_D = re.compile(rf"M {_SIMPLE_NUMBER} {_SIMPLE_NUMBER}(?: L {_SIMPLE_NUMBER} {_SIMPLE_NUMBER})*\Z")


def board_drawing(root):
    """The reportlab drawing svglib makes of an SVG exactly as our board (static/board.js) writes
    it (a root with width, height and viewBox; stroked ``<path d="M x y L x y ...">`` elements with
    the board's fixed attributes), built directly: svglib's conversion is ~0.6 ms of a ~2.4 ms
    request, mostly in its general path parser and style cascade, none of which such a drawing
    needs. None for anything else (svglib converts it). The same shapes, attributes, points and
    transforms as svglib's (tests/test_features.py compares them)."""
    if root.tag != f"{{{SVG_NS}}}svg" or not set(root.attrib) <= _BOARD_ROOT_ATTRS or len(root) == 0:
        return None
    strokes = []
    for el in root:
        attrib = el.attrib
        if (el.tag != f"{{{SVG_NS}}}path" or len(el) or len(attrib) != 6
                or any(attrib.get(k) != v for k, v in _BOARD_STROKE.items())):
            return None
        width, d = attrib.get("stroke-width"), attrib.get("d")
        if width is None or d is None or not _SIMPLE_WIDTH.match(width) or not _BOARD_D.match(d):
            return None
        strokes.append((float(width), d))
    size, transform = _board_frame(tuple(sorted(root.attrib.items())))

    from reportlab.graphics.shapes import Drawing, Group, Path
    from reportlab.lib.colors import Color

    path_state, group_state, drawing_state = _board_templates()
    groups = []
    for width, d in strokes:
        tokens = d.split()  # M x y L x y ...: svglib's numbers are float() of the same strings
        points = [float(t) for t in tokens if t not in ("M", "L")]
        operators = [0] + [1] * (len(points) // 2 - 1)  # moveTo, then lineTo
        path = _unchecked(Path, path_state, points=points, operators=operators,
                          strokeWidth=width, strokeColor=Color(0, 0, 0, 1))
        groups.append(_unchecked(Group, group_state, contents=[path]))
    main = _unchecked(Group, group_state, contents=groups, transform=transform, _board=True)
    return _unchecked(Drawing, drawing_state, contents=[main], width=size[0], height=size[1])


def _unchecked(cls, state: dict, **attrs):
    """A reportlab node of ``cls`` with the checked ``state`` of a template and ``attrs`` of our
    own (see :func:`_set`): reportlab's constructors check every attribute and copy the class's
    attribute map for each group, most of the cost of building a board's drawing. The node reads
    the class's attribute map, as a node never extended does."""
    node = cls.__new__(cls)
    node.__dict__.update(state)
    node.__dict__.update(attrs)
    return node


@functools.cache
def _board_templates() -> tuple[dict, dict, dict]:
    """The state of a board stroke's path, of a group and of a drawing, built once through
    reportlab's checked constructors; each board drawing copies it (``board_drawing``)."""
    from reportlab.graphics.shapes import Drawing, Group, Path
    from reportlab.lib.colors import Color

    path = Path([0.0, 0.0, 1.0, 1.0], [0, 1], fillColor=None, fillOpacity=1,
                strokeColor=Color(0, 0, 0, 1), strokeWidth=1.0, strokeLineCap=1,
                strokeLineJoin=1, strokeMiterLimit=0, strokeDashArray=None, strokeOpacity=1,
                fillMode=1)

    def state(node) -> dict:
        return {k: v for k, v in node.__dict__.items()
                if k not in ("points", "operators", "contents", "_attrMap")}
    return state(path), state(Group()), state(Drawing(1, 1))


@functools.lru_cache(maxsize=128)
def _board_frame(root_attrib: tuple) -> tuple[tuple[float, float], tuple]:
    """Size of svglib's drawing and transform of its main group for a root with these attributes
    (svglib's own answer for the root without children; a board keeps its size, so cached)."""
    from lxml import etree

    skeleton = etree.Element(f"{{{SVG_NS}}}svg", attrib=dict(root_attrib), nsmap={None: SVG_NS})
    drawing = _svglib_drawing(skeleton)
    (main,) = drawing.contents
    return (drawing.width, drawing.height), tuple(main.transform)
