"""``POST /predict``: the tutorial's route. A drawing (form field ``imgStr``, or JSON) -> a digit.

The answer keeps the tutorial's ``{"success": true, "predict_result": 7}`` and adds the model's
version, the top-3 calibrated probabilities, whether the model is sure (``"sure": false,
"candidates": [3, 8]`` when it is not), with ``explain=1`` what the model saw and what each cell
contributed, and what the page shows about the model.
"""
from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from flask import current_app, jsonify, request

from ..features import FeatureError, InputTooLarge, image_to_views
from ..uncertainty import calibration, served_views, verdict, view_predict, view_probabilities
from .api import model_summary
from .cache import ModelUnavailable
from .errors import error
from .metrics import server_metrics

log = logging.getLogger(__name__)


def _image_field() -> str | None:
    if request.is_json:
        body = request.get_json(silent=True)
        if isinstance(body, dict) and isinstance(body.get("imgStr"), str):
            return body["imgStr"]
        return None
    return request.form.get("imgStr")


def _wants_explanation() -> bool:
    if request.is_json:
        body = request.get_json(silent=True)
        return isinstance(body, dict) and body.get("explain") in (True, 1, "1", "true")
    return request.form.get("explain", "") in ("1", "true")


def _rounded(values: Any, decimals: int) -> list[float]:
    """``values`` as a list of floats rounded to ``decimals`` for the JSON answer: numpy rounds all
    at once, in a quarter of the time of ``round`` value by value (576 values for 9 neighbours)."""
    return np.round(np.asarray(values, dtype=np.float64), decimals).tolist()


def _explain(model: Any, x: np.ndarray, digit: int) -> dict:
    """What the model saw (the 64 features, 8x8 row by row, 0..16) and, for a linear model, what
    each cell contributed to the predicted digit's score (weight x feature; positive = for it),
    so a person can see why a "1" became a 3. Opt-in (``explain``): it doubles the answer. For a
    bitmap scored by two views, the first (its features without the stroke width normalised).
    With random Fourier features (``OnlineSoftmax.contributions``) the cells' shares of the score
    are integrated gradients; either way they add up to the score minus a blank board's. A model
    with a memory of records (``neighbours``) also says which remembered records voted, nearest
    first (``neighbours``: their digit and 64 cells, and ``lesson`` for a correction kept apart):
    the cells explain only the softmax's part."""
    out: dict[str, Any] = {"features": _rounded(x[0], 2)}
    if hasattr(model, "nearest_records"):
        voters = model.nearest_records(x[0])
        if voters:
            out["neighbours"] = [{"digit": int(label), "features": _rounded(row, 1),
                                  **({"lesson": True} if lesson else {})}
                                 for row, label, lesson in voters]
    coef = np.asarray(getattr(model, "coef_", []))
    classes = list(getattr(model, "classes_", []))
    if digit not in classes:
        return out
    if hasattr(model, "contributions"):  # the softmax learner, with or without its random features
        contributions = model.contributions(x[0], digit)
    elif coef.ndim == 2 and coef.shape == (len(classes), x.shape[1]):
        contributions = coef[classes.index(digit)] * x[0]
    else:
        return out
    out["contributions"] = _rounded(contributions, 3)
    return out


def _predict(model: Any, views: np.ndarray, k: int = 3) -> tuple[int, list[dict] | None, dict | None]:
    """The predicted digit, the top-k calibrated class probabilities and whether the model is
    sure (online_ml/uncertainty.py), when the model has probabilities (SGD with hinge loss has
    not), from the drawing's views (``features.image_to_views``: the decision values averaged over
    them). One scoring pass: the digit is the most probable class. The temperature and the sure
    threshold are those of the served model's learner, by its type (``calibration``)."""
    fitted = calibration(model)
    proba = view_probabilities(model, views, fitted.temperature)
    if proba is None:
        return int(view_predict(model, views)), None, None
    p = proba[0]
    order = np.argsort(p)[::-1][:k]
    classes = getattr(model, "classes_", np.arange(len(p)))
    return (int(classes[order[0]]),
            [{"digit": int(classes[i]), "p": round(float(p[i]), 4)} for i in order],
            verdict(p, classes, fitted.threshold))


def predict():
    data = _image_field()
    if not data:
        return error("missing form field imgStr: the drawing as a data URL "
                     "(data:image/svg+xml;base64,...)", 400)
    started = time.perf_counter()
    try:
        views = image_to_views(data)
    except InputTooLarge as exc:
        return error(str(exc), 413)
    except FeatureError as exc:
        log.info("bad drawing: %s", exc)
        return error(str(exc), 400)
    feature_ms = (time.perf_counter() - started) * 1000

    try:
        stored, stale = current_app.extensions["model_cache"].get()
    except ModelUnavailable as exc:
        return error(str(exc), 503)

    x = views[:1]  # what the model saw first: the features explain shows
    expected = getattr(stored.model, "n_features_in_", x.shape[1])
    if expected != x.shape[1]:
        log.error("model version %s expects %s features, not %s", stored.version, expected,
                  x.shape[1])
        return error(f"the stored model expects {expected} features, the board gives "
                     f"{x.shape[1]}", 500)
    digit, top, sure = _predict(stored.model, served_views(stored.model, views))
    answer: dict[str, Any] = {
        "success": True,
        "predict_result": digit,
        "model_version": stored.version,
        "samples_seen": stored.meta.get("samples_seen"),
    }
    if top is not None:
        answer["probabilities"] = top
    if sure is not None:
        answer.update(sure)  # "sure": bool, "candidates": the digit, or the two most likely
    if _wants_explanation():
        answer.update(_explain(stored.model, x, digit))
    for key, value in model_summary(stored.meta).items():
        answer.setdefault(key, value)
    if stale:
        answer["stale"] = True
    server_metrics().predictions.labels(str(answer["predict_result"])).inc()
    log.info("predicted %s with model version %s (features %.1f ms)%s", answer["predict_result"],
             stored.version, feature_ms, " [stale]" if stale else "")
    return jsonify(answer)
