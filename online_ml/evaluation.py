"""Scoring a served model on drawings: the model a user gets, feature variants, per-digit tables.

Why here and not in bench/: the handwriting benchmark, its tests and anyone checking a change to
``features`` need the same three things — the model the job trains on the default stream, the
features of a set of drawings under each variant of the pipeline, and the tables — and they must
not drift apart.

>>> y = np.array([0, 0, 1, 1]); p = np.array([0, 1, 1, 1])
>>> per_digit(y, p, classes=[0, 1])
[{'digit': 0, 'n': 2, 'accuracy': 0.5}, {'digit': 1, 'n': 2, 'accuracy': 1.0}]
>>> confusion(y, p, classes=[0, 1]).tolist()
[[1, 1], [0, 2]]
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from .config import Settings
from .features import MAX_WIDTH, ink_to_features, strokes_to_features
from .learner import OnlineLearner, make_model
from .producer import iter_records
from .svg_render import SvgDrawing, svg_ink

__all__ = ["VARIANTS", "STROKE_VARIANTS", "SERVED", "WIDTH", "BITMAP_VIEWS", "mouse_drawings",
           "stroke_features", "stream_model", "batch_model", "drawing_inks",
           "features_of", "view_scores", "view_answers", "per_digit", "confusion",
           "format_confusion"]

_MAX = f"width <= {round(MAX_WIDTH * 32)}/32"
SERVED = f"+ deskew, centred across by mass, height fills, {_MAX} (served)"
WIDTH = "served + stroke width (bitmaps' second view)"
#: What the server scores a bitmap (or filled shapes) by: these views, their decision values
#: averaged (``features.bitmap_views``; test-time augmentation). Strokes get one view.
BITMAP_VIEWS = (SERVED, WIDTH)
#: Feature pipelines compared in the ablation: keyword arguments of ``ink_to_features``. ``SERVED``
#: is the server's features (its defaults): a stroke drawing's only view, a bitmap's first.
VARIANTS: dict[str, dict[str, Any]] = {
    "crop, scale, centre, count (before)": {"deskew": False, "width": False, "centre": "box",
                                            "fit": "long side"},
    "+ stroke width": {"deskew": False, "width": True, "centre": "box", "fit": "long side"},
    "+ deskew + stroke width": {"deskew": True, "width": True, "centre": "box", "fit": "long side"},
    "+ deskew": {"deskew": True, "width": False, "centre": "box", "fit": "long side"},
    "+ deskew, centred across by mass": {"deskew": True, "width": False, "centre": "mass",
                                         "fit": "long side"},
    SERVED: {},
    WIDTH: {"width": True},
}
#: Feature paths for strokes compared on the mouse drawings (online_ml/harness/mouse_digits.py):
#: keyword arguments of ``strokes_to_features``. The last one is the server's.
STROKE_VARIANTS: dict[str, dict[str, Any]] = {
    "one pen, long side, centred by the box (before)": {"fit_ink": False, "centre": "box",
                                                        "fit": "long side"},
    "one pen, long side, centred across by mass": {"fit_ink": False, "fit": "long side"},
    "pen fitted to digits' ink, long side, centred across by mass": {"fit": "long side"},
    f"pen fitted to digits' ink, centred across by mass, height fills, {_MAX} (served)": {},
}


def stream_model(epochs: int = 3, seed: int = 0, learner: str | None = None,
                 params: dict | None = None, limit: int | None = None) -> Any:
    """The model the job trains on the default stream: ``kafka_producer.py``'s record order
    (``iter_records``, reshuffled every pass) through ``OnlineLearner.learn_one`` (the row UDF's
    path), with the job's LEARNER and LEARNER_PARAMS unless given. ``limit`` stops early
    (smoke runs). The default learner's training-time augmentation (``OnlineSoftmax.augment``)
    is part of the learner: it learns here as in the job."""
    settings = Settings.from_env()
    name = learner or settings.learner
    kwargs = settings.learner_kwargs() if params is None else params
    model = OnlineLearner(make_model(name, **kwargs))
    for i, (x, y) in enumerate(iter_records(seed=seed, epochs=epochs)):
        if limit is not None and i >= limit:
            break
        model.learn_one(x, y)
    return model.model


def batch_model(epochs: int = 2, seed: int = 1, batch: int = 64, random_state: int | None = None) -> Any:
    """The model bench/serving.py serves: the job's learner, ``epochs`` passes of the producer's
    order (seed ``seed``) learned ``batch`` records at a time (``learn_many``). That benchmark
    leaves ``random_state`` unset, and SGD's ``partial_fit`` shuffles each batch, so two of its
    runs serve different models; a fixed ``random_state`` gives one of them, reproducibly."""
    settings = Settings.from_env()
    estimator = make_model(settings.learner, **settings.learner_kwargs())
    if random_state is not None and "random_state" in estimator.get_params():
        estimator.set_params(random_state=random_state)
    model = OnlineLearner(estimator)
    xs: list = []
    ys: list = []
    for x, y in iter_records(seed=seed, epochs=epochs):
        xs.append(x)
        ys.append(y)
        if len(xs) == batch:
            model.learn_many(xs, ys)
            xs, ys = [], []
    if xs:
        model.learn_many(xs, ys)
    return model.model


def drawing_inks(svgs: Iterable[str]) -> list[np.ndarray]:
    """Each SVG rendered as the server renders it (the costly part, done once per drawing)."""
    return [svg_ink(svg.encode()) for svg in svgs]


def features_of(inks: Sequence[np.ndarray], variant: str | dict[str, Any] = SERVED) -> np.ndarray:
    options = VARIANTS[variant] if isinstance(variant, str) else variant
    return np.array([ink_to_features(ink, **options) for ink in inks])


def view_scores(model: Any, views: Sequence[np.ndarray]) -> np.ndarray:
    """Decision values averaged over views (feature matrices of the same drawings, one per
    view), as the server scores a drawing (``uncertainty.view_probabilities``)."""
    from .uncertainty import logits

    scores = []
    for v in views:
        z = logits(model, v)
        if z is None:
            raise ValueError(f"{type(model).__name__} has no decision values to average")
        scores.append(z)
    return np.mean(np.stack(scores), axis=0)


def view_proba(model: Any, views: Sequence[np.ndarray]) -> np.ndarray:
    """The model's own ``predict_proba`` averaged over views (feature matrices of the same
    drawings, one per view), as ``uncertainty.view_probabilities`` scores a drawing with it."""
    return sum(model.predict_proba(v) for v in views) / len(views)


def view_answers(model: Any, views: Sequence[np.ndarray]) -> np.ndarray:
    """The answers for drawings scored by ``views`` (see :func:`view_scores`); a model without
    decision values (naive Bayes, the MLP) by :func:`view_proba`."""
    if not hasattr(model, "decision_function") and hasattr(model, "predict_proba"):
        return model.classes_[view_proba(model, views).argmax(axis=1)]
    return model.classes_[view_scores(model, views).argmax(axis=1)]


def mouse_drawings(board: tuple[float, float] = (360, 240)) -> tuple[list[str], np.ndarray, list[str]]:
    """Our clean mouse drawings (online_ml/harness/mouse_digits.py) as the board sends them,
    their digits and their names."""
    from .harness.mouse_digits import SET, board_svg_of

    return ([board_svg_of(d, board) for _, _, d in SET], np.array([digit for digit, _, _ in SET]),
            [name for _, name, _ in SET])


def stroke_features(svgs: Iterable[str], variant: str = list(STROKE_VARIANTS)[-1],
                    **options: Any) -> np.ndarray:
    """Features of SVG drawings through the server's path (``strokes_to_features``), or another
    of ``STROKE_VARIANTS``; ``options`` change its keyword arguments (e.g. ``max_width``)."""
    kwargs = {**STROKE_VARIANTS[variant], **options}
    return np.array([strokes_to_features(SvgDrawing(svg.encode()), **kwargs) for svg in svgs])


def per_digit(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[int] = range(10)) -> list[dict]:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    rows = []
    for c in classes:
        m = y_true == c
        rows.append({"digit": int(c), "n": int(m.sum()),
                     "accuracy": float((y_pred[m] == c).mean()) if m.any() else None})
    return rows


def confusion(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[int] = range(10)) -> np.ndarray:
    """Rows: the true digit; columns: the answer."""
    index = {int(c): i for i, c in enumerate(classes)}
    out = np.zeros((len(index), len(index)), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        if int(p) in index:
            out[index[int(t)], index[int(p)]] += 1
    return out


def format_confusion(matrix: np.ndarray, title: str, classes: Sequence[int] = range(10),
                     cell: Callable[[int], str] = str) -> str:
    head = "true\\answer " + " ".join(f"{c:>4}" for c in classes)
    lines = [title, head, "-" * len(head)]
    for c, row in zip(classes, matrix):
        lines.append(f"{c:>11} " + " ".join(f"{cell(int(v)):>4}" for v in row))
    return "\n".join(lines)
