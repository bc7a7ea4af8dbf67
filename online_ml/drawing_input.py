"""What the board posts, as bytes and ink: data URLs, base64, PNG bitmaps, and the limits.

Why apart from the features: this is the untrusted-input boundary of ``POST /predict`` (sizes
bounded before anything expensive, a clear message for every bad input); the SVG renderer
(online_ml/svg_render.py) and the feature steps (online_ml/features.py) start from its output.

>>> decode_data_url("data:image/svg+xml;base64,PHN2Zy8+")
b'<svg/>'
"""
from __future__ import annotations

import base64
import binascii
import io
import re
import urllib.parse
import warnings

import numpy as np

__all__ = ["FeatureError", "InputTooLarge", "decode_data_url", "looks_like_svg", "png_ink",
           "MAX_INPUT_CHARS", "MAX_DECODED_BYTES", "MAX_DIMENSION", "MAX_PIXELS", "PNG_MAGIC"]

# -- limits --------------------------------------------------------------------------------------
#: Longest accepted input string (data URL or bare base64). A drawing board's SVG is a few KB.
MAX_INPUT_CHARS = 2_000_000
#: Longest accepted decoded image.
MAX_DECODED_BYTES = 1_500_000
#: Largest width/height (px) accepted for a PNG, and largest declared size / coordinate range
#: for an SVG. A board is a few hundred px; anything far beyond that is a mistake or an attack.
MAX_DIMENSION = 10_000
MAX_PIXELS = 16_000_000

_DATA_URL = re.compile(r"^(?:data:)?(?P<mime>[a-z]+/[a-z0-9.+-]+)(?P<params>(?:;[^,;]*)*),",
                       re.IGNORECASE)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class FeatureError(ValueError):
    """The input is not a drawing we can turn into features; the message says what is wrong.

    A ValueError so callers can map it to "400 bad input" without knowing this module.
    """


class InputTooLarge(FeatureError):
    """The input exceeds a size limit (a server answers 413 rather than 400)."""


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


def looks_like_svg(raw: bytes) -> bool:
    head = raw[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"<") and b"<svg" in raw[:MAX_DECODED_BYTES].lower()


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
