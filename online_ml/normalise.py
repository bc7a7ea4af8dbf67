"""Make a drawing look like ``digits`` before it is counted: slant correction, stroke width.

Why: the model only ever saw ``digits`` (optdigits: upright-ish digits written with one pen on
forms). People slant their digits and their pens differ; a slanted "1" fills other 4x4 blocks
than an upright one, a thin pen fills fewer pixels per block. Measured on real handwriting
(``python bench/handwriting.py``): slant correction is the single largest gain.

* :func:`deskew`: the ink's second moments give its slant (how far x moves per row, around the
  centre of mass); a horizontal shear removes it. The classic deskewing of handwritten digits.
* :func:`normalise_width`: the mean stroke width of a binary bitmap is about 2 x area /
  perimeter (a stroke of length L and width w has area wL and perimeter about 2L); growing or
  shrinking the ink by whole pixels brings it near the pen width that drawn strokes get.

>>> ink = np.zeros((20, 20), np.float32)
>>> for r in range(20): ink[r, 14 - r // 2] = 1.0     # a stroke leaning right: "/"
>>> round(slant(ink), 2)
0.5
>>> abs(slant(deskew(ink))) < 0.05
True
>>> bits = np.zeros((64, 64), bool); bits[10:54, 30:32] = True   # a 2 px wide bar
>>> round(stroke_width(bits), 1), round(stroke_width(normalise_width(bits, 10.0)), 1)
(1.9, 7.7)
"""
from __future__ import annotations

import numpy as np

__all__ = ["slant", "deskew", "stroke_width", "normalise_width", "MAX_SLANT"]

#: Shears beyond this (x pixels per row) are not slant but a digit lying down: left alone.
MAX_SLANT = 1.0


def slant(ink: np.ndarray) -> float:
    """x shift per row of the ink (positive: leaning right, top to the right), from moments."""
    return _moments(ink)[0]


def _moments(ink: np.ndarray) -> tuple[float, float]:
    """(slant, row of the centre of mass). The moments come from the ink's row and
    column sums and one matrix-vector product, not from whole index grids (a fifth of the cost
    per drawing; the same sums, in another order)."""
    ink = np.asarray(ink, dtype=np.float64)
    total = float(ink.sum())
    if total <= 0:
        return 0.0, 0.0
    h, w = ink.shape
    dy = np.arange(h, dtype=np.float64)
    dx = np.arange(w, dtype=np.float64)
    rows = ink.sum(axis=1)
    cy = float(rows @ dy) / total
    dx -= float(ink.sum(axis=0) @ dx) / total
    dy -= cy
    mu02 = float(rows @ (dy * dy))
    if mu02 <= 1e-9:
        return 0.0, cy
    # y grows downwards: a stroke leaning right has x falling as y grows, so negate
    return -float(dy @ (ink @ dx)) / mu02, cy


def deskew(ink: np.ndarray, max_slant: float = MAX_SLANT) -> np.ndarray:
    """The ink sheared so its slant is zero (area averaged; the canvas widens to keep all ink)."""
    ink = np.asarray(ink, dtype=np.float32)
    s, cy = _moments(ink)
    if abs(s) < 0.02 or abs(s) > max_slant:
        return ink
    from PIL import Image

    h, w = ink.shape
    extra = int(np.ceil(abs(s) * h)) + 2
    # output x' = x - s * (cy - y) + pad, i.e. input x = x' - pad + s * (cy - y)
    pad = extra / 2
    coeffs = (1.0, -s, s * cy - pad, 0.0, 1.0, 0.0)
    out = float_image(ink).transform((w + extra, h), Image.Transform.AFFINE, coeffs,
                                     resample=Image.Resampling.BILINEAR)
    return float_array(out)


def float_image(a: np.ndarray):
    """A float32 array as a PIL image of mode "F" (what ``Image.fromarray`` gives, without its
    checks: a third of its cost on these small rasters)."""
    from PIL import Image

    a = np.ascontiguousarray(a, dtype=np.float32)
    return Image.frombuffer("F", (a.shape[1], a.shape[0]), a, "raw", "F", 0, 1)


def float_array(img) -> np.ndarray:
    """A mode "F" PIL image as a float32 array (what ``np.asarray`` gives, a third cheaper)."""
    return np.frombuffer(img.tobytes(), dtype=np.float32).reshape(img.size[1], img.size[0])


def stroke_width(bits: np.ndarray) -> float:
    """Mean stroke width (px) of a binary bitmap: 2 x area / perimeter (4-neighbour edges)."""
    bits = np.asarray(bits, dtype=bool)
    area = int(np.count_nonzero(bits))
    if area == 0:
        return 0.0
    padded = _padded(bits)
    perimeter = int(np.count_nonzero(padded[1:, :] != padded[:-1, :])
                    + np.count_nonzero(padded[:, 1:] != padded[:, :-1]))
    return 2.0 * area / max(perimeter, 1)


def _padded(bits: np.ndarray) -> np.ndarray:
    """``bits`` with a ring of paper around it (what ``np.pad(bits, 1)`` gives, at a tenth of
    its cost on these small rasters)."""
    out = np.zeros((bits.shape[0] + 2, bits.shape[1] + 2), dtype=bool)
    out[1:-1, 1:-1] = bits
    return out


def _grow(bits: np.ndarray) -> np.ndarray:
    p = _padded(bits)
    return bits | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]


def _shrink(bits: np.ndarray) -> np.ndarray:
    p = _padded(bits)
    return bits & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]


def normalise_width(bits: np.ndarray, target: float, max_steps: int = 4) -> np.ndarray:
    """Grow or shrink the ink one pixel ring at a time (each about 2 px of width) while that
    brings its stroke width closer to ``target``; never shrinks ink away entirely."""
    bits = np.asarray(bits, dtype=bool)
    width = stroke_width(bits)
    for _ in range(max_steps):
        if abs(width - target) < 1.0:
            break
        candidate = _grow(bits) if width < target else _shrink(bits)
        if not candidate.any():
            break
        new_width = stroke_width(candidate)
        if abs(new_width - target) >= abs(width - target):
            break
        bits, width = candidate, new_width
    return bits
