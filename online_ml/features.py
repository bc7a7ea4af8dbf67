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
   ``digits`` digits carry (:func:`strokes_to_features`); bitmaps and filled shapes keep theirs;
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
from .svg_render import BOX, PEN_WIDTH, SvgDrawing, svg_ink

__all__ = ["FeatureError", "InputTooLarge", "image_to_features", "image_to_views", "bitmap_views",
           "ink_to_features", "MAX_INPUT_CHARS",
           "decode_data_url", "svg_ink", "png_ink", "warm_up", "strokes_to_features", "fitted_pen",
           "INK_RANGE"]

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
MAX_WIDTH = 24.0 / 32
SQUASH_LIMIT = 2.5
#: The thinnest and widest pen (fraction of the box) the ink range may ask for, and how many
#: renderings it may cost beyond the first.
PEN_LIMITS = (2.0 / 32, 12.0 / 32)
PEN_TRIES = 2
#: How far inside the range a re-rendering aims (the ink is only about linear in the pen).
INK_AIM = 10.0


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
    ink and reads as a faint 3 to the model. So: render with ``PEN_WIDTH``; if the ink is
    outside ``INK_RANGE``, re-render with the pen scaled by the ink missing (ink grows about
    linearly with the pen), at most ``PEN_TRIES`` times, keeping the result nearest the range.
    Filled shapes (bitmaps drawn as SVG, ``digits`` drawn back) have no pen: left as they are.
    ``fit_ink=False`` keeps the one pen (as before); ``options`` go to :func:`ink_to_features`.
    """
    if not fit_ink:
        return ink_to_features(drawing.ink(PEN_WIDTH), **options)
    return fitted_pen(drawing, **options)[0]


def fitted_pen(drawing: SvgDrawing, **options) -> tuple[np.ndarray, float]:
    """The features of :func:`strokes_to_features` and the pen (fraction of the box) they were
    drawn with (``PEN_WIDTH`` for filled shapes, which no pen changes)."""
    pen = PEN_WIDTH
    x = ink_to_features(drawing.ink(pen), **options)
    if not drawing.has_strokes:
        return x, pen
    for _ in range(PEN_TRIES):
        miss = _ink_miss(x)
        if miss == 0:
            break
        target = INK_RANGE[0] + INK_AIM if miss < 0 else INK_RANGE[1] - INK_AIM
        new_pen = min(max(pen * target / max(float(x.sum()), 1.0), PEN_LIMITS[0]), PEN_LIMITS[1])
        if abs(new_pen - pen) < 1e-6:
            break
        candidate = ink_to_features(drawing.ink(new_pen), **options)
        if abs(_ink_miss(candidate)) >= abs(miss):
            break
        x, pen = candidate, new_pen
    return x, pen


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

        img = Image.fromarray(np.ascontiguousarray(crop))  # float32 -> mode "F"
        resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
        crop = np.asarray(img.resize((new_w, new_h), resample=resample), dtype=np.float32)
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
