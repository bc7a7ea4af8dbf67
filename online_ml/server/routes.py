"""Every URL of the server in one table, on one blueprint named ``board``.

The views live in small modules (predict, api, health, metrics); the page's template links to
them as ``board.<view>``, so the endpoint names stay those of one blueprint.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, current_app, render_template

from ..config import Settings
from .api import feedback, feedback_status, metrics_history, model_meta
from .health import healthz
from .metrics import prometheus_metrics
from .predict import predict


def index():
    """The drawing board, with a link to the Flink WebUI."""
    settings: Settings = current_app.config["SETTINGS"]
    return render_template("index.html", flink_url=settings.flink_rest_url)


# (rule, view, methods): what users and the page's links see
ROUTES: list[tuple[str, Callable[..., Any], list[str]]] = [
    ("/", index, ["GET"]),
    ("/predict", predict, ["POST"]),
    ("/api/model", model_meta, ["GET"]),
    ("/api/metrics/history", metrics_history, ["GET"]),
    ("/api/feedback", feedback, ["POST"]),
    ("/api/feedback/<record_id>", feedback_status, ["GET"]),
    ("/healthz", healthz, ["GET"]),
    ("/metrics", prometheus_metrics, ["GET"]),
]

bp = Blueprint("board", __name__)
for rule, view, methods in ROUTES:
    bp.add_url_rule(rule, view_func=view, methods=methods)
