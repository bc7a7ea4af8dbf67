"""Turn a drawing from the browser into the 64 features the model was trained on.

The model learns from scikit-learn's ``digits`` data: the UCI optdigits preprocessing took a
handwritten digit, normalised it into a 32x32 bitmap and counted the "on" pixels in each 4x4
block, giving 8x8 integers in 0..16. A drawing from the board must go through the same steps,
otherwise the model sees numbers unlike anything it was trained on: a digit drawn small in a
corner of a wide board would otherwise look like a few faint blocks. What the data shows of
that normalisation, and what this module therefore does: every image fills the 8 rows and at
most about 6 of the 8 columns (``MAX_WIDTH``), and every class carries the same ink, ~310 of the
1024 pixels, a "1" as much as an "8" (``INK_RANGE``: a ``digits`` "1" is a thick bar).

Steps:

1. decode the data URL (SVG from the drawing board / jSignature, or PNG from a canvas);
2. rasterise only the ink, in memory, at a small scale (cost: a few ms per request); SVG
   strokes are redrawn with a round pen whose width is fitted so the digit carries the ink
   ``digits`` digits carry (:func:`strokes_to_features`; the first pen is guessed from the
   strokes' length, so most drawings are rendered once); bitmaps and filled shapes keep theirs;
3. remove the slant (online_ml/normalise.py), crop to the ink, scale the height to 32 px and
   the width with it up to ``MAX_WIDTH``, centre (across by the centre of mass), binarise;
4. count ink pixels per 4x4 block;
5. bitmaps and filled shapes only: a second view, the same with the stroke width normalised;
   the server averages the model's scores over the views (:func:`image_to_views`).

Modules: online_ml/drawing_input.py decodes what the board posts (data URLs, base64, PNG) and
bounds its size; online_ml/svg_render.py parses SVG safely and renders its ink small; this module
turns ink into the 64 counts (with online_ml/normalise.py's slant correction).

>>> import base64
>>> svg = ('<svg xmlns="http://www.w3.org/2000/svg" width="300" height="150">'
...        '<path d="M 150 20 L 150 120" stroke="#000" stroke-width="3" fill="none"/></svg>')
>>> x = image_to_features("data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode())
>>> x.shape, float(x.min()) >= 0, float(x.max()) <= 16
((64,), True, True)
"""
from __future__ import annotations

import numpy as np

from .drawing_input import (
    MAX_INPUT_CHARS,
    PNG_MAGIC,
    FeatureError,
    InputTooLarge,
    decode_data_url,
    looks_like_svg,
    png_ink,
)
from .svg_render import BOX, PEN_WIDTH, RENDER_SIZE, SvgDrawing, svg_ink

__all__ = ["FeatureError", "InputTooLarge", "image_to_features", "image_to_views", "bitmap_views",
           "ink_to_features", "MAX_INPUT_CHARS",
           "decode_data_url", "svg_ink", "png_ink", "warm_up", "strokes_to_features", "fitted_pen",
           "first_pen", "estimated_ink", "INK_RANGE"]

# -- geometry of the optdigits preprocessing ----------------------------------------------------
BLOCK = 4  # block size counted into one feature -> 8x8 features of 0..16
#: Ink (pixels of the 32x32 box, the sum of the 64 features) of ``digits`` images: 5th and 95th
#: percentile over the whole data set (tests/test_features.py checks them). A drawing's strokes
#: are redrawn with a pen that brings its ink into this range.
INK_RANGE = (260.0, 370.0)
#: Widest a digit may be, as a fraction of the box, and up to which width/height it is squeezed
#: to that width while its height fills the box (wider ink keeps its aspect ratio). ``digits``
#: images fill the 8 rows and at most about 6 of the 8 columns: 24/32 was best of 20..32 on the
#: development split of real handwriting (python bench/handwriting.py), and 2.5 of 1.2..2.5.
#: Since 2026-12-05 20/32: the sweep trains a model per width (its variants normalised at that
#: width) and scores traced strokes too, and 20 px leads on dev beyond chance (bitmaps +1.4
#: points, traced strokes +0.8) without a mouse drawing or a 1 fewer (bench/handwriting_width.py).
MAX_WIDTH = 20.0 / 32
SQUASH_LIMIT = 2.5
#: The thinnest and widest pen (fraction of the box) the ink range may ask for, and how many
#: renderings it may cost beyond the first.
PEN_LIMITS = (2.0 / 32, 12.0 / 32)
PEN_TRIES = 2
#: How far inside the range a re-rendering aims (the ink is only about linear in the pen).
INK_AIM = 10.0
#: The ink a pen will give, estimated from the strokes' geometry before rendering
#: (:func:`estimated_ink`), times this is the first pen's guess of the real ink: below
#: ``INK_RANGE``, the estimate's median ratio to the real ink (0.95 on the serving templates, the
#: mouse set and traced real handwriting); above it, lower, since the drawings with the most ink
#: are those whose strokes overlap most, which the estimate counts twice. Chosen on the
#: development split of traced handwriting: the first pen's guess takes the serving templates
#: from 1.48 renderings to 1.05 (bench/request_cost.py) and changes the answers to 17 of 3,000
#: drawings, 10 of them wrong where they were right (not significant: 7 the other way).
ESTIMATE_RATIO = (0.95, 0.88)


# -- public API -----------------------------------------------------------------------------------
def image_to_features(data: str | bytes) -> np.ndarray:
    """64 features (floats 0..16) of a drawing, as the digits data set would have them.

    ``data`` is what the board posts: ``data:image/svg+xml;base64,...`` (also without ``data:``,
    or just the base64 part), or a PNG data URL. Raises FeatureError for anything else.
    """
    return _views(data, augment=False)[0]


def image_to_views(data: str | bytes) -> np.ndarray:
    """The views of a drawing the server may score it by, one row of 64 features each; for the
    learners it earns its place with (``uncertainty.BITMAP_VIEW_LEARNERS``) the answer averages
    the model's decision values over them (test-time augmentation,
    ``uncertainty.view_probabilities``), the others score the first row, which is
    :func:`image_to_features`.

    * Strokes (the board, jSignature): one view, redrawn with the pen fitted to ``digits``' ink.
    * Bitmaps and filled shapes (a PNG, an SVG of a scanned digit), which keep their own ink:
      two, the features and the same with the stroke width normalised (``width=True``). Chosen
      by bench/handwriting.py's computed rule on real handwriting, which is such bitmaps: it
      gains on the development split, keeps the ``digits`` round trip and fits the CPU budget.
      Strokes get no second view: on real handwriting traced into strokes none earns its
      place by the same rule (bench/handwriting_strokes.py; README "Real handwriting").
    """
    return _views(data, augment=True)


def bitmap_views(ink: np.ndarray) -> np.ndarray:
    """The two views of a bitmap's ink (see :func:`image_to_views`), deskewed once for both."""
    from . import normalise

    upright = normalise.deskew(ink)
    return np.stack([ink_to_features(upright, deskew=False),
                     ink_to_features(upright, deskew=False, width=True)])


def _views(data: str | bytes, augment: bool) -> np.ndarray:
    raw = decode_data_url(data)
    if raw.startswith(PNG_MAGIC):
        ink = png_ink(raw)
    elif looks_like_svg(raw):
        drawing = SvgDrawing(raw)
        if drawing.has_strokes:
            return strokes_to_features(drawing)[None]
        ink = drawing.ink(PEN_WIDTH)  # filled shapes: the pen changes nothing
    else:
        raise FeatureError("input is neither an SVG nor a PNG image")
    return bitmap_views(ink) if augment else ink_to_features(ink)[None]


def strokes_to_features(drawing: SvgDrawing, fit_ink: bool = True, **options) -> np.ndarray:
    """Features of an SVG drawing, its strokes redrawn with a pen that gives it as much ink as
    ``digits`` digits carry.

    Every class of ``digits`` carries about the same ink (mean ~310 of 1024 pixels for a "1" as
    for an "8"; 5-95 % range ``INK_RANGE``): the optdigits preprocessing normalised it, so a
    "1" there is a thick bar. Drawn with one pen, a "1" (one short stroke) carries half that
    ink and reads as a faint 3 to the model. So: render with ``PEN_WIDTH``, or with the pen the
    strokes' length says will bring the ink into ``INK_RANGE`` (:func:`first_pen`); if the ink
    is outside the range, re-render with the pen scaled by the ink missing (ink grows about
    linearly with the pen), at most ``PEN_TRIES`` times, keeping the result nearest the range.
    Filled shapes (bitmaps drawn as SVG, ``digits`` drawn back) have no pen: left as they are.
    ``fit_ink=False`` keeps the one pen (as before); ``options`` go to :func:`ink_to_features`.
    """
    if not fit_ink:
        return ink_to_features(drawing.ink(PEN_WIDTH), **options)
    return fitted_pen(drawing, **options)[0]


def fitted_pen(drawing: SvgDrawing, **options) -> tuple[np.ndarray, float]:
    """The features of :func:`strokes_to_features` and the pen (fraction of the box) they were
    drawn with (``PEN_WIDTH`` for filled shapes, which no pen changes). The first pen is
    :func:`first_pen`'s guess, so most drawings are rendered once."""
    if not drawing.has_strokes:
        return ink_to_features(drawing.ink(PEN_WIDTH), **options), PEN_WIDTH
    pen = first_pen(drawing, **options)
    x = ink_to_features(drawing.ink(pen), **options)
    for _ in range(PEN_TRIES):
        miss = _ink_miss(x)
        if miss == 0:
            break
        new_pen = _pen_into_range(pen, float(x.sum()))
        if abs(new_pen - pen) < 1e-6:
            break
        candidate = ink_to_features(drawing.ink(new_pen), **options)
        if abs(_ink_miss(candidate)) >= abs(miss):
            break
        x, pen = candidate, new_pen
    return x, pen


def first_pen(drawing: SvgDrawing, **options) -> float:
    """The pen to render a drawing's strokes with first: ``PEN_WIDTH`` when the ink it will give
    (:func:`estimated_ink`, times ``ESTIMATE_RATIO``) is in ``INK_RANGE`` or cannot be estimated,
    else the pen that would bring it inside, as a re-rendering would choose it from the real ink
    (and a re-rendering still follows if the guess misses)."""
    geometry = drawing.stroke_length()
    if geometry is None:
        return PEN_WIDTH
    ink = estimated_ink(drawing.bounds, *geometry, PEN_WIDTH, **options)
    low, high = ink * ESTIMATE_RATIO[0], ink * ESTIMATE_RATIO[1]
    if low < INK_RANGE[0]:
        return _pen_into_range(PEN_WIDTH, low)
    if high > INK_RANGE[1]:
        return _pen_into_range(PEN_WIDTH, high)
    return PEN_WIDTH


def _pen_into_range(pen: float, ink: float) -> float:
    """The pen that brings ``ink`` (drawn with ``pen``, outside ``INK_RANGE``) ``INK_AIM`` inside
    the range, the ink taken as linear in the pen, within ``PEN_LIMITS``: how a re-rendering and
    the first pen's guess both choose it."""
    target = INK_RANGE[0] + INK_AIM if ink < INK_RANGE[0] else INK_RANGE[1] - INK_AIM
    return min(max(pen * target / max(ink, 1.0), PEN_LIMITS[0]), PEN_LIMITS[1])


def estimated_ink(bounds: tuple[float, float, float, float], length: float, pieces: int,
                  pen: float, fit: str = "height", max_width: float = MAX_WIDTH,
                  **_options) -> float:
    """The ink (pixels of the 32x32 box) strokes of centre-line ``length`` in ``pieces`` within
    ``bounds`` (drawing units) will carry drawn with a round ``pen`` (fraction of the box), from
    geometry alone: each piece covers pen x length plus its round ends in the raster
    ``SvgDrawing.ink`` renders, scaled as :func:`ink_to_features` scales the ink's box (deskewing
    keeps the area). Where strokes overlap, the real ink is less (``ESTIMATE_RATIO``).

    >>> round(estimated_ink((0, 0, 0, 100), 100.0, 1, PEN_WIDTH))  # a "1": one upright stroke
    155
    """
    x0, y0, x1, y1 = bounds
    extent = max(x1 - x0, y1 - y0)
    pen_px = RENDER_SIZE * pen
    scale = (RENDER_SIZE - pen_px) / extent if extent > 1e-9 else 1.0
    area = pen_px * length * scale + pieces * np.pi * pen_px * pen_px / 4
    h, w = (y1 - y0) * scale + pen_px, (x1 - x0) * scale + pen_px
    if fit == "long side":
        across = down = BOX / max(h, w)
    elif w <= SQUASH_LIMIT * h:  # the height fills the box, the width follows up to max_width
        down = BOX / h
        across = min(max_width * BOX, w * down) / w
    else:
        across = down = max_width * BOX / w
    return area * across * down


def _ink_miss(x: np.ndarray) -> float:
    """How far the features' ink is outside ``INK_RANGE`` (negative: too little)."""
    ink = float(x.sum())
    return min(ink - INK_RANGE[0], 0.0) + max(ink - INK_RANGE[1], 0.0)


def warm_up() -> None:
    """Import and exercise the renderer once, so the first user does not wait ~0.2 s for it."""
    svg = (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
           b'<path d="M 1 1 L 9 9" stroke="#000" fill="none"/></svg>')
    strokes_to_features(SvgDrawing(svg))


def ink_to_features(ink: np.ndarray, deskew: bool = True, width: bool = False,
                    centre: str = "mass", fit: str = "height",
                    max_width: float = MAX_WIDTH) -> np.ndarray:
    """The optdigits normalisation of an ink-coverage raster (0 = paper, 1 = ink).

    Remove the slant (``deskew``, online_ml/normalise.py), crop to the ink, scale it (``fit``:
    ``"height"``, the served way, makes the height 32 px and the width follow it up to
    ``max_width`` of the box, squeezing wider digits, as ``digits`` images are: they fill the
    height, their width at most 6 of the 8 blocks; ``"long side"``: the long side 32 px keeping
    the aspect ratio; area averaging either way, so thin strokes keep their weight), centre in
    32x32 (``centre="mass"``: across by the centre of mass, so a 1's flag does not push its stem
    off the centre line where every ``digits`` 1 has it; down by the box; ``"box"``: both by the
    bounding box), binarise at half coverage, bring the stroke width near the pen's (``width``: done at
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
    if fit == "height":
        most = round(max_width * side)
        if w <= SQUASH_LIMIT * h:  # the height fills the box; the width follows, at most `most`
            new_h, new_w = side, min(most, max(1, round(w * side / h)))
        else:  # far wider than tall (a dash): keep the aspect ratio at the widest
            new_h, new_w = min(side, max(1, round(h * most / w))), most
        scale = new_h / h
    elif fit == "long side":
        scale = side / max(h, w)
        new_w = min(side, max(1, round(w * scale)))
        new_h = min(side, max(1, round(h * scale)))
    else:
        raise ValueError(f"fit must be 'height' or 'long side', not {fit!r}")
    if (new_h, new_w) != (h, w):
        from PIL import Image

        resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
        crop = normalise.float_array(
            normalise.float_image(crop).resize((new_w, new_h), resample=resample))
    box = np.zeros((side, side), dtype=np.float32)
    top, left = (side - new_h) // 2, (side - new_w) // 2
    if centre == "mass":
        across = crop.sum(axis=0, dtype=np.float64)
        if across.sum() > 0:
            cx = float((across * np.arange(new_w)).sum() / across.sum())
            left = min(max(int(round(side / 2 - 0.5 - cx)), 0), side - new_w)
    elif centre != "box":
        raise ValueError(f"centre must be 'mass' or 'box', not {centre!r}")
    box[top:top + new_h, left:left + new_w] = crop
    bits = box >= 0.5
    if width:
        bits = normalise.normalise_width(bits, PEN_WIDTH * side)
        bits = bits.reshape(BOX, 2, BOX, 2).mean(axis=(1, 3)) >= 0.5
    counts = bits.reshape(BOX // BLOCK, BLOCK, BOX // BLOCK, BLOCK).sum(axis=(1, 3))
    return counts.reshape(-1).astype(np.float64)
