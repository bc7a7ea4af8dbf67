"""Turn a drawing from the browser into the 64 features the model was trained on.

The model learns from scikit-learn's ``digits`` data: the UCI optdigits preprocessing took a
handwritten digit, normalised it to fill a 32x32 bitmap (aspect ratio kept, centred), and counted
the "on" pixels in each 4x4 block, giving 8x8 integers in 0..16. A drawing from the board must go
through the same steps, otherwise the model sees numbers unlike anything it was trained on: a
digit drawn small in a corner of a wide board would otherwise look like a few faint blocks.

Steps, for both input kinds:

1. decode the data URL (SVG from the drawing board / jSignature, or PNG from a canvas);
2. rasterise only the ink, in memory, at a small scale (cost: a few ms per request);
3. crop to the ink's bounding box, scale the long side to 32 px keeping the aspect ratio, centre
   in 32x32, binarise;
4. count ink pixels per 4x4 block.

SVG strokes are redrawn with a pen of fixed width relative to the digit (``PEN_WIDTH``), so the
features do not depend on how big the digit was drawn with the board's fixed-width pen. PNG
bitmaps are used as they are.

Untrusted input: the SVG is parsed by our own hardened lxml parser (no DTD loading, no entity
resolution, no network) after refusing DOCTYPEs with an internal subset and ENTITY declarations
(XML bombs, external entities) and elements that reference other files (``<image>``, ``<use>``,
``href``). Sizes are bounded before anything expensive happens.

>>> import base64
>>> svg = ('<svg xmlns="http://www.w3.org/2000/svg" width="300" height="150">'
...        '<path d="M 150 20 L 150 120" stroke="#000" stroke-width="3" fill="none"/></svg>')
>>> x = image_to_features("data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode())
>>> x.shape, float(x.min()) >= 0, float(x.max()) <= 16
((64,), True, True)
"""
from __future__ import annotations

import base64
import binascii
import io
import logging
import math
import re
import urllib.parse
import warnings

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["FeatureError", "InputTooLarge", "image_to_features", "ink_to_features", "MAX_INPUT_CHARS"]

# -- limits --------------------------------------------------------------------------------------
#: Longest accepted input string (data URL or bare base64). A drawing board's SVG is a few KB.
MAX_INPUT_CHARS = 2_000_000
#: Longest accepted decoded image.
MAX_DECODED_BYTES = 1_500_000
#: Most SVG elements accepted: svglib converts one in ~0.4 ms; a drawing has one per stroke.
MAX_SVG_ELEMENTS = 500
#: Most numbers in path data / point lists (x and y count separately): rendering cost grows with
#: them (measured: 3000 random board-wide segments ~100 ms, a smooth 3000-point stroke ~30 ms).
#: A digit drawn with a mouse or pen has a few hundred points.
MAX_PATH_NUMBERS = 6_000
#: Largest width/height (px) accepted for a PNG, and largest declared size / coordinate range
#: for an SVG. A board is a few hundred px; anything far beyond that is a mistake or an attack.
MAX_DIMENSION = 10_000
MAX_PIXELS = 16_000_000

# -- geometry of the optdigits preprocessing ----------------------------------------------------
BOX = 32  # normalised bitmap size
BLOCK = 4  # block size counted into one feature -> 8x8 features of 0..16
#: Long side of the ink in the SVG raster (2x supersampling of the 32 px box, then area average).
RENDER_SIZE = 64
#: Pen width for SVG strokes, as a fraction of the 32 px box. 5 px makes a typical drawn digit
#: carry as much ink as the digits data set does on average (~310 of 1024 pixels); thinner pens
#: made drawn digits look faint to the model (measured on stroke templates: 70% right at 2-3 px,
#: 82% at 5 px).
PEN_WIDTH = 5.0 / BOX
#: Empty border (px) around the ink in the SVG raster, so antialiasing is never clipped.
MARGIN = 2

SVG_NS = "http://www.w3.org/2000/svg"
# Elements refused with a message: they fetch other documents/files, run code, or need fonts.
_REFUSED_ELEMENTS = {"image", "use", "foreignobject", "script", "text", "tspan", "textpath",
                     "iframe", "feimage"}
# The one DOCTYPE form accepted: an external public identifier and no internal subset. jSignature
# (the tutorial's board) always emits the SVG 1.1 one; we never load it.
_SAFE_DOCTYPE = re.compile(
    r"<!DOCTYPE\s+svg(\s+PUBLIC\s+(\"[^\"<>\[\]]*\"|'[^'<>\[\]]*')\s+(\"[^\"<>\[\]]*\"|'[^'<>\[\]]*'))?\s*>",
    re.IGNORECASE)
_DATA_URL = re.compile(r"^(?:data:)?(?P<mime>[a-z]+/[a-z0-9.+-]+)(?P<params>(?:;[^,;]*)*),",
                       re.IGNORECASE)
_NUMBER = re.compile(r"[-+]?(?:[0-9]*\.[0-9]+|[0-9]+\.?)(?:[eE][-+]?[0-9]+)?")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class FeatureError(ValueError):
    """The input is not a drawing we can turn into features; the message says what is wrong.

    A ValueError so callers can map it to "400 bad input" without knowing this module.
    """


class InputTooLarge(FeatureError):
    """The input exceeds a size limit (a server answers 413 rather than 400)."""


# -- public API -----------------------------------------------------------------------------------
def image_to_features(data: str | bytes) -> np.ndarray:
    """64 features (floats 0..16) of a drawing, as the digits data set would have them.

    ``data`` is what the board posts: ``data:image/svg+xml;base64,...`` (also without ``data:``,
    or just the base64 part), or a PNG data URL. Raises FeatureError for anything else.
    """
    raw = decode_data_url(data)
    if raw.startswith(PNG_MAGIC):
        ink = png_ink(raw)
    elif _looks_like_svg(raw):
        ink = svg_ink(raw)
    else:
        raise FeatureError("input is neither an SVG nor a PNG image")
    return ink_to_features(ink)


def warm_up() -> None:
    """Import and exercise the renderer once, so the first user does not wait ~0.2 s for it."""
    svg = (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
           b'<path d="M 1 1 L 9 9" stroke="#000" fill="none"/></svg>')
    ink_to_features(svg_ink(svg))


def decode_data_url(data: str | bytes) -> bytes:
    """Bytes of the image inside a data URL, a ``mime;base64,`` string or bare base64.

    Lenient in what a browser form may do to base64 (line breaks, '+' turned into ' ', missing
    padding), strict about size and alphabet, so a bad input fails here with a clear message.
    """
    if isinstance(data, bytes):
        try:
            data = data.decode("ascii")
        except UnicodeDecodeError:
            raise FeatureError("input is not text: expected a data URL or base64 string") from None
    if not isinstance(data, str):
        raise FeatureError(f"input must be a string, not {type(data).__name__}")
    if len(data) > MAX_INPUT_CHARS:
        raise InputTooLarge(f"input too large: {len(data)} characters (limit {MAX_INPUT_CHARS})")
    text = data.strip()
    if not text:
        raise FeatureError("empty input: no image data")
    is_base64 = True
    m = _DATA_URL.match(text[:300])
    if m:
        params = [p.strip().lower() for p in m.group("params").split(";") if p.strip()]
        is_base64 = "base64" in params
        mime = m.group("mime").lower()
        if mime not in ("image/svg+xml", "image/png"):
            raise FeatureError(f"unsupported image type {mime!r}: expected image/svg+xml or image/png")
        text = text[m.end():]
    elif text.lower().startswith("data:"):
        raise FeatureError("malformed data URL: expected data:image/svg+xml;base64,<data>")
    if not is_base64:  # data:image/svg+xml,<svg ...> (percent-encoded text)
        raw = urllib.parse.unquote_to_bytes(text)
    else:
        raw = _b64decode(text)
    if len(raw) > MAX_DECODED_BYTES:
        raise InputTooLarge(f"image too large: {len(raw)} bytes (limit {MAX_DECODED_BYTES})")
    if not raw:
        raise FeatureError("empty input: no image data")
    return raw


def ink_to_features(ink: np.ndarray, deskew: bool = True, width: bool = False) -> np.ndarray:
    """The optdigits normalisation of an ink-coverage raster (0 = paper, 1 = ink).

    Remove the slant (``deskew``, online_ml/normalise.py), crop to the ink, scale the long side to
    32 px keeping the aspect ratio (area averaging, so thin strokes keep their weight), centre in
    32x32, binarise at half coverage, bring the stroke width near the pen's (``width``: done at
    twice the resolution, then halved), count ink pixels in each 4x4 block. Position and size of
    the drawing, and the size of the board, therefore do not matter.
    """
    from . import normalise

    ink = np.asarray(ink, dtype=np.float32)
    if deskew:
        ink = normalise.deskew(ink)
    mask = ink >= 0.5
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        raise FeatureError("empty drawing: no ink found")
    cols = np.flatnonzero(mask.any(axis=0))
    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    side = BOX * (2 if width else 1)
    h, w = crop.shape
    scale = side / max(h, w)
    new_w = min(side, max(1, round(w * scale)))
    new_h = min(side, max(1, round(h * scale)))
    if (new_h, new_w) != (h, w):
        from PIL import Image

        img = Image.fromarray(np.ascontiguousarray(crop))  # float32 -> mode "F"
        resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
        crop = np.asarray(img.resize((new_w, new_h), resample=resample), dtype=np.float32)
    box = np.zeros((side, side), dtype=np.float32)
    top, left = (side - new_h) // 2, (side - new_w) // 2
    box[top:top + new_h, left:left + new_w] = crop
    bits = box >= 0.5
    if width:
        bits = normalise.normalise_width(bits, PEN_WIDTH * side)
        bits = bits.reshape(BOX, 2, BOX, 2).mean(axis=(1, 3)) >= 0.5
    counts = bits.reshape(BOX // BLOCK, BLOCK, BOX // BLOCK, BLOCK).sum(axis=(1, 3))
    return counts.reshape(-1).astype(np.float64)


# -- base64 ---------------------------------------------------------------------------------------
def _b64decode(text: str) -> bytes:
    text = re.sub(r"[\r\n\t]", "", text).replace(" ", "+")  # form encoding may turn '+' into ' '
    if "-" in text or "_" in text:  # URL-safe alphabet
        text = text.replace("-", "+").replace("_", "/")
    if len(text) % 4:
        if len(text) % 4 == 1:
            raise FeatureError("invalid base64: truncated data")
        text += "=" * (4 - len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        bad = re.search(r"[^A-Za-z0-9+/=]", text)
        where = f" (unexpected character {bad.group()!r})" if bad else ""
        raise FeatureError(f"invalid base64 image data{where}") from None


def _looks_like_svg(raw: bytes) -> bool:
    head = raw[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"<") and b"<svg" in raw[:MAX_DECODED_BYTES].lower()


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
    numbers = 0
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
                numbers += len(_NUMBER.findall(value))
                if numbers > MAX_PATH_NUMBERS:
                    raise FeatureError(f"SVG too complex: more than {MAX_PATH_NUMBERS} numbers "
                                       "in its paths")
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
            setattr(node, attr, colors.white)
        else:
            setattr(node, attr, colors.black)
            is_ink = True
    for attr in ("fillOpacity", "strokeOpacity"):
        if getattr(node, attr, None) is not None:
            setattr(node, attr, 1)
    if is_ink:
        ink_shapes.append((node, ctm))


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


def svg_ink(raw: bytes, pen_width: float | None = PEN_WIDTH) -> np.ndarray:
    """Rasterise an SVG drawing's ink so its long side is about ``RENDER_SIZE`` px.

    Rendering straight at the small target scale (instead of at the board's size and shrinking
    afterwards) keeps the cost at about a millisecond whatever the board size. With
    ``pen_width`` (fraction of the 32 px box) every stroke is redrawn with that round pen;
    ``None`` keeps the drawing's own stroke widths, scaled with the drawing.
    """
    root = _parse_svg(raw)

    from reportlab.graphics.shapes import Drawing, Group
    from svglib.svglib import SvgRenderer

    logging.getLogger("svglib.svglib").setLevel(logging.ERROR)  # it warns about unknown attrs
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            drawing = SvgRenderer("").render(root)
    except FeatureError:
        raise
    except Exception as exc:
        log.info("svglib could not convert the SVG: %r", exc)
        raise FeatureError(f"SVG could not be rendered: {exc}") from None

    ink_shapes: list = []
    _prepare_shapes(drawing, (1, 0, 0, 1, 0, 0), ink_shapes)
    bounds = [b for b in (_shape_bounds(s, m) for s, m in ink_shapes) if b is not None]
    if not bounds:
        raise FeatureError("empty drawing: the SVG contains no visible strokes or shapes")
    x0 = min(b[0] for b in bounds)
    y0 = min(b[1] for b in bounds)
    x1 = max(b[2] for b in bounds)
    y1 = max(b[3] for b in bounds)
    if not all(math.isfinite(v) and abs(v) <= 100 * MAX_DIMENSION for v in (x0, y0, x1, y1)):
        raise FeatureError("SVG coordinates are absurd (far outside any drawing board)")
    extent = max(x1 - x0, y1 - y0)

    pen_px = RENDER_SIZE * pen_width if pen_width else 0.0
    if extent <= 1e-9:  # a single dot: only the pen gives it a size
        scale = 1.0
        if not pen_px:
            raise FeatureError("empty drawing: the ink has no extent")
    else:
        scale = (RENDER_SIZE - pen_px) / extent
    if pen_px:
        for shape, ctm in ink_shapes:
            if getattr(shape, "strokeColor", None) is not None and hasattr(shape, "strokeWidth"):
                # the pen is fixed in output pixels; undo the shape's own transforms and ours
                local = math.sqrt(abs(ctm[0] * ctm[3] - ctm[1] * ctm[2])) or 1.0
                shape.strokeWidth = pen_px / (scale * local)
                shape.strokeLineCap = 1
                shape.strokeLineJoin = 1
                shape.strokeDashArray = None
    else:  # own stroke widths: leave room for them (we do not know them exactly)
        widest = max((getattr(s, "strokeWidth", 0) or 0) * math.sqrt(abs(m[0] * m[3] - m[1] * m[2]))
                     for s, m in ink_shapes)
        pen_px = min(widest * scale, RENDER_SIZE)

    pad = pen_px / 2 + MARGIN
    width = int(math.ceil((x1 - x0) * scale + 2 * pad))
    height = int(math.ceil((y1 - y0) * scale + 2 * pad))
    outer = Group(*drawing.contents)
    outer.transform = (scale, 0, 0, scale, pad - scale * x0, pad - scale * y0)
    small = Drawing(width, height)
    small.add(outer)
    return _rasterise(small)


def _rasterise(drawing) -> np.ndarray:
    """Ink coverage (1 = black) of a reportlab drawing rendered at 1 unit = 1 px with cairo."""
    from reportlab.graphics import renderPM

    try:
        canvas = renderPM.drawToPMCanvas(drawing, dpi=72, bg=0xFFFFFF, backend="rlPyCairo")
    except Exception as exc:
        log.info("rendering failed: %r", exc)
        raise FeatureError(f"SVG could not be rendered: {exc}") from None
    gs = getattr(canvas, "_gs", None)
    surface = getattr(gs, "surface", None)
    if surface is not None:
        # Read cairo's buffer directly: rlPyCairo's pixBuf converts pixel by pixel in Python.
        surface.flush()
        stride = surface.get_stride()
        buf = np.frombuffer(surface.get_data(), dtype=np.uint8)
        buf = buf.reshape(surface.get_height(), stride)[:, : surface.get_width() * 4]
        green = buf.reshape(surface.get_height(), surface.get_width(), 4)[:, :, 1]
    else:  # another backend: go through PIL
        green = np.asarray(canvas.toPIL().convert("L"))
    return 1.0 - green.astype(np.float32) / 255.0


# -- PNG ----------------------------------------------------------------------------------------------
def png_ink(raw: bytes) -> np.ndarray:
    """Ink coverage of a PNG: dark or opaque pixels on a light or transparent background."""
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(raw), formats=["PNG"])
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise FeatureError(f"PNG could not be read: {exc}") from None
    w, h = img.size
    if w <= 0 or h <= 0 or w > MAX_DIMENSION or h > MAX_DIMENSION or w * h > MAX_PIXELS:
        raise FeatureError(f"PNG dimensions {w}x{h} are absurd (limit {MAX_DIMENSION} px a side, "
                           f"{MAX_PIXELS} pixels)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            gray = Image.alpha_composite(paper, rgba).convert("L")
        else:
            gray = img.convert("L")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as exc:
        raise FeatureError(f"PNG could not be decoded: {exc}") from None
    ink = 1.0 - np.asarray(gray, dtype=np.float32) / 255.0
    border = np.concatenate([ink[0], ink[-1], ink[:, 0], ink[:, -1]])
    if np.median(border) > 0.5:  # light strokes on a dark board
        ink = 1.0 - ink
    return ink
