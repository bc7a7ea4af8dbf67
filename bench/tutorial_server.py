"""Baseline for the serving benchmark: /predict done per request the way the tutorial's server does.

On every request it fetches the model blob from Redis and deserialises it, writes the drawing to
``digit.svg``, converts it with svglib and reportlab's renderPM to a PNG file at the board's full
size, opens that with PIL and shrinks it to 8x8. Two departures, both in the baseline's favour or
required: the model is loaded with ``online_ml.model_store.loads`` (skops with trusted types; the
tutorial used ``pickle.loads``, which nothing in this code base does on data from Redis), and the
files go to a fresh temporary directory per request instead of the working directory (the
tutorial's fixed file names break as soon as two requests overlap).

    cd bench && REDIS_DB=2 MODEL_KEY=... waitress-serve --threads 8 --call tutorial_server:create_app
    (waitress and gunicorn import the app from their working directory)
"""
from __future__ import annotations

import base64
import os
import tempfile

import numpy as np
from flask import Flask, jsonify, request

from online_ml.config import Settings
from online_ml.model_store import loads


def svg_to_features(svg: bytes, workdir: str) -> np.ndarray:
    """The tutorial's feature engineering, through files: SVG -> PNG (full size) -> 8x8 gray."""
    from PIL import Image
    from reportlab.graphics import renderPM
    from svglib.svglib import svg2rlg

    svg_path = os.path.join(workdir, "digit.svg")
    png_path = os.path.join(workdir, "digit.png")
    with open(svg_path, "wb") as f:
        f.write(svg)
    drawing = svg2rlg(svg_path)
    renderPM.drawToFile(drawing, png_path, fmt="PNG")
    img = Image.open(png_path).convert("L")
    img = img.resize((8, 8), Image.Resampling.LANCZOS)  # the tutorial's Image.ANTIALIAS
    gray = np.asarray(img, dtype=np.float64)
    return (255.0 - gray) / 255.0 * 16.0  # ink -> 16, paper -> 0, like the digits data


def create_app(test_config: dict | None = None) -> Flask:
    app = Flask(__name__)
    settings: Settings = (test_config or {}).get("SETTINGS") or Settings.from_env()
    client = settings.redis_client()

    @app.post("/predict")
    def predict():
        img_str = request.form.get("imgStr", "")
        try:
            svg = base64.b64decode(img_str.split(",", 1)[-1])
        except ValueError:
            return jsonify(success=False, error="bad base64"), 400
        with tempfile.TemporaryDirectory(prefix="tutorial_server_") as workdir:
            x = svg_to_features(svg, workdir)
        blob = client.get(settings.model_key)  # reload the model on every request
        if blob is None:
            return jsonify(success=False, error="no model"), 503
        model = loads(blob)
        return jsonify(success=True, predict_result=int(model.predict(x.reshape(1, -1))[0]))

    @app.get("/healthz")
    def healthz():
        client.ping()
        return jsonify(success=True)

    return app
