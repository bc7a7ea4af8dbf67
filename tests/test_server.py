"""The prediction server, through Flask's test client, against a real Redis.

Uses the ``redis_client`` and ``settings`` fixtures of tests/conftest.py (a real Redis on a test
db, flushed per test). The Redis-goes-away tests start their own throw-away redis-server and stop
it, because the shared one must stay up.
"""
from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid

import numpy as np
import pytest
import redis
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier

from online_ml.config import Settings
from online_ml.features import MAX_INPUT_CHARS
from online_ml.harness.drawings import BILLION_LAUGHS, EMPTY_BOARD, digit_rects_svg, svg_data_url
from online_ml.harness.kafka import consume_json
from online_ml.harness.net import free_port
from online_ml.harness.redis_server import PrivateRedis
from online_ml.harness.waiting import wait_for
from online_ml.model_store import ModelStore
from online_ml.server import DEFAULT_MAX_CONTENT_LENGTH, NO_MODEL_MESSAGE, create_app, history_points

pytestmark = pytest.mark.integration  # a real Redis (tests/conftest.py starts it)


# -- helpers ----------------------------------------------------------------------------------------
def digit_data_url(img8: np.ndarray) -> str:
    """A digits image drawn as an SVG the way a board would send it (one square per block)."""
    return svg_data_url(digit_rects_svg(img8))


def digit_data_views(img8: np.ndarray) -> np.ndarray:
    """The views the server scores ``digit_data_url(img8)`` by: filled squares are a bitmap, so
    two rows of 64 features (``features.image_to_views``)."""
    from online_ml.features import image_to_views

    return image_to_views(digit_data_url(img8))


def wait_until(condition, timeout: float = 10.0, what: str = "condition"):
    return wait_for(condition, timeout, what, interval=0.05)


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
def make_app():
    """create_app for one test: every app made is closed at the end (its announcement listener
    stopped), so no thread outlives the test that started it."""
    apps = []

    def make(test_config):
        app = create_app(test_config)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["online_ml"].close()


@pytest.fixture
def app(make_app, redis_client, settings):
    return make_app({"TESTING": True, "SETTINGS": settings, "REDIS_CLIENT": redis_client,
                     "VERSION_CHECK_INTERVAL": 0})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def spare_redis():
    """A redis-server of our own that a test may stop and start again (its clients give up
    fast, as the server's would when Redis is away)."""
    with PrivateRedis() as spare:
        yield spare


def spare_client(spare: PrivateRedis) -> redis.Redis:
    return spare.client(socket_connect_timeout=0.3, socket_timeout=0.5)


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
                   "monitor.js", "feedback.js", "answer.js", settings.flink_rest_url):
        assert needle in page
    assert "http" not in page.replace(settings.flink_rest_url, "")  # no CDN, no other sites
    for asset in ("/static/board.js", "/static/monitor.js", "/static/feedback.js",
                  "/static/answer.js", "/static/board.css"):
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


@pytest.mark.parametrize("threshold, sure", [(0.0, True), (1.01, False)])
def test_predict_says_whether_the_model_is_sure(client, store, model, digits, monkeypatch,
                                                threshold, sure):
    """``sure`` and ``candidates`` (the board's "not sure: 3 or 8?"): one digit when sure, the
    two most likely, the answer first, when not."""
    from online_ml import uncertainty

    monkeypatch.setitem(uncertainty.CALIBRATIONS, "sgd",
                        uncertainty.Calibration(uncertainty.CALIBRATIONS["sgd"].temperature,
                                                threshold))
    store.save(model, {"samples_seen": 1797})
    answer = client.post("/predict", data={"imgStr": digit_data_url(digits.images[8])}).get_json()
    assert answer["sure"] is sure
    top = [p["digit"] for p in answer["probabilities"]]
    assert answer["candidates"] == ([answer["predict_result"]] if sure else top[:2])
    assert answer["candidates"][0] == answer["predict_result"]
    assert sum(p["p"] for p in answer["probabilities"]) <= 1.0001


def job_model(learner: str, digits) -> object:
    """A model as the job trains it with ``learner``'s default LEARNER_PARAMS (three passes)."""
    from online_ml.learner import OnlineLearner, make_model

    params = {"alpha": 0.001, "random_state": 0} if learner == "sgd" else {}
    online = OnlineLearner(make_model(learner, **params))
    for _ in range(3):
        online.learn_many(digits.data, digits.target)
    return online.model


@pytest.mark.parametrize("learner", ["softmax", "sgd"])
def test_the_served_models_learner_sets_its_probabilities_whatever_learner_is_set(
        make_app, redis_client, settings, store, digits, learner):
    """The default softmax model and an SGD model stored by an older job are each served with
    their own temperature and sure threshold (online_ml/uncertainty.py CALIBRATIONS), chosen by
    the stored model's type, not by the server's LEARNER setting, which here says the other."""
    from online_ml import uncertainty

    stored = job_model(learner, digits)
    other = "sgd" if learner == "softmax" else "softmax"
    app = make_app({"TESTING": True, "SETTINGS": dataclasses.replace(settings, learner=other),
                    "REDIS_CLIENT": redis_client, "VERSION_CHECK_INTERVAL": 0})
    store.save(stored, {"samples_seen": 1797})
    # the default softmax keeps its memory of records and learns affine variants: its calibration
    # is that one's
    own = uncertainty.CALIBRATIONS["softmax-augmented" if learner == "softmax" else learner]
    assert uncertainty.calibration(stored) == own
    for i in (0, 8, 13):
        answer = app.test_client().post(
            "/predict", data={"imgStr": digit_data_url(digits.images[i])}).get_json()
        views = digit_data_views(digits.images[i])
        assert views.shape == (2, 64)
        scored = views[:1]  # neither is in uncertainty.BITMAP_VIEW_LEARNERS: one view
        z = uncertainty.logits(stored, scored).mean(axis=0, keepdims=True)  # averaged over views
        expected = uncertainty.softmax(z, own.temperature)[0]
        top = answer["probabilities"]
        assert top[0]["digit"] == answer["predict_result"] == int(stored.classes_[expected.argmax()])
        assert top[0]["p"] == pytest.approx(expected.max(), abs=1e-4)
        assert answer["sure"] is bool(expected.max() >= own.threshold)
    # a clean digit drawn as the board sends it: a trained model of either learner is sure of it
    answer = app.test_client().post(
        "/predict", data={"imgStr": digit_data_url(digits.images[0])}).get_json()
    assert answer["sure"] is True and answer["candidates"] == [answer["predict_result"]]


def test_predict_explains_on_request(client, store, model, digits):
    """``explain``: the 64 features the model saw and each cell's part in the answer's score."""
    store.save(model, {"samples_seen": 1797})
    url = digit_data_url(digits.images[4])
    plain = client.post("/predict", data={"imgStr": url}).get_json()
    assert "features" not in plain and "contributions" not in plain
    answer = client.post("/predict", data={"imgStr": url, "explain": "1"}).get_json()
    x = np.array(answer["features"])
    assert x.shape == (64,) and x.min() >= 0 and x.max() <= 16
    k = list(model.classes_).index(answer["predict_result"])
    score = model.decision_function(x[None])[0][k]
    assert abs(sum(answer["contributions"]) + model.intercept_[k] - score) < 0.05 * max(1, abs(score))
    as_json = client.post("/predict", json={"imgStr": url, "explain": True}).get_json()
    assert as_json["features"] == answer["features"]


def test_predict_accepts_json(client, store, model, digits):
    store.save(model, {"samples_seen": 10})
    answer = client.post("/predict", json={"imgStr": digit_data_url(digits.images[3])}).get_json()
    assert answer["success"] is True and 0 <= answer["predict_result"] <= 9


def test_model_without_probabilities_still_predicts(client, store, digits):
    store.save(trained_model(loss="hinge"), {"samples_seen": 5})
    answer = client.post("/predict", data={"imgStr": digit_data_url(digits.images[5])}).get_json()
    assert answer["success"] is True and "probabilities" not in answer
    assert "sure" not in answer  # no probabilities, no claim about them


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


def test_announced_versions_are_served_without_waiting_for_the_check(
        make_app, redis_client, settings, store, model, digits):
    # a check interval of a minute: only the store's announcement can make version 2 appear
    app = make_app({"TESTING": True, "SETTINGS": settings, "REDIS_CLIENT": redis_client,
                    "VERSION_CHECK_INTERVAL": 60})
    client = app.test_client()
    url = digit_data_url(digits.images[1])
    store.save(model, {"samples_seen": 1})
    assert client.post("/predict", data={"imgStr": url}).get_json()["model_version"] == 1
    wait_until(lambda: redis_client.pubsub_numsub(store.channel)[0][1] >= 1, timeout=5,
               what="the server to subscribe")
    store.save(model, {"samples_seen": 2})
    wait_until(lambda: client.post("/predict", data={"imgStr": url}).get_json()
               ["model_version"] == 2, timeout=5, what="the announced version 2 to be served")


def test_version_checks_are_rate_limited(make_app, redis_client, settings, store, model, digits):
    app = make_app({"TESTING": True, "SETTINGS": settings, "REDIS_CLIENT": redis_client,
                    "VERSION_CHECK_INTERVAL": 0.3, "LISTEN_FOR_ANNOUNCEMENTS": False})
    client = app.test_client()
    url = digit_data_url(digits.images[1])
    store.save(model, {"samples_seen": 1})
    assert client.post("/predict", data={"imgStr": url}).get_json()["model_version"] == 1
    store.save(model, {"samples_seen": 2})
    # within the interval the cached version answers; after it, the new one
    assert client.post("/predict", data={"imgStr": url}).get_json()["model_version"] == 1
    wait_until(lambda: client.post("/predict", data={"imgStr": url}).get_json()
               ["model_version"] == 2, timeout=5, what="version 2 to be served")


def test_closing_the_app_stops_its_announcement_listener(redis_client, settings, store):
    """A test app or a stopped server leaves no thread behind (nor a Redis subscription)."""
    app = create_app({"TESTING": True, "SETTINGS": settings, "REDIS_CLIENT": redis_client,
                      "WARM_UP": False})  # the listener is on by default
    listener = app.extensions["model_cache"].listener
    assert listener is not None and listener.is_alive()
    wait_until(lambda: redis_client.pubsub_numsub(store.channel)[0][1] >= 1, timeout=5,
               what="the listener to subscribe")
    app.extensions["online_ml"].close()
    wait_until(lambda: not listener.is_alive(), timeout=5, what="the listener thread to end")
    assert listener not in threading.enumerate()
    wait_until(lambda: redis_client.pubsub_numsub(store.channel)[0][1] == 0, timeout=5,
               what="the subscription to end")
    app.extensions["online_ml"].close()  # closing twice is harmless


def test_no_model_yet_is_503_with_what_to_do(client, digits):
    error = assert_json_error(client.post("/predict", data={"imgStr": digit_data_url(digits.images[0])}),
                              503, "no model yet", "stream.py")
    assert error == NO_MODEL_MESSAGE
    meta = client.get("/api/model").get_json()
    assert meta["success"] is True and meta["model"] is None


def test_api_model_and_healthz(client, store, model, kafka_service):
    store.save(model, {"samples_seen": 42, "accuracy": 0.9})
    meta = client.get("/api/model").get_json()
    assert meta["model"]["version"] == 1 and meta["model"]["samples_seen"] == 42
    assert 0 <= meta["age_seconds"] < 60
    health = client.get("/healthz")
    assert health.status_code == 200, health.get_json()
    body = health.get_json()
    assert body["redis"] == "ok" and body["kafka"] == "ok" and body["model_version"] == 1


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
@pytest.mark.parametrize("img_str, words", [
    ("data:image/svg+xml;base64,%%%%", ["base64"]),
    (svg_data_url("just some text"), ["neither an SVG nor a PNG"]),
    (svg_data_url(EMPTY_BOARD), ["empty drawing"]),
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
def test_redis_down_keeps_answering_with_the_last_model(make_app, settings, spare_redis, model,
                                                         digits):
    ModelStore(spare_client(spare_redis), prefix=settings.model_key).save(model, {"samples_seen": 321})
    app = make_app({"TESTING": True, "SETTINGS": settings, "REDIS_CLIENT": spare_client(spare_redis),
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


def test_redis_back_empty_then_a_new_model_with_a_reused_version(make_app, settings, spare_redis,
                                                                 model, digits):
    """A Redis restarted without persistence counts versions from 1 again: still reload."""
    app = make_app({"TESTING": True, "SETTINGS": settings, "REDIS_CLIENT": spare_client(spare_redis),
                    "VERSION_CHECK_INTERVAL": 0, "REDIS_RETRY_INTERVAL": 0})
    client = app.test_client()
    url = digit_data_url(digits.images[4])
    ModelStore(spare_client(spare_redis), prefix=settings.model_key).save(model, {"samples_seen": 1})
    assert client.post("/predict", data={"imgStr": url}).get_json()["samples_seen"] == 1

    spare_redis.stop(save=False)
    assert client.post("/predict", data={"imgStr": url}).get_json()["stale"] is True
    spare_redis.start()  # empty: the model is gone
    assert_json_error(client.post("/predict", data={"imgStr": url}), 503, "no model yet")
    ModelStore(spare_client(spare_redis), prefix=settings.model_key).save(model, {"samples_seen": 2})
    again = client.post("/predict", data={"imgStr": url}).get_json()
    assert again["model_version"] == 1 and again["samples_seen"] == 2 and "stale" not in again


def test_redis_down_and_no_model_is_503(make_app, settings, digits):
    nobody = redis.Redis(port=free_port(), socket_connect_timeout=0.3, socket_timeout=0.5)
    app = make_app({"TESTING": True, "SETTINGS": settings, "REDIS_CLIENT": nobody})
    client = app.test_client()
    assert_json_error(client.post("/predict", data={"imgStr": digit_data_url(digits.images[0])}),
                      503, "no model available", "redis is unreachable")
    health = client.get("/healthz")
    assert health.status_code == 503 and health.get_json()["redis"] == "unreachable"
    assert_json_error(client.get("/api/model"), 503, "unreachable")


# -- monitoring: history, Prometheus --------------------------------------------------------------
def snapshot(samples: int, correct: int, labels: dict | None = None) -> dict:
    return {"samples_seen": samples, "accuracy": correct / max(1, samples),
            "rolling_accuracy": 0.5, "rolling_window": 500,
            "label_distribution": labels or {"0": samples}, "recent_feedback_ids": ["x"] * 100}


def test_history_points_derive_throughput():
    rows = [{"time": 100.0, "samples_seen": 0}, {"time": 110.0, "samples_seen": 100},
            {"time": 130.0, "samples_seen": 300}, {"time": 140.0, "samples_seen": 50},
            {"time": 140.0, "samples_seen": 60}, {"time": 150.0}]
    assert [p["throughput"] for p in history_points(rows)] == [None, 10.0, 10.0, None, None,
                                                               None]


def test_history_is_empty_without_a_model(client):
    body = client.get("/api/metrics/history").get_json()
    assert body["success"] is True and body["history"] == []
    assert body["message"] == NO_MODEL_MESSAGE


def test_history_serves_the_store_snapshots(client, store, model):
    for n in (100, 200, 300):
        store.save(model, snapshot(n, n // 2), snapshot=snapshot(n, n // 2, {"3": n}))
    body = client.get("/api/metrics/history").get_json()
    points = body["history"]
    assert [p["samples_seen"] for p in points] == [100, 200, 300]
    assert [p["version"] for p in points] == [1, 2, 3]
    assert points[0]["throughput"] is None and points[1]["throughput"] > 0
    assert set(points[0]) == {"time", "version", "samples_seen", "accuracy", "rolling_accuracy",
                              "feedback_seen", "throughput"}  # small: no ids, no params
    assert body["label_distribution"] == {"3": 300} and body["rolling_window"] == 500
    assert body["now"] >= points[-1]["time"]

    # polling: only what is newer than the newest point the page has
    newer = client.get(f"/api/metrics/history?since={points[-1]['time']}").get_json()
    assert newer["history"] == []
    store.save(model, snapshot(400, 300), snapshot=snapshot(400, 300))
    newer = client.get(f"/api/metrics/history?since={points[-1]['time']}").get_json()
    assert [p["samples_seen"] for p in newer["history"]] == [400]
    assert newer["history"][0]["throughput"] is not None  # against the point before it
    last2 = client.get("/api/metrics/history?limit=2").get_json()["history"]
    assert [p["samples_seen"] for p in last2] == [300, 400]


@pytest.mark.parametrize("query, words", [
    ("limit=abc", ["limit", "not a valid int"]),
    ("limit=0", ["limit", "between"]),
    ("limit=999999", ["limit", "between"]),
    ("since=yesterday", ["since"]),
])
def test_history_bad_arguments_are_400(client, query, words):
    assert_json_error(client.get(f"/api/metrics/history?{query}"), 400, *words)


def test_prometheus_metrics(client, store, model, digits):
    url = digit_data_url(digits.images[0])
    assert "online_ml_model_version 0.0" in client.get("/metrics").get_data(as_text=True)
    store.save(model, {"samples_seen": 77})
    for _ in range(3):
        assert client.post("/predict", data={"imgStr": url}).status_code == 200
    client.post("/predict", data={"imgStr": "data:image/svg+xml;base64,%%%%"})
    client.get("/no-such-page")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    text = response.get_data(as_text=True)
    for line in ('online_ml_http_requests_total{endpoint="/predict",method="POST",status="200"} 3.0',
                 'online_ml_http_requests_total{endpoint="/predict",method="POST",status="400"} 1.0',
                 'online_ml_http_errors_total{endpoint="/predict",status="400"} 1.0',
                 'online_ml_http_errors_total{endpoint="<unmatched>",status="404"} 1.0',
                 'online_ml_http_request_duration_seconds_count{endpoint="/predict"} 4.0',
                 "online_ml_model_version 1.0",
                 "online_ml_model_samples_seen 77.0",
                 "online_ml_model_stale 0.0"):
        assert line in text, line
    assert "# TYPE online_ml_http_request_duration_seconds histogram" in text
    predicted = sum(float(row.rsplit(" ", 1)[1]) for row in text.splitlines()
                    if row.startswith("online_ml_predictions_total{"))
    assert predicted == 3


def test_apps_do_not_share_counters(make_app, redis_client, settings):
    """Each app has its own registry (tests and several apps in one process)."""
    first = make_app({"TESTING": True, "SETTINGS": settings, "REDIS_CLIENT": redis_client,
                      "WARM_UP": False}).test_client()
    second = make_app({"TESTING": True, "SETTINGS": settings, "REDIS_CLIENT": redis_client,
                       "WARM_UP": False}).test_client()
    first.get("/api/model")
    assert 'endpoint="/api/model"' not in second.get("/metrics").get_data(as_text=True)


def test_healthz_reports_kafka_unreachable(make_app, redis_client, settings):
    nowhere = dataclasses.replace(settings, kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    app = make_app({"TESTING": True, "SETTINGS": nowhere, "REDIS_CLIENT": redis_client,
                    "KAFKA_TIMEOUT": 1, "WARM_UP": False})
    started = time.monotonic()
    health = app.test_client().get("/healthz")
    # bounded by KAFKA_TIMEOUT (1 s), not by kafka-python's defaults: measured 1.0-1.3 s
    assert time.monotonic() - started < 5
    assert health.status_code == 503
    body = health.get_json()
    assert body["redis"] == "ok" and body["kafka"] == "unreachable"
    assert "kafka" in body["error"].lower() and body["success"] is False


# -- feedback -------------------------------------------------------------------------------------
@pytest.fixture
def kafka_app(make_app, redis_client, settings, unique_topics):
    job_settings = dataclasses.replace(settings, source_topic=unique_topics["source"])
    return make_app({"TESTING": True, "SETTINGS": job_settings, "REDIS_CLIENT": redis_client,
                     "VERSION_CHECK_INTERVAL": 0, "HEALTH_CACHE_SECONDS": 0})


def read_topic(topic: str, count: int, timeout: float = 15.0) -> list[dict]:
    records = consume_json(Settings.from_env().kafka_bootstrap_servers, topic, count, timeout)
    assert len(records) >= count, f"only {len(records)} of {count} records in {topic}"
    return records


def test_feedback_goes_to_the_source_topic(kafka_app, unique_topics, digits):
    from online_ml.schema import decode_record

    client = kafka_app.test_client()
    by_image = client.post("/api/feedback", json={"imgStr": digit_data_url(digits.images[5]),
                                                  "label": 5})
    assert by_image.status_code == 200, by_image.get_json()
    first = by_image.get_json()
    assert first["success"] is True and first["label"] == 5
    assert first["topic"] == unique_topics["source"]
    x = [int(v) for v in digits.data[9]]
    second = client.post("/api/feedback", json={"x": x, "label": 9}).get_json()
    assert second["success"] is True and second["id"] != first["id"]

    records = read_topic(unique_topics["source"], 2)
    by_id = {r["id"]: r for r in records}
    image_record, x_record = by_id[first["id"]], by_id[second["id"]]
    assert image_record["source"] == "feedback" and image_record["actual_y"] == 5
    assert len(image_record["x"]) == 64 and sum(image_record["x"]) > 0
    assert x_record["x"] == x and x_record["actual_y"] == 9
    for r in records:
        decoded = decode_record(json.dumps(r))  # the job accepts it
        assert decoded.source == "feedback" and uuid.UUID(decoded.id)
    assert client.get("/healthz").get_json()["kafka"] == "ok"
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'online_ml_feedback_total{result="sent"} 2.0' in metrics


@pytest.mark.parametrize("body, status, words", [
    ("not json", 400, ["JSON object"]),
    ({"imgStr": "data:image/svg+xml;base64,AAAA"}, 400, ["label"]),
    ({"x": [0] * 64, "label": 10}, 400, ["label", "0..9"]),
    ({"x": [0] * 64, "label": True}, 400, ["label"]),
    ({"x": [0] * 64, "label": "3"}, 400, ["label"]),
    ({"label": 3}, 400, ["exactly one of imgStr", "x"]),
    ({"x": [0] * 64, "imgStr": "data:,", "label": 3}, 400, ["exactly one"]),
    ({"x": [0] * 63, "label": 3}, 400, ["64 values"]),
    ({"x": [17] * 64, "label": 3}, 400, ["x[0]", "0..16"]),
    ({"x": "0" * 64, "label": 3}, 400, ["x must be an array"]),
    ({"imgStr": 5, "label": 3}, 400, ["imgStr must be a string"]),
    ({"imgStr": "data:image/svg+xml;base64,%%%%", "label": 3}, 400, ["base64"]),
    ({"imgStr": svg_data_url('<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>'),
      "label": 3}, 400, ["empty drawing"]),
    ({"imgStr": "data:image/svg+xml;base64," + "A" * (MAX_INPUT_CHARS + 4), "label": 3}, 413,
     ["too large"]),
])
def test_bad_feedback_is_refused_and_nothing_is_sent(kafka_app, body, status, words):
    client = kafka_app.test_client()
    if isinstance(body, str):
        response = client.post("/api/feedback", data=body, content_type="text/plain")
    else:
        response = client.post("/api/feedback", json=body)
    assert_json_error(response, status, *words)
    assert kafka_app.extensions["feedback_sender"]._producer is None  # never even connected


def test_feedback_with_kafka_down_is_503(make_app, redis_client, settings):
    nowhere = dataclasses.replace(settings, kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    app = make_app({"TESTING": True, "SETTINGS": nowhere, "REDIS_CLIENT": redis_client,
                    "KAFKA_TIMEOUT": 1, "WARM_UP": False})
    client = app.test_client()
    started = time.monotonic()
    response = client.post("/api/feedback", json={"x": [0] * 64, "label": 1})
    # bounded by KAFKA_TIMEOUT (1 s), not by kafka-python's 60 s: measured 1.0 s
    assert time.monotonic() - started < 6
    assert_json_error(response, 503, "kafka", "unreachable", "try again")
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'online_ml_feedback_total{result="kafka_unavailable"} 1.0' in metrics
    # not stored, so not counted against the address's allowance (FEEDBACK_LIMIT)
    counts = [int(redis_client.get(key))
              for key in redis_client.scan_iter(f"{settings.model_key}:feedback_limit:*")]
    assert counts == [0]


def test_feedback_is_limited_per_client(make_app, redis_client, settings, unique_topics):
    """FEEDBACK_LIMIT corrections per client address in a window, counted in Redis: the next one
    is refused with 429, a Retry-After within the window and nothing sent to Kafka; another
    address still may send; refused input does not count; a second app on the same Redis (another
    gunicorn worker) shares the counts."""
    limited = dataclasses.replace(settings, source_topic=unique_topics["source"],
                                  feedback_limit=2, feedback_window_seconds=600)
    config = {"TESTING": True, "SETTINGS": limited, "REDIS_CLIENT": redis_client,
              "WARM_UP": False}
    first, second = make_app(config).test_client(), make_app(config).test_client()
    row = {"x": [0] * 20 + [16] * 8 + [0] * 36, "label": 1}
    assert_json_error(first.post("/api/feedback", json={"x": [0] * 63, "label": 1}), 400)
    assert first.post("/api/feedback", json=row).status_code == 200
    assert second.post("/api/feedback", json=row).status_code == 200  # the same address
    refused = first.post("/api/feedback", json=row)
    assert_json_error(refused, 429, "too many corrections", "at most 2 in 10 minutes",
                      "FEEDBACK_LIMIT", "try again in")
    assert 1 <= int(refused.headers["Retry-After"]) <= 600
    other = first.post("/api/feedback", json=row, environ_base={"REMOTE_ADDR": "127.0.0.2"})
    assert other.status_code == 200, other.get_json()
    sent = read_topic(unique_topics["source"], 3)
    assert len(sent) == 3  # the refused one never reached Kafka
    metrics = first.get("/metrics").get_data(as_text=True)
    assert 'online_ml_feedback_total{result="limited"} 1.0' in metrics


def test_feedback_limit_behind_trusted_proxies(make_app, redis_client, settings, unique_topics):
    """TRUSTED_PROXIES=0 (the default): X-Forwarded-For is ignored, so a client cannot name itself
    another address to escape the limit. TRUSTED_PROXIES=1 (one proxy in front, which appends the
    address it saw): two clients behind it have an allowance each, and the entries a client forged
    before the proxy's own do not change who it is."""
    row = {"x": [0] * 20 + [16] * 8 + [0] * 36, "label": 1}

    def app(trusted: int):
        limited = dataclasses.replace(settings, source_topic=unique_topics["source"],
                                      feedback_limit=1, trusted_proxies=trusted)
        return make_app({"TESTING": True, "SETTINGS": limited, "REDIS_CLIENT": redis_client,
                         "WARM_UP": False}).test_client()

    def send(client, remote: str, forwarded: str | None = None):
        headers = {"X-Forwarded-For": forwarded} if forwarded else {}
        return client.post("/api/feedback", json=row, headers=headers,
                           environ_base={"REMOTE_ADDR": remote})

    direct = app(0)
    assert send(direct, "127.0.0.5", "10.0.0.1").status_code == 200
    assert_json_error(send(direct, "127.0.0.5", "10.0.0.2"), 429, "too many corrections")

    proxied = app(1)
    assert send(proxied, "127.0.0.9", "10.0.0.1").status_code == 200
    assert send(proxied, "127.0.0.9", "10.0.0.2").status_code == 200  # another client
    assert_json_error(send(proxied, "127.0.0.9", "10.0.0.3, 10.0.0.1"), 429,
                      "too many corrections")  # 10.0.0.1 again, with a forged entry before it
    assert len(read_topic(unique_topics["source"], 3)) == 3
    with pytest.raises(ValueError, match="TRUSTED_PROXIES"):
        Settings.from_env({"TRUSTED_PROXIES": "-1"})


def test_feedback_limit_counts_a_window_and_gives_back_what_kafka_refused(redis_client, settings):
    """The window's count expires with it (a clock moved past it starts again), and a correction
    Kafka did not take is uncounted; FEEDBACK_LIMIT=0 counts nothing."""
    from online_ml.feedback_limit import FeedbackLimit, FeedbackLimited

    now = [1_000_000.0]
    limit = FeedbackLimit(redis_client, settings.model_key, 1, 60, clock=lambda: now[0])
    key = limit.take("a")
    with pytest.raises(FeedbackLimited) as refused:
        limit.take("a")
    assert refused.value.retry_after == 20  # 1,000,000 s is 40 s into a 60 s window
    assert 0 < redis_client.ttl(key) <= 61
    limit.give_back(key)  # a refused one stays counted; give back the first
    limit.give_back(key)
    assert limit.take("a")
    now[0] += 20
    assert limit.take("a") != key  # the next window
    assert FeedbackLimit(redis_client, settings.model_key, 0, 60).take("a") is None
    with pytest.raises(ValueError):
        FeedbackLimit(redis_client, settings.model_key, -1, 60)


def test_feedback_with_redis_down_is_503_and_nothing_is_sent(make_app, spare_redis, settings,
                                                             unique_topics):
    """The counts are in Redis: without it no correction is taken (503, clear), none sent."""
    limited = dataclasses.replace(settings, source_topic=unique_topics["source"])
    app = make_app({"TESTING": True, "SETTINGS": limited, "REDIS_CLIENT": spare_client(spare_redis),
                    "WARM_UP": False, "LISTEN_FOR_ANNOUNCEMENTS": False})
    spare_redis.stop()
    response = app.test_client().post("/api/feedback", json={"x": [0] * 64, "label": 1})
    assert_json_error(response, 503, "feedback not stored", "Redis")
    assert app.extensions["feedback_sender"]._producer is None  # never even connected


def test_feedback_status_follows_the_model_metadata(client, store, model):
    record_id = str(uuid.uuid4())
    pending = client.get(f"/api/feedback/{record_id}").get_json()
    assert pending == {"success": True, "id": record_id, "included": False,
                       "model_version": None, "newest_version": None, "feedback_seen": None}
    store.save(model, {"samples_seen": 10, "feedback_seen": 0, "recent_feedback_ids": []})
    assert client.get(f"/api/feedback/{record_id}").get_json()["included"] is False
    store.save(model, {"samples_seen": 11, "feedback_seen": 1,
                       "recent_feedback_ids": ["other", record_id]})
    done = client.get(f"/api/feedback/{record_id}").get_json()
    assert done["included"] is True and done["model_version"] == 2 and done["feedback_seen"] == 1
    assert_json_error(client.get("/api/feedback/" + "x" * 101), 400, "feedback id")
    assert_json_error(client.get("/api/feedback/a%20b"), 400, "feedback id")


def test_new_routes_answer_json_errors(client):
    assert_json_error(client.get("/api/feedback"), 405)
    assert_json_error(client.post("/api/model"), 405)
    assert_json_error(client.post("/api/metrics/history"), 405)
    assert_json_error(client.delete("/metrics"), 405)
    assert_json_error(client.get("/api/nothing"), 404, "not found")


def test_index_has_the_monitor_and_feedback(client):
    page = client.get("/").get_data(as_text=True)
    for needle in ('id="feedback"', 'id="pick-0"', 'id="pick-9"', 'id="confirm"',
                   'id="chart-accuracy"', 'id="chart-throughput"', 'id="chart-labels"',
                   'id="model-age"', "vendor/uPlot.iife.min.js", "vendor/uPlot.min.css"):
        assert needle in page, needle
    for asset in ("/static/vendor/uPlot.iife.min.js", "/static/vendor/uPlot.min.css",
                  "/static/vendor/uPlot.LICENSE"):
        with client.get(asset) as response:
            assert response.status_code == 200, asset


def test_the_request_cost_benchmark_runs_at_smoke_size(redis_service, tmp_path):
    """bench/request_cost.py --smoke as a user runs it: every stage of POST /predict timed for
    each drawing set, through the real app and a model stored in Redis, the stages adding up to
    the whole request."""
    import os
    import subprocess

    from online_ml.harness.paths import PY, ROOT

    done = subprocess.run([PY, str(ROOT / "bench" / "request_cost.py"), "--smoke"], cwd=ROOT,
                          env=dict(os.environ, BENCH_RESULTS_DIR=str(tmp_path)),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    doc = json.loads((tmp_path / "request_cost.json").read_text())
    rows = {r["key"]: r for r in doc["results"]}
    assert list(rows) == ["parse", "shapes", "render", "ink_features", "rest_features", "score",
                          "explain", "flask", "request", "renders"]
    sets = [k for k in ("board", "board_explain", "board_explain_blas", "board_explain_stdjson",
                        "board_pen_width", "board_svglib", "handwriting") if k in rows["request"]]
    assert sets[:6] == ["board", "board_explain", "board_explain_blas", "board_explain_stdjson",
                        "board_pen_width", "board_svglib"]
    for name in sets:
        stages = {k: rows[k][name] for k in list(rows)[:8]}
        # only the board's own requests ask for the explanation
        assert (stages.pop("explain") > 0) == name.startswith("board_explain"), name
        assert all(v > 0 for v in stages.values()), (name, stages)
        assert rows["request"][name] == pytest.approx(
            sum(stages.values()) + rows["explain"][name], abs=0.01)
        assert rows["renders"][name] >= 1
    # the first pen's guess renders the board drawings no more often than PEN_WIDTH first
    assert rows["renders"]["board"] <= rows["renders"]["board_pen_width"]
    assert len(doc["targets"]) == 6


def test_the_app_keeps_numpy_blas_to_one_thread(make_app, redis_client, settings):
    """A request's matrices are small; OpenBLAS spreading them over every core and spinning its
    threads afterwards doubled the CPU of the board's requests (explain=1; bench/request_cost.py,
    README "Benchmarks"). create_app limits BLAS to BLAS_THREADS (1); 0 leaves it as it is."""
    from threadpoolctl import threadpool_limits

    from online_ml.blas import threads as blas_threads

    config = {"TESTING": True, "REDIS_CLIENT": redis_client, "WARM_UP": False,
              "LISTEN_FOR_ANNOUNCEMENTS": False}
    assert settings.blas_threads == 1
    with threadpool_limits(limits=2, user_api="blas"):  # and back to what the test found
        assert blas_threads() == {2}
        make_app({**config, "SETTINGS": dataclasses.replace(settings, blas_threads=0)})
        assert blas_threads() == {2}
        make_app({**config, "SETTINGS": settings})
        assert blas_threads() == {1}
