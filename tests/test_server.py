"""The prediction server, through Flask's test client, against a real Redis.

Uses the ``redis_client`` and ``settings`` fixtures of tests/conftest.py (a real Redis on a test
db, flushed per test). The Redis-goes-away tests start their own throw-away redis-server and stop
it, because the shared one must stay up.
"""
from __future__ import annotations

import base64
import math
import shutil
import socket
import subprocess
import time

import numpy as np
import pytest
import redis
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier

from online_ml.features import MAX_INPUT_CHARS
from online_ml.model_store import ModelStore
from online_ml.server import DEFAULT_MAX_CONTENT_LENGTH, NO_MODEL_MESSAGE, create_app

pytestmark = pytest.mark.integration  # a real Redis (tests/conftest.py starts it)


# -- helpers ----------------------------------------------------------------------------------------
def digit_data_url(img8: np.ndarray) -> str:
    """A digits image drawn as an SVG the way a board would send it (one square per block)."""
    rects = []
    for r in range(8):
        for c in range(8):
            v = img8[r, c]
            if v > 0:
                side = 12 * math.sqrt(v / 16)
                x, y = 100 + c * 12 + (12 - side) / 2, 20 + r * 12 + (12 - side) / 2
                rects.append(f'<rect x="{x:.2f}" y="{y:.2f}" width="{side:.2f}" '
                             f'height="{side:.2f}" fill="#000"/>')
    svg = ('<svg xmlns="http://www.w3.org/2000/svg" width="300" height="150">'
           + "".join(rects) + "</svg>")
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def svg_data_url(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def wait_until(condition, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def trained_model(loss: str = "log_loss", seed: int = 0) -> SGDClassifier:
    digits = load_digits()
    return SGDClassifier(loss=loss, random_state=seed).fit(digits.data, digits.target)


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture(scope="module")
def model():
    return trained_model()


@pytest.fixture
def store(redis_client, settings):
    return ModelStore(redis_client, prefix=settings.model_key)


@pytest.fixture
def app(redis_client, settings):
    return create_app({"TESTING": True, "SETTINGS": settings, "REDIS_CLIENT": redis_client,
                       "VERSION_CHECK_INTERVAL": 0})


@pytest.fixture
def client(app):
    return app.test_client()


class SpareRedis:
    """A redis-server of our own (no persistence) that a test may stop and start again."""

    def __init__(self, binary: str):
        self.binary = binary
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def _up(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.2).ping())
        except redis.RedisError:
            return False

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--bind", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._up, what=f"redis-server on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=0.3, socket_timeout=0.5)


@pytest.fixture
def spare_redis():
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    spare = SpareRedis(binary)
    spare.start()
    try:
        yield spare
    finally:
        spare.stop()


def assert_json_error(response, status: int, *words: str) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["success"] is False
    for word in words:
        assert word.lower() in body["error"].lower(), body["error"]
    return body["error"]


# -- the page -----------------------------------------------------------------------------------------
def test_index_has_the_board(client, settings):
    page = client.get("/").get_data(as_text=True)
    for needle in ('id="board"', 'id="predict"', 'id="clear"', 'id="result"', "board.js",
                   settings.flink_rest_url):
        assert needle in page
    assert "http" not in page.replace(settings.flink_rest_url, "")  # no CDN, no other sites
    for asset in ("/static/board.js", "/static/board.css"):
        with client.get(asset) as response:
            assert response.status_code == 200


# -- predictions --------------------------------------------------------------------------------------
def test_predict_with_a_stored_model(client, store, model, digits):
    store.save(model, {"samples_seen": 1797, "accuracy": 0.93})
    i = 0
    expected = int(model.predict(digits.data[i:i + 1])[0])
    answer = client.post("/predict", data={"imgStr": digit_data_url(digits.images[i])}).get_json()
    assert answer["success"] is True
    assert answer["predict_result"] == expected
    assert answer["model_version"] == 1
    assert answer["samples_seen"] == 1797
    assert "stale" not in answer
    top = answer["probabilities"]
    assert len(top) == 3 and top[0]["digit"] == expected
    assert top[0]["p"] >= top[1]["p"] >= top[2]["p"]


def test_predict_accepts_json(client, store, model, digits):
    store.save(model, {"samples_seen": 10})
    answer = client.post("/predict", json={"imgStr": digit_data_url(digits.images[3])}).get_json()
    assert answer["success"] is True and 0 <= answer["predict_result"] <= 9


def test_model_without_probabilities_still_predicts(client, store, digits):
    store.save(trained_model(loss="hinge"), {"samples_seen": 5})
    answer = client.post("/predict", data={"imgStr": digit_data_url(digits.images[5])}).get_json()
    assert answer["success"] is True and "probabilities" not in answer


def test_a_new_version_is_picked_up_and_loaded_once(app, client, store, model, digits):
    loads = []
    original = store.load

    def counting_load(*args, **kwargs):
        loads.append(1)
        return original(*args, **kwargs)

    app.extensions["model_store"].load = counting_load  # spy on our own code, not on Redis
    url = digit_data_url(digits.images[7])
    store.save(model, {"samples_seen": 100})
    first = client.post("/predict", data={"imgStr": url}).get_json()
    again = client.post("/predict", data={"imgStr": url}).get_json()
    assert first["model_version"] == again["model_version"] == 1
    assert len(loads) == 1  # same version: served from memory

    store.save(trained_model(seed=1), {"samples_seen": 200})
    newer = client.post("/predict", data={"imgStr": url}).get_json()
    assert newer["model_version"] == 2 and newer["samples_seen"] == 200
    assert len(loads) == 2


def test_version_checks_are_rate_limited(redis_client, settings, store, model, digits):
    app = create_app({"TESTING": True, "SETTINGS": settings, "REDIS_CLIENT": redis_client,
                      "VERSION_CHECK_INTERVAL": 0.3})
    client = app.test_client()
    url = digit_data_url(digits.images[1])
    store.save(model, {"samples_seen": 1})
    assert client.post("/predict", data={"imgStr": url}).get_json()["model_version"] == 1
    store.save(model, {"samples_seen": 2})
    # within the interval the cached version answers; after it, the new one
    assert client.post("/predict", data={"imgStr": url}).get_json()["model_version"] == 1
    wait_until(lambda: client.post("/predict", data={"imgStr": url}).get_json()
               ["model_version"] == 2, timeout=5, what="version 2 to be served")


def test_no_model_yet_is_503_with_what_to_do(client, digits):
    error = assert_json_error(client.post("/predict", data={"imgStr": digit_data_url(digits.images[0])}),
                              503, "no model yet", "stream.py")
    assert error == NO_MODEL_MESSAGE
    meta = client.get("/api/model").get_json()
    assert meta["success"] is True and meta["model"] is None


def test_api_model_and_healthz(client, store, model):
    store.save(model, {"samples_seen": 42, "accuracy": 0.9})
    meta = client.get("/api/model").get_json()
    assert meta["model"]["version"] == 1 and meta["model"]["samples_seen"] == 42
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.get_json()["redis"] == "ok" and health.get_json()["model_version"] == 1


def test_an_unloadable_stored_model_is_not_served(client, store, redis_client, model, digits):
    """A blob that is not a trusted skops file: keep the last good model, or 503 without one."""
    url = digit_data_url(digits.images[6])

    def write_bad_version():
        meta = store.save(model, {"samples_seen": 9})
        redis_client.set(store.blob_key, b"not a model")  # e.g. a pickle from an old job
        return meta["version"]

    write_bad_version()
    assert_json_error(client.post("/predict", data={"imgStr": url}), 503, "cannot be loaded")
    store.save(model, {"samples_seen": 10})
    good = client.post("/predict", data={"imgStr": url}).get_json()
    assert good["samples_seen"] == 10 and "stale" not in good
    write_bad_version()
    kept = client.post("/predict", data={"imgStr": url}).get_json()
    assert kept["success"] is True and kept["samples_seen"] == 10 and kept["stale"] is True


# -- bad input ----------------------------------------------------------------------------------------
BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa">'
                  '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
                  '<svg xmlns="http://www.w3.org/2000/svg"><desc>&b;</desc></svg>')


@pytest.mark.parametrize("img_str, words", [
    ("data:image/svg+xml;base64,%%%%", ["base64"]),
    (svg_data_url("just some text"), ["neither an SVG nor a PNG"]),
    (svg_data_url('<svg xmlns="http://www.w3.org/2000/svg" width="300" height="150"></svg>'),
     ["empty drawing"]),
    (svg_data_url(BILLION_LAUGHS), ["ENTITY"]),
])
def test_bad_drawings_are_400_with_a_message(client, store, model, img_str, words):
    store.save(model, {"samples_seen": 1})  # the input is wrong, not the model
    assert_json_error(client.post("/predict", data={"imgStr": img_str}), 400, *words)


def test_missing_field_is_400(client):
    assert_json_error(client.post("/predict", data={}), 400, "imgStr")
    assert_json_error(client.post("/predict", json={"other": 1}), 400, "imgStr")


def test_oversized_requests_are_413(client):
    body = "data:image/svg+xml;base64," + "A" * DEFAULT_MAX_CONTENT_LENGTH
    assert_json_error(client.post("/predict", data={"imgStr": body}), 413, "too large")
    # under the request limit but over the image limit
    body = "data:image/svg+xml;base64," + "A" * (MAX_INPUT_CHARS + 4)
    assert_json_error(client.post("/predict", data={"imgStr": body}), 413, "too large")


def test_errors_are_json_never_tracebacks(client):
    assert_json_error(client.get("/no-such-page"), 404, "not found")
    assert_json_error(client.get("/predict"), 405)


# -- Redis goes away ------------------------------------------------------------------------------------
def test_redis_down_keeps_answering_with_the_last_model(settings, spare_redis, model, digits):
    ModelStore(spare_redis.client(), prefix=settings.model_key).save(model, {"samples_seen": 321})
    app = create_app({"TESTING": True, "SETTINGS": settings, "REDIS_CLIENT": spare_redis.client(),
                      "VERSION_CHECK_INTERVAL": 0, "REDIS_RETRY_INTERVAL": 0})
    client = app.test_client()
    url = digit_data_url(digits.images[2])
    fresh = client.post("/predict", data={"imgStr": url}).get_json()
    assert fresh["success"] is True and "stale" not in fresh

    spare_redis.stop()
    stale = client.post("/predict", data={"imgStr": url})
    assert stale.status_code == 200
    body = stale.get_json()
    assert body["stale"] is True
    assert body["predict_result"] == fresh["predict_result"]
    assert body["model_version"] == 1 and body["samples_seen"] == 321
    assert client.get("/healthz").status_code == 503
    assert client.get("/api/model").get_json()["stale"] is True


def test_redis_back_empty_then_a_new_model_with_a_reused_version(settings, spare_redis, model,
                                                                 digits):
    """A Redis restarted without persistence counts versions from 1 again: still reload."""
    app = create_app({"TESTING": True, "SETTINGS": settings, "REDIS_CLIENT": spare_redis.client(),
                      "VERSION_CHECK_INTERVAL": 0, "REDIS_RETRY_INTERVAL": 0})
    client = app.test_client()
    url = digit_data_url(digits.images[4])
    ModelStore(spare_redis.client(), prefix=settings.model_key).save(model, {"samples_seen": 1})
    assert client.post("/predict", data={"imgStr": url}).get_json()["samples_seen"] == 1

    spare_redis.stop()
    assert client.post("/predict", data={"imgStr": url}).get_json()["stale"] is True
    spare_redis.start()  # empty: the model is gone
    assert_json_error(client.post("/predict", data={"imgStr": url}), 503, "no model yet")
    ModelStore(spare_redis.client(), prefix=settings.model_key).save(model, {"samples_seen": 2})
    again = client.post("/predict", data={"imgStr": url}).get_json()
    assert again["model_version"] == 1 and again["samples_seen"] == 2 and "stale" not in again


def test_redis_down_and_no_model_is_503(settings, digits):
    nobody = redis.Redis(port=free_port(), socket_connect_timeout=0.3, socket_timeout=0.5)
    app = create_app({"TESTING": True, "SETTINGS": settings, "REDIS_CLIENT": nobody})
    client = app.test_client()
    assert_json_error(client.post("/predict", data={"imgStr": digit_data_url(digits.images[0])}),
                      503, "no model available", "redis is unreachable")
    health = client.get("/healthz")
    assert health.status_code == 503 and health.get_json()["redis"] == "unreachable"
    assert_json_error(client.get("/api/model"), 503, "unreachable")
