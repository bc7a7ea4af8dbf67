"""Real handwriting as strokes: a scanned digit thinned to its skeleton and traced into polylines.

Why: the board sends strokes, and its path through the server (a pen fitted to the ink, the
board's own SVG converter) differs from a bitmap's. No data set a reachable registry ships has
real pen trajectories of digits, but the bitmaps of real handwriting have the strokes' shapes:
thinned to one-pixel lines (Zhang and Suen's thinning, 1984) and walked from end to end, each
becomes the polylines a person's pen would about have drawn. Not the order or speed of a real
pen, and a crossing can come out as a small spur; the shapes are people's.

* :func:`thin`: the skeleton of a binary image (Zhang-Suen, both sub-iterations, until stable).
* :func:`trace`: polylines covering every link of the skeleton's 8-connected graph once, from
  the line ends first, going as straight as it can at crossings.
* :func:`smooth`: a light (1, 2, 1) smoothing of a polyline, so a traced stroke is not a staircase
  of pixel centres.

>>> img = np.zeros((12, 12), bool); img[2:10, 4:7] = True        # a bar 3 px wide: a "1"
>>> lines = trace(thin(img))
>>> len(lines), sorted({c for line in lines for _, c in line})
(1, [5])
>>> ring = np.zeros((12, 12), bool); ring[2:10, 2:10] = True; ring[4:8, 4:8] = False
>>> [len(line) > 8 and line[0] == line[-1] for line in trace(thin(ring))]   # a "0": one loop
[True]
"""
from __future__ import annotations

import numpy as np

__all__ = ["thin", "trace", "smooth"]

Pixel = tuple[int, int]  # (row, column)

#: Neighbour offsets, the 4-neighbours first (a walk prefers them over diagonals).
_OFFSETS = [(-1, 0), (0, 1), (1, 0), (0, -1), (-1, 1), (1, 1), (1, -1), (-1, -1)]


def _neighbours(b: np.ndarray) -> list[np.ndarray]:
    """P2..P9 of Zhang-Suen for every pixel: north, then clockwise."""
    p = np.zeros((b.shape[0] + 2, b.shape[1] + 2), dtype=np.uint8)
    p[1:-1, 1:-1] = b
    return [p[:-2, 1:-1], p[:-2, 2:], p[1:-1, 2:], p[2:, 2:],
            p[2:, 1:-1], p[2:, :-2], p[1:-1, :-2], p[:-2, :-2]]


def thin(bits: np.ndarray) -> np.ndarray:
    """The one-pixel skeleton of a binary image (Zhang-Suen thinning)."""
    b = np.asarray(bits, dtype=np.uint8).copy()
    changed = True
    while changed:
        changed = False
        for step in (0, 1):
            n = _neighbours(b)
            count = sum(v.astype(np.int16) for v in n)
            ring = n + n[:1]
            transitions = sum(((ring[i] == 0) & (ring[i + 1] == 1)).astype(np.int16)
                              for i in range(8))
            p2, p4, p6, p8 = n[0], n[2], n[4], n[6]
            if step == 0:
                keep_shape = ((p2 & p4 & p6) == 0) & ((p4 & p6 & p8) == 0)
            else:
                keep_shape = ((p2 & p4 & p8) == 0) & ((p2 & p6 & p8) == 0)
            remove = (b == 1) & (count >= 2) & (count <= 6) & (transitions == 1) & keep_shape
            if remove.any():
                b[remove] = 0
                changed = True
    return b.astype(bool)


def trace(skeleton: np.ndarray) -> list[list[Pixel]]:
    """Polylines of (row, column) pixels that cover every link of the skeleton once.

    A diagonal link is left out where two 4-neighbour links already join the same pixels (no
    little triangles). Walks start at line ends (one neighbour), then anywhere (loops, as a
    "0"); at a crossing a walk goes on as straight as it can. A lone pixel is a dot."""
    pixels = {(int(r), int(c)) for r, c in zip(*np.nonzero(skeleton))}

    def links(p: Pixel) -> list[Pixel]:
        out = []
        for dr, dc in _OFFSETS:
            q = (p[0] + dr, p[1] + dc)
            if q in pixels and not (dr and dc and ((p[0] + dr, p[1]) in pixels
                                                   or (p[0], p[1] + dc) in pixels)):
                out.append(q)
        return out

    graph = {p: links(p) for p in pixels}
    used: set[tuple[Pixel, Pixel]] = set()

    def key(a: Pixel, b: Pixel) -> tuple[Pixel, Pixel]:
        return (a, b) if a < b else (b, a)

    def free(p: Pixel) -> list[Pixel]:
        return [q for q in graph[p] if key(p, q) not in used]

    lines: list[list[Pixel]] = []
    for start in sorted(pixels, key=lambda p: (len(graph[p]) != 1, p)):
        if not graph[start]:
            lines.append([start, start])
            continue
        while free(start):
            line = [start]
            while nxt := free(line[-1]):
                if len(line) >= 2:  # straight on: the largest step along the last direction
                    (r0, c0), (r1, c1) = line[-2], line[-1]
                    nxt.sort(key=lambda q: -((q[0] - r1) * (r1 - r0) + (q[1] - c1) * (c1 - c0)))
                used.add(key(line[-1], nxt[0]))
                line.append(nxt[0])
            lines.append(line)
    return lines


def smooth(line: list[Pixel], passes: int = 2) -> np.ndarray:
    """The polyline as (row, column) floats, each inner point moved toward its neighbours'
    mean ``passes`` times (weights 1, 2, 1); the ends stay, a closed loop stays closed."""
    pts = np.asarray(line, dtype=np.float64)
    if len(pts) < 3:
        return pts
    closed = len(pts) > 3 and bool(np.array_equal(pts[0], pts[-1]))
    for _ in range(passes):
        if closed:
            ring = pts[:-1]
            ring = (np.roll(ring, 1, axis=0) + 2 * ring + np.roll(ring, -1, axis=0)) / 4
            pts = np.vstack([ring, ring[:1]])
        else:
            pts[1:-1] = (pts[:-2] + 2 * pts[1:-1] + pts[2:]) / 4
    return pts
