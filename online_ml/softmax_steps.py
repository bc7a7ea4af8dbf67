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

__all__ = ["adagrad_kernel_steps", "adagrad_steps", "nearest_indices"]


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
