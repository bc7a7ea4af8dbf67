"""The softmax learner's AdaGrad steps, compiled: one row after the other, as ``OnlineSoftmax``
defines them, at ~4 µs a record instead of ~30 µs for the same steps as numpy calls.

A step cannot be vectorised over rows (each row sees the weights the previous row left), and as
numpy calls each of its dozen operations on the 10×64 weights costs a microsecond or two of call
overhead: that made the batch UDF with ``LEARNER=softmax`` half as fast as with SGD's compiled
loop. numba compiles the loop once per Python worker (cached: after the first compile, loaded
from ``__pycache__`` in a fraction of a second); only the job imports this module, not the
server, which never learns. ``tests/test_softmax.py`` checks it against the numpy steps.
"""
from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["adagrad_kernel_steps", "adagrad_steps", "nearest_indices", "affine_variant_counts",
           "variant_at", "variants_at", "with_variants"]


def _import_njit() -> Callable:
    """``numba.njit``, imported where PyFlink replaced ``print``.

    numba registers a type for ``print`` by name and checks that ``print``'s module holds it under
    that name. A PyFlink Python worker replaces ``builtins.print`` with a method of an object in
    its ``beam_sdk_worker_main`` (to send prints to its log), which that module does not hold, so
    ``import numba`` fails there with "module ... has no attribute 'print'" and the job restarts
    forever. During the import ``print`` is a stand-in that looks built in and forwards to the
    worker's; afterwards the worker's own is back.
    """
    shown = builtins.print
    if getattr(shown, "__module__", "builtins") == "builtins":
        from numba import njit
        return njit

    def stand_in(*args: Any, **kwargs: Any) -> None:
        shown(*args, **kwargs)

    stand_in.__module__, stand_in.__name__, stand_in.__qualname__ = "builtins", "print", "print"
    builtins.print = stand_in
    try:
        from numba import njit
    finally:
        builtins.print = shown
    return njit


njit = _import_njit()


def _compiled(fn: Callable) -> Callable:
    """``fn`` compiled with fast math (the inputs are finite: ``OnlineSoftmax`` checks them; a
    few operations may round differently, the weights ending ~1e-13 apart, for a third less time
    a record: ``python bench/batch_cost.py`` times both), cached on disk where numba can write
    (``__pycache__`` beside this file, else a user-wide cache directory); where it can write
    nowhere (a read-only install without a writable home), compiled again in each process rather
    than not at all."""
    try:
        return njit(cache=True, nogil=True, fastmath=True)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available for file ..."
        return njit(nogil=True, fastmath=True)(fn)


@_compiled
def _step(x, col, w, W, b, A, Ab, AW, AB, t, lr, l2, average, eps, z):
    """One step on one input row ``x`` (what the weights multiply) towards class index ``col``,
    of weight ``w`` > 0, in place; ``z`` is scratch of the classes' size. Returns the new ``t``."""
    k, d = W.shape
    for i in range(k):  # scores, then the gradient of the log loss w.r.t. them
        s = b[i]
        for j in range(d):
            s += W[i, j] * x[j]
        z[i] = s
    top = z.max()
    total = 0.0
    for i in range(k):
        z[i] = np.exp(z[i] - top)
        total += z[i]
    for i in range(k):
        z[i] /= total
    z[col] -= 1.0
    t += 1.0
    h = max(1.0, average * t)  # running average over about the last average * t steps
    for i in range(k):
        p = z[i] * w
        for j in range(d):
            g = p * x[j] + l2 * W[i, j]
            A[i, j] += g * g
            W[i, j] -= lr * g / np.sqrt(A[i, j] + eps)
            AW[i, j] += (W[i, j] - AW[i, j]) / h
        Ab[i] += p * p
        b[i] -= lr * p / np.sqrt(Ab[i] + eps)
        AB[i] += (b[i] - AB[i]) / h
    return t


@_compiled
def adagrad_steps(X, cols, weights, W, b, A, Ab, AW, AB, t, lr, l2, average, eps):
    """Take one step per row of ``X`` (already scaled, and with its random features if any)
    towards class index ``cols[r]``, in place on the weights ``W``/``b``, AdaGrad's sums
    ``A``/``Ab`` and the averages ``AW``/``AB``; rows of weight 0 take none. Returns the new step
    count ``t``."""
    z = np.empty(W.shape[0])
    for r in range(X.shape[0]):
        if weights[r] != 0.0:
            t = _step(X[r], cols[r], weights[r], W, b, A, Ab, AW, AB, t, lr, l2, average, eps, z)
    return t


@_compiled
def adagrad_kernel_steps(X, cols, weights, W, b, A, Ab, AW, AB, t, lr, l2, average, eps,
                         R, c, kernel_weight):
    """``adagrad_steps`` for a model with random Fourier features: ``X`` holds the scaled cells
    only; each row's features ``kernel_weight * cos((x * seen) @ R + c)`` are made before its step,
    ``seen`` being the cells with a weight other than 0 at that moment (the cells an earlier row
    inked), exactly as ``OnlineSoftmax`` makes them to predict. So many rows in one call learn
    what the same rows one call each learn."""
    n = X.shape[1]
    d = R.shape[1]
    k = W.shape[0]
    z = np.empty(k)
    x = np.empty(n + d)
    for r in range(X.shape[0]):
        if weights[r] == 0.0:
            continue
        for j in range(d):
            x[n + j] = c[j]
        for i in range(n):
            v = X[r, i]
            x[i] = v
            if v == 0.0:
                continue
            seen = False
            for q in range(k):
                if W[q, i] != 0.0:
                    seen = True
                    break
            if seen:
                for j in range(d):
                    x[n + j] += v * R[i, j]
        for j in range(d):
            x[n + j] = kernel_weight * np.cos(x[n + j])
        t = _step(x, cols[r], weights[r], W, b, A, Ab, AW, AB, t, lr, l2, average, eps, z)
    return t


@_compiled
def nearest_indices(d, k):
    """``online_ml.nearest.nearest_indices``, compiled: per row of ``d`` one pass that keeps the
    ``k`` smallest seen so far in order (an insertion; a later place never displaces an equal
    distance). ~3 µs a row of 2,048 where ``np.argpartition`` takes ~25."""
    rows, n = d.shape
    out = np.empty((rows, k), dtype=np.int64)
    best = np.empty(k)
    for r in range(rows):
        m = 0
        for j in range(n):
            v = d[r, j]
            if m < k:
                at = m
                m += 1
            elif v < best[k - 1]:
                at = k - 1
            else:
                continue
            while at > 0 and best[at - 1] > v:
                best[at] = best[at - 1]
                out[r, at] = out[r, at - 1]
                at -= 1
            best[at] = v
            out[r, at] = j
    return out


# -- training-time augmentation: a record as a random affine variant, counted as served ---------
@_compiled
def _cover(w: np.ndarray, r: float, c: float) -> float:
    """The ink coverage of an 8x8 ``digits`` record (``w``: counts / 16) at (row, column) of its
    32 px box: bilinear between the blocks' centres (4 i + 2), the edge blocks' value out to the
    box's edge (as an image scaled up with bilinear resampling), nothing beyond it."""
    if r < 0.0 or c < 0.0 or r >= 32.0 or c >= 32.0:
        return 0.0
    fi = min(max((r - 2.0) / 4.0, 0.0), 7.0)
    fj = min(max((c - 2.0) / 4.0, 0.0), 7.0)
    i0 = min(int(fi), 6)
    j0 = min(int(fj), 6)
    di = fi - i0
    dj = fj - j0
    return ((w[i0, j0] * (1.0 - dj) + w[i0, j0 + 1] * dj) * (1.0 - di)
            + (w[i0 + 1, j0] * (1.0 - dj) + w[i0 + 1, j0 + 1] * dj) * di)


@_compiled
def affine_variant_counts(x: np.ndarray, turn: float, widen: float, shear: float,
                          max_width: float, squash: float, max_slant: float,
                          level: float = 0.5) -> np.ndarray:
    """One ``digits`` record (64 counts) turned by ``turn`` (radians), its width scaled by
    ``widen`` and sheared by ``shear`` around its centre of mass, then normalised as
    ``features.ink_to_features`` normalises a drawing — deskewed (the slant from the ink's second
    moments, left alone beyond ``max_slant``), cropped to the ink at half coverage, its height
    filling the 32 px box and its width following up to ``max_width`` px (a shape more than
    ``squash`` times wider than tall keeps its aspect ratio), centred across by its centre of mass,
    binarised at half coverage — and counted in 4x4 blocks. ``level``: the coverage that counts
    as ink instead of a half (above: thinner strokes, below: thicker). The turned record, and
    then the same deskewed, are drawn on a 64 px canvas straight from the record's bilinear
    surface (the turn and the shear composed); the crop is resized from that canvas. Close to,
    not the same as, the server's path through PIL (an identity variant is on average 0.4 of a
    count per cell away from ``features.ink_to_features`` of the record drawn 8x larger, ad hoc).
    """
    w = x.reshape(8, 8) / 16.0
    total = 0.0
    cr = 0.0
    cc = 0.0
    for i in range(8):
        for j in range(8):
            total += w[i, j]
            cr += w[i, j] * (4 * i + 2)
            cc += w[i, j] * (4 * j + 2)
    out = np.zeros(64)
    if total <= 0.0:
        return x.astype(np.float64)
    cr /= total
    cc /= total
    # forward (x across, y down) around the centre of mass: rotate, shear across by y, widen
    cs = np.cos(turn)
    sn = np.sin(turn)
    a00 = widen * (cs + shear * sn)
    a01 = widen * (-sn + shear * cs)
    a10 = sn
    a11 = cs
    det = a00 * a11 - a01 * a10
    b00 = a11 / det
    b01 = -a01 / det
    b10 = -a10 / det
    b11 = a00 / det
    n = 64  # the canvas the turned record is drawn on, its centre of mass at the middle
    half = n / 2.0
    canvas = np.zeros((n, n))
    mass = 0.0
    my = 0.0
    mx = 0.0
    for yy in range(n):
        for xx in range(n):
            u = xx + 0.5 - half
            v = yy + 0.5 - half
            val = _cover(w, cr + b10 * u + b11 * v, cc + b00 * u + b01 * v)
            canvas[yy, xx] = val
            mass += val
            my += val * yy
            mx += val * xx
    if mass <= 0.0:
        return x.astype(np.float64)
    my /= mass
    mx /= mass
    syy = 0.0
    sxy = 0.0
    for yy in range(n):
        for xx in range(n):
            val = canvas[yy, xx]
            syy += val * (yy - my) * (yy - my)
            sxy += val * (yy - my) * (xx - mx)
    slant = -sxy / syy if syy > 1e-9 else 0.0
    if abs(slant) < 0.02 or abs(slant) > max_slant:
        slant = 0.0
    # deskewed canvas: (y, x) shows the turned record at (y, x + slant * (my - y))
    r0 = n
    r1 = -1
    c0 = n
    c1 = -1
    for yy in range(n):
        for xx in range(n):
            u = xx + 0.5 + slant * (my - yy - 0.5) - half
            v = yy + 0.5 - half
            val = _cover(w, cr + b10 * u + b11 * v, cc + b00 * u + b01 * v)
            canvas[yy, xx] = val
            if val >= level:
                r0 = min(r0, yy)
                r1 = max(r1, yy)
                c0 = min(c0, xx)
                c1 = max(c1, xx)
    if r1 < 0:
        return x.astype(np.float64)
    h = r1 - r0 + 1
    wd = c1 - c0 + 1
    if wd <= squash * h:
        new_h = 32
        new_w = min(int(round(max_width)), max(1, int(round(wd * 32.0 / h))))
    else:
        new_w = int(round(max_width))
        new_h = min(32, max(1, int(round(h * max_width / wd))))
    # the crop resized: each pixel samples the deskewed canvas at its centre (bilinear)
    crop = np.zeros((new_h, new_w))
    col_mass = np.zeros(new_w)
    for a in range(new_h):
        for b in range(new_w):
            fy = r0 + (a + 0.5) * h / new_h - 0.5
            fx = c0 + (b + 0.5) * wd / new_w - 0.5
            y0 = min(max(int(np.floor(fy)), 0), n - 2)
            x0 = min(max(int(np.floor(fx)), 0), n - 2)
            dy = min(max(fy - y0, 0.0), 1.0)
            dx = min(max(fx - x0, 0.0), 1.0)
            val = ((canvas[y0, x0] * (1.0 - dx) + canvas[y0, x0 + 1] * dx) * (1.0 - dy)
                   + (canvas[y0 + 1, x0] * (1.0 - dx) + canvas[y0 + 1, x0 + 1] * dx) * dy)
            crop[a, b] = val
            col_mass[b] += val
    top = (32 - new_h) // 2
    left = (32 - new_w) // 2
    cm = col_mass.sum()
    if cm > 0.0:
        cx = 0.0
        for b in range(new_w):
            cx += col_mass[b] * b
        left = min(max(int(round(16.0 - 0.5 - cx / cm)), 0), 32 - new_w)
    for a in range(new_h):
        for b in range(new_w):
            if crop[a, b] >= level:
                out[((top + a) // 4) * 8 + (left + b) // 4] += 1.0
    return out


@_compiled
def _unit(key: np.uint64) -> float:
    """A number in [0, 1), a fixed function of ``key`` (splitmix64)."""
    z = key * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return float(z >> np.uint64(11)) * 2.0 ** -53


@_compiled
def variant_at(x: np.ndarray, step: int, seed: int, turn: float, widen: float, shear: float,
               max_width: float, squash: float, max_slant: float, stroke: float) -> np.ndarray:
    """:func:`affine_variant_counts` of ``x`` turned by up to ``turn`` degrees, widened by up to
    ``widen``, sheared by up to ``shear`` and its strokes made thinner or thicker by binarising at
    a coverage up to ``stroke`` either side of a half (0: at a half), either way, the four drawn
    from ``step`` and ``seed`` alone (no generator state: the same variant for the same step
    number)."""
    key = np.uint64(step) * np.uint64(3) + np.uint64(seed)
    a = np.deg2rad(turn * (2.0 * _unit(key) - 1.0))
    b = 1.0 + widen * (2.0 * _unit(key + np.uint64(1)) - 1.0)
    c = shear * (2.0 * _unit(key + np.uint64(2)) - 1.0)
    # the stroke's draw: a key no step's first three draws use (those are 3 step + seed + 0..2)
    level = 0.5 + stroke * (2.0 * _unit(key + np.uint64(1 << 40)) - 1.0) if stroke > 0.0 else 0.5
    return affine_variant_counts(x, a, b, c, max_width, squash, max_slant, level)


@_compiled
def with_variants(X: np.ndarray, cols: np.ndarray, weights: np.ndarray, first_step: int, k: int,
                  seen: np.ndarray, seed: int, turn: float, widen: float, shear: float,
                  max_width: float, squash: float, max_slant: float, stroke: float):
    """The rows a call of ``partial_fit`` learns with training-time augmentation: each row of
    ``X``, then ``k`` variants of it (:func:`variant_at`, drawn from the number of the step that
    learns each: ``first_step`` counts on by ``k + 1`` after every row of weight > 0), each masked
    to the cells learned rows have inked so far (``seen``, then every row of ``X`` of weight > 0 up
    to its own); with their class indices, weights (a variant takes its record's: a row of weight
    0 and its variants take no step) and whether each row is a record."""
    n, m = X.shape
    rows = np.empty((n * (k + 1), m))
    out_cols = np.empty(n * (k + 1), dtype=np.int64)
    out_weights = np.empty(n * (k + 1))
    real = np.zeros(n * (k + 1), dtype=np.bool_)
    inked = seen.copy()
    step = first_step
    for i in range(n):
        learned = weights[i] > 0.0  # a row of weight 0 takes no step: nor do its variants
        if learned:
            for j in range(m):
                if X[i, j] > 0.0:
                    inked[j] = 1.0
        base = i * (k + 1)
        rows[base] = X[i]
        real[base] = True
        for r in range(k + 1):
            out_cols[base + r] = cols[i]
            out_weights[base + r] = weights[i]
        for v in range(k):
            if learned:
                made = variant_at(X[i], step + 1 + v, seed, turn, widen, shear, max_width,
                                  squash, max_slant, stroke)
                for j in range(m):
                    rows[base + 1 + v, j] = made[j] * inked[j]
            else:
                rows[base + 1 + v] = 0.0
        if learned:
            step += k + 1
    return rows, out_cols, out_weights, real


@_compiled
def variants_at(X: np.ndarray, steps: np.ndarray, seed: int, turn: float, widen: float,
                shear: float, max_width: float, squash: float, max_slant: float,
                stroke: float = 0.0) -> np.ndarray:
    """:func:`variant_at` of each row of ``X`` at its step number."""
    out = np.zeros((len(X), X.shape[1]))
    for i in range(len(X)):
        out[i] = variant_at(X[i], steps[i], seed, turn, widen, shear, max_width, squash,
                            max_slant, stroke)
    return out
