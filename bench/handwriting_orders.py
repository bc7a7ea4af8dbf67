"""bench/handwriting.py's stream-orders section: the test figures for other orders of the stream.

kafka_producer.py shuffles ``digits`` with a seed of its own unless given one (``--seed``; it
prints the one it drew), so the model a user gets learned an order of its own; every other table
of bench/handwriting.py is the order of ``Params.seed``. Here the same learner is trained on
``orders`` orders (that seed first, then 0, 1, ...), three passes each as the job, and each
model is scored as the server scores it: the test split in both forms (bitmaps, by the views the
server scores them by), the same test digits traced into strokes (the board's path), and our
mouse set. Nothing is chosen here; the targets ask the worst order to meet issue 10's bars.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import common
import numpy as np

from online_ml import evaluation as ev
from online_ml.handwriting import FORMS, TRACED, drawing

ORDER_COLUMNS = [("stream order (producer seed)", "order", "d"),
                 *[(f"test, {f}", f, ".3f") for f in FORMS],
                 ("test, traced strokes", "traced", ".3f"), ("mouse set right", "mouse", "d"),
                 ("of", "n_mouse", "d")]


def order_seeds(seed: int, orders: int) -> list[int]:
    """``seed`` first, then the smallest other seeds: ``orders`` in all.

    >>> order_seeds(0, 3), order_seeds(2, 3)
    ([0, 1, 2], [2, 0, 1])
    """
    return [seed, *[s for s in range(orders) if s != seed]][:orders]


def order_models(model, seed: int, orders: int, epochs: int) -> dict[int, Any]:
    """The learner trained on each of ``orders`` orders of the stream (``order_seeds``), three
    passes each as the job; ``model`` is the order ``seed``'s, already trained."""
    models = {}
    for order in order_seeds(seed, orders):
        if order != seed:
            common.progress(f"handwriting: the stream's model for order {order}")
        models[order] = model if order == seed else ev.stream_model(epochs, order)
    return models


def models_at_width(models: dict[int, Any], seed: int, epochs: int
                    ) -> Callable[[int], list[Any]]:
    """For bench/handwriting_width.py's sweep: the models of ``order_models`` (order ``seed``
    first) as a server whose digits are at most ``px`` of the 32 px box wide would train them —
    the same at the served width and for a learner without affine variants; else each trained
    again with its variants normalised at that width (``augment.normalised_at``)."""
    from online_ml import augment
    from online_ml.features import BOX, MAX_WIDTH

    ordered = [seed, *[o for o in models if o != seed]]

    def at(px: int) -> list[Any]:
        first = models[seed]
        if abs(px - MAX_WIDTH * BOX) < 1e-9 or not getattr(first, "augment", 0):
            return [models[o] for o in ordered]
        with augment.normalised_at(px):
            common.progress(f"handwriting: the stream's models for widths up to {px} px")
            return [ev.stream_model(epochs, o, params=first.get_params()) for o in ordered]

    return at


def run_section(models: dict[int, Any], test_views: dict[str, list[np.ndarray]],
                y_test: np.ndarray, test_idx: Sequence[int], drawing_seed: int
                ) -> tuple[list[dict], list[dict]]:
    """The rows (one per order of ``order_models``) and the targets. ``test_views``: per form,
    the test split's features of each view the server scores a bitmap by."""
    traced = ev.stroke_features(drawing(i, TRACED, drawing_seed)[0] for i in test_idx)
    mouse_svgs, mouse_y, _ = ev.mouse_drawings()
    mouse = ev.stroke_features(mouse_svgs)
    rows = []
    for order, m in models.items():
        row: dict = {"order": order}
        for f, views in test_views.items():
            row[f] = float((ev.view_answers(m, views) == y_test).mean())
        row["traced"] = float((m.predict(traced) == y_test).mean())
        row["mouse"], row["n_mouse"] = int((m.predict(mouse) == mouse_y).sum()), len(mouse_y)
        rows.append(row)
    worst = min(rows, key=lambda r: min(r[f] for f in FORMS))
    fewest = min(rows, key=lambda r: r["mouse"])
    span = {k: f"{min(r[k] for r in rows):.3f}..{max(r[k] for r in rows):.3f}"
            for k in (*FORMS, "traced")}
    targets = [
        common.target(f"real handwriting, both forms, test accuracy, worst of {len(rows)} stream orders",
                      min(worst[f] for f in FORMS), 0.70, ">=",
                      f"order {worst['order']}; " + ", ".join(f"{k} {v}" for k, v in span.items())),
        common.target(f"clean mouse drawings right, worst of {len(rows)} stream orders",
                      round(fewest["mouse"] / fewest["n_mouse"], 3), 0.9, ">=",
                      f"order {fewest['order']}: {fewest['mouse']}/{fewest['n_mouse']}")]
    return rows, targets
