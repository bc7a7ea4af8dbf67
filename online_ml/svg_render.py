"""SVG drawings rendered to ink, safely and small: the board's strokes redrawn with one pen.

Untrusted input: the SVG is parsed by our own hardened lxml parser (no DTD loading, no entity
resolution, no network) after refusing DOCTYPEs with an internal subset and ENTITY declarations
(XML bombs, external entities) and elements that reference other files (``<image>``, ``<use>``,
``href``). Sizes are bounded before anything expensive happens. Rendering goes straight to a
small raster (``RENDER_SIZE``), so its cost does not grow with the board. svglib converts the SVG
to reportlab shapes (the board's own SVG is built directly: online_ml/svg_shapes.py); groups and
paths (all the board, jSignature and handwriting drawings) are then drawn on cairo directly, with
the calls reportlab's renderPM would make (the same pixels, a third of the cost;
online_ml/raster.py); other shapes go through renderPM.

>>> svg = (b'<svg xmlns="http://www.w3.org/2000/svg" width="300" height="150">'
...        b'<path d="M 150 20 L 150 120" stroke="#000" stroke-width="3" fill="none"/></svg>')
>>> ink = svg_ink(svg)
>>> max(ink.shape) <= RENDER_SIZE + 2 * MARGIN + 1, float(ink.max()) > 0.9
(True, True)
"""
from __future__ import annotations

import logging
import math
import re

import numpy as np

from .drawing_input import MAX_DIMENSION, FeatureError
from .raster import rasterise as _rasterise
from .svg_shapes import _svglib_drawing
from .svg_shapes import board_drawing as _board_drawing

log = logging.getLogger(__name__)

__all__ = ["svg_ink", "SvgDrawing", "RENDER_SIZE", "PEN_WIDTH", "MARGIN", "MAX_SVG_ELEMENTS",
           "MAX_PATH_NUMBERS"]

#: Most SVG elements accepted: svglib converts one in ~0.4 ms; a drawing has one per stroke.
MAX_SVG_ELEMENTS = 500
#: Most numbers in path data / point lists (x and y count separately): rendering cost grows with
#: them (measured: 3000 random board-wide segments ~100 ms, a smooth 3000-point stroke ~30 ms).
#: A digit drawn with a mouse or pen has a few hundred points.
MAX_PATH_NUMBERS = 6_000

BOX = 32  # normalised bitmap size
#: Long side of the ink in the SVG raster (2x supersampling of the 32 px box, then area average).
RENDER_SIZE = 64
#: Pen width for SVG strokes, as a fraction of the 32 px box. 5 px makes a typical drawn digit
#: carry as much ink as the digits data set does on average (~310 of 1024 pixels); thinner pens
#: made drawn digits look faint to the model (measured on stroke templates: 70% right at 2-3 px,
#: 82% at 5 px).
PEN_WIDTH = 5.0 / BOX
#: Empty border (px) around the ink in the SVG raster, so antialiasing is never clipped.
MARGIN = 2

# Elements refused with a message: they fetch other documents/files, run code, or need fonts.
_REFUSED_ELEMENTS = {"image", "use", "foreignobject", "script", "text", "tspan", "textpath",
                     "iframe", "feimage"}
# The one DOCTYPE form accepted: an external public identifier and no internal subset. jSignature
# (the tutorial's board) always emits the SVG 1.1 one; we never load it.
_SAFE_DOCTYPE = re.compile(
    r"<!DOCTYPE\s+svg(\s+PUBLIC\s+(\"[^\"<>\[\]]*\"|'[^'<>\[\]]*')\s+(\"[^\"<>\[\]]*\"|'[^'<>\[\]]*'))?\s*>",
    re.IGNORECASE)
_NUMBER = re.compile(r"[-+]?(?:[0-9]*\.[0-9]+|[0-9]+\.?)(?:[eE][-+]?[0-9]+)?")


# -- SVG --------------------------------------------------------------------------------------------
def _parse_svg(raw: bytes):
    """Parse untrusted SVG bytes safely; return the lxml root element."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FeatureError("SVG is not valid UTF-8 text") from None
    lowered = text.lower()
    if "<!entity" in lowered:
        raise FeatureError("SVG refused: XML ENTITY declarations are not allowed")
    if "<!doctype" in lowered:
        m = _SAFE_DOCTYPE.search(text)
        if m is None or lowered.count("<!doctype") != 1:
            raise FeatureError(
                "SVG refused: DOCTYPE declarations with an internal subset or a non-SVG "
                "doctype are not allowed")
        text = text[:m.start()] + text[m.end():]  # never loaded anyway; drop it
    # lxml refuses str input with an encoding declaration; give it bytes
    text = re.sub(r"^\s*<\?xml[^>]*\?>", "", text)

    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             dtd_validation=False, huge_tree=False, remove_comments=True,
                             remove_pis=True, recover=False)
    try:
        root = etree.fromstring(text.encode("utf-8"), parser)
    except etree.XMLSyntaxError as exc:
        raise FeatureError(f"SVG is not well-formed XML: {exc}") from None
    if root is None or not isinstance(root.tag, str) or etree.QName(root).localname != "svg":
        raise FeatureError("input is XML but not an SVG image (root element is not <svg>)")
    count = 0
    numbers = 0  # numbers counted in path data
    pending: list[str] = []  # path data not counted yet, and its characters
    chars = 0
    for el in root.iter():
        count += 1
        if count > MAX_SVG_ELEMENTS:
            raise FeatureError(f"SVG too complex: more than {MAX_SVG_ELEMENTS} elements")
        if not isinstance(el.tag, str):
            continue
        name = etree.QName(el).localname.lower()
        if name in _REFUSED_ELEMENTS:
            raise FeatureError(f"SVG refused: <{name}> elements are not allowed in a drawing")
        for attr, value in el.attrib.items():
            local = etree.QName(attr).localname.lower()
            if local == "href":
                raise FeatureError("SVG refused: references to other documents (href) are not allowed")
            if local in ("d", "points"):
                # a number takes a character at least: count them (the regex is a third of a
                # board drawing's parse) only once the characters could hold too many
                pending.append(value)
                chars += len(value)
                if numbers + chars > MAX_PATH_NUMBERS:
                    numbers += sum(len(_NUMBER.findall(v)) for v in pending)
                    pending, chars = [], 0
                    if numbers > MAX_PATH_NUMBERS:
                        raise FeatureError(f"SVG too complex: more than {MAX_PATH_NUMBERS} "
                                           "numbers in its paths")
    _check_declared_size(root)
    return root


def _check_declared_size(root) -> None:
    for attr in ("width", "height"):
        value = root.get(attr)
        if value:
            m = re.match(r"\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)", value)
            number = float(m.group(1)) if m else 0.0
            if not math.isfinite(number) or abs(number) > MAX_DIMENSION:
                raise FeatureError(f"SVG {attr}={value!r} is absurd (limit {MAX_DIMENSION})")
    view_box = root.get("viewBox")
    if view_box:
        try:
            numbers = [float(v) for v in re.split(r"[\s,]+", view_box.strip())]
        except ValueError:
            raise FeatureError(f"SVG viewBox={view_box!r} is not four numbers") from None
        if len(numbers) != 4 or not all(math.isfinite(v) and abs(v) <= 100 * MAX_DIMENSION
                                        for v in numbers):
            raise FeatureError(f"SVG viewBox={view_box!r} is absurd")


def _mul(a: tuple, b: tuple) -> tuple:
    """Compose affine transforms (a after b), reportlab's 6-tuple convention."""
    a0, a1, a2, a3, a4, a5 = a
    b0, b1, b2, b3, b4, b5 = b
    return (a0 * b0 + a2 * b1, a1 * b0 + a3 * b1, a0 * b2 + a2 * b3, a1 * b2 + a3 * b3,
            a0 * b4 + a2 * b5 + a4, a1 * b4 + a3 * b5 + a5)


def _set(shape, **attrs) -> None:
    """Set attributes of a reportlab shape to values of our own that its checks would pass (a
    pen width, a cap, black or white): reportlab checks every assignment (``validateSetattr``,
    ~15 µs each here), a tenth of a board request's CPU for values known to be valid."""
    shape.__dict__.update(attrs)


def _is_paper(color) -> bool:
    """Near-white colours are paper (backgrounds, erasers); everything else is ink."""
    try:
        r, g, b = float(color.red), float(color.green), float(color.blue)
    except AttributeError:
        return False
    alpha = float(getattr(color, "alpha", 1.0))
    return alpha < 0.2 or 0.299 * r + 0.587 * g + 0.114 * b > 0.8


def _prepare_shapes(node, ctm: tuple, ink_shapes: list) -> None:
    """Make every shape pure ink (black) or paper (white) and collect the ink shapes.

    Colours and opacity of the user's pen must not change the features; only geometry does.
    """
    from reportlab.graphics.shapes import Group
    from reportlab.lib import colors

    if isinstance(node, Group):
        ctm = _mul(ctm, tuple(node.transform))
        for child in node.contents:
            _prepare_shapes(child, ctm, ink_shapes)
        return
    is_ink = False
    for attr in ("fillColor", "strokeColor"):
        color = getattr(node, attr, None)
        if color is None:
            continue
        if _is_paper(color):
            _set(node, **{attr: colors.white})
        else:
            _set(node, **{attr: colors.black})
            is_ink = True
    for attr in ("fillOpacity", "strokeOpacity"):
        if getattr(node, attr, None) is not None:
            _set(node, **{attr: 1})
    if is_ink:
        ink_shapes.append((node, ctm))


def _is_stroked(shape) -> bool:
    """Whether a pen draws the shape: it has a stroke colour and a stroke width."""
    return getattr(shape, "strokeColor", None) is not None and hasattr(shape, "strokeWidth")


def _shape_bounds(shape, ctm: tuple) -> tuple[float, float, float, float] | None:
    try:
        b = shape.getBounds()
    except Exception:  # a shape reportlab cannot measure: ignore it for the bbox
        return None
    if b is None:
        return None
    x0, y0, x1, y1 = b
    xs, ys = [], []
    for x, y in ((x0, y0), (x0, y1), (x1, y0), (x1, y1)):
        xs.append(ctm[0] * x + ctm[2] * y + ctm[4])
        ys.append(ctm[1] * x + ctm[3] * y + ctm[5])
    return min(xs), min(ys), max(xs), max(ys)


class SvgDrawing:
    """An SVG drawing parsed and converted once, whose ink can be rendered with several pens.

    Why: the features choose the pen from the ink a first rendering gives (a "1" is one short
    stroke and needs a wider pen than an "8" to carry the ink ``digits`` digits carry), and
    parsing and converting is half the cost of a rendering.
    """

    def __init__(self, raw: bytes):
        root = _parse_svg(raw)
        board = _board_drawing(root)
        if board is not None:
            self.drawing = board
        else:
            self.drawing = _svglib_drawing(root)

        self.ink_shapes: list = []
        _prepare_shapes(self.drawing, (1, 0, 0, 1, 0, 0), self.ink_shapes)
        bounds = [b for b in (_shape_bounds(s, m) for s, m in self.ink_shapes) if b is not None]
        if not bounds:
            raise FeatureError("empty drawing: the SVG contains no visible strokes or shapes")
        self.bounds = (min(b[0] for b in bounds), min(b[1] for b in bounds),
                       max(b[2] for b in bounds), max(b[3] for b in bounds))
        if not all(math.isfinite(v) and abs(v) <= 100 * MAX_DIMENSION for v in self.bounds):
            raise FeatureError("SVG coordinates are absurd (far outside any drawing board)")
        #: whether a pen changes anything: strokes, not only filled shapes
        self.has_strokes = any(_is_stroked(s) for s, _ in self.ink_shapes)

    def stroke_length(self) -> tuple[float, int] | None:
        """The total length of the stroked paths' centre lines (drawing units, a curve by its
        chord) and how many pieces (sub-paths) they make, or None when a stroked shape is not a
        path (``<rect>``, ``<circle>``, ...: no estimate). What the pen's ink is estimated from
        before rendering (``features.estimated_ink``)."""
        from reportlab.graphics.shapes import Path

        length, pieces = 0.0, 0
        for shape, m in self.ink_shapes:
            if not _is_stroked(shape):
                continue
            if not isinstance(shape, Path):
                return None
            points, i = shape.points, 0
            start = last = None
            for op in shape.operators:
                if op == 3:  # closePath: back to the piece's start
                    if start is not None and last is not None:
                        length += math.dist(start, last)
                        last = start
                    continue
                i += 6 if op == 2 else 2  # curveTo has two control points before its end
                x, y = points[i - 2], points[i - 1]
                here = (m[0] * x + m[2] * y + m[4], m[1] * x + m[3] * y + m[5])
                if op == 0:
                    start, pieces = here, pieces + 1
                elif last is not None:
                    length += math.dist(last, here)
                last = here
        return length, pieces

    def ink(self, pen_width: float | None = PEN_WIDTH) -> np.ndarray:
        """The ink, rasterised so its long side is about ``RENDER_SIZE`` px.

        Rendering straight at the small target scale (instead of at the board's size and
        shrinking afterwards) keeps the cost at about a millisecond whatever the board size. With
        ``pen_width`` (fraction of the 32 px box) every stroke is redrawn with that round pen;
        ``None`` keeps the drawing's own stroke widths, scaled with the drawing.
        """
        x0, y0, x1, y1 = self.bounds
        extent = max(x1 - x0, y1 - y0)
        pen_px = RENDER_SIZE * pen_width if pen_width else 0.0
        if extent <= 1e-9:  # a single dot: only the pen gives it a size
            scale = 1.0
            if not pen_px:
                raise FeatureError("empty drawing: the ink has no extent")
        else:
            scale = (RENDER_SIZE - pen_px) / extent
        if pen_px:
            for shape, ctm in self.ink_shapes:
                if _is_stroked(shape):
                    # the pen is fixed in output pixels; undo the shape's own transforms and ours
                    local = math.sqrt(abs(ctm[0] * ctm[3] - ctm[1] * ctm[2])) or 1.0
                    _set(shape, strokeWidth=pen_px / (scale * local), strokeLineCap=1,
                         strokeLineJoin=1, strokeDashArray=None)
        else:  # own stroke widths: leave room for them (we do not know them exactly)
            widest = max((getattr(s, "strokeWidth", 0) or 0) * math.sqrt(abs(m[0] * m[3] - m[1] * m[2]))
                         for s, m in self.ink_shapes)
            pen_px = min(widest * scale, RENDER_SIZE)

        pad = pen_px / 2 + MARGIN
        width = int(math.ceil((x1 - x0) * scale + 2 * pad))
        height = int(math.ceil((y1 - y0) * scale + 2 * pad))
        transform = (scale, 0, 0, scale, pad - scale * x0, pad - scale * y0)
        return _rasterise(self.drawing.contents, transform, width, height)


def svg_ink(raw: bytes, pen_width: float | None = PEN_WIDTH) -> np.ndarray:
    """An SVG drawing's ink, rendered once (see :meth:`SvgDrawing.ink`)."""
    return SvgDrawing(raw).ink(pen_width)
