"""Everyone can see whether the model still learns: /healthz, /api/model and /metrics report the
training state the job watcher writes to Redis (online_ml/training_state.py), and the board's
warning comes from the same fields.

Through Flask's test client against a real Redis (the ``redis_client`` fixture); the watcher's
record is written here as the watcher writes it, so each state can be set up at will.
"""
from __future__ import annotations

import json
import time

import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier

from online_ml import training_state
from online_ml.model_store import ModelStore
from online_ml.server import create_app

pytestmark = pytest.mark.integration  # a real Redis (tests/conftest.py starts it)


@pytest.fixture
def store(redis_client, settings) -> ModelStore:
    return ModelStore(redis_client, prefix=settings.model_key)


@pytest.fixture
def client(redis_client, settings, kafka_service):
    app = create_app({"TESTING": True, "SETTINGS": settings, "REDIS_CLIENT": redis_client,
                      "VERSION_CHECK_INTERVAL": 0, "WARM_UP": False,
                      "LISTEN_FOR_ANNOUNCEMENTS": False})
    yield app.test_client()
    app.extensions["online_ml"].close()


def save_model(store: ModelStore, age: float = 0.0) -> None:
    """A model saved ``age`` seconds ago (the metadata's save time moved back)."""
    digits = load_digits()
    store.save(SGDClassifier(random_state=0).fit(digits.data[:200], digits.target[:200]),
               {"samples_seen": 200})
    meta = store.load_meta()
    meta["saved_at"] -= age
    store.r.set(store.meta_key, json.dumps(meta))


def watcher_says(store: ModelStore, state: str, checked_ago: float = 0.0,
                 records_ago: float | None = None, **extra) -> None:
    now = time.time()
    training_state.write(store, dict(
        state=state, job_id="j1", since=now - 60, checked_at=now - checked_ago,
        records_at=None if records_ago is None else now - records_ago, **extra))


# -- the server ----------------------------------------------------------------------------------
def test_healthz_stays_200_and_says_whether_training_runs(client, store):
    body = client.get("/healthz").get_json()
    assert body["training"] == "unknown" and body["model_age_seconds"] is None
    save_model(store, age=12)
    watcher_says(store, "absent")
    response = client.get("/healthz")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["training"] == "absent" and 12 <= body["model_age_seconds"] < 60
    watcher_says(store, "running")
    assert client.get("/healthz").get_json()["training"] == "running"
    watcher_says(store, "running", checked_ago=7)  # the watcher stopped reporting
    assert client.get("/healthz").get_json()["training"] == "unknown"


def test_api_model_carries_the_state_and_the_boards_warning(client, store):
    save_model(store, age=100)
    watcher_says(store, "restarting")
    body = client.get("/api/model").get_json()
    assert body["training"] == "restarting" and body["training_problem"] == "not_running"
    assert body["model_age_seconds"] >= 100 and body["training_since"] is not None
    watcher_says(store, "running", records_ago=1)  # running, but no backup for 100 s
    assert client.get("/api/model").get_json()["training_problem"] == "model_stale"
    watcher_says(store, "running", records_ago=50)  # nothing arrives: old is fine
    assert client.get("/api/model").get_json()["training_problem"] is None
    watcher_says(store, "absent", action="resubmitting")
    body = client.get("/api/model").get_json()
    assert body["training_action"] == "resubmitting" and body["training_problem"] == "not_running"


def test_prometheus_gauges_for_training_up_and_model_age(client, store):
    def gauges() -> dict[str, float]:
        text = client.get("/metrics").get_data(as_text=True)
        return {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
                if line.startswith(("online_ml_training_up", "online_ml_model_age_seconds"))}

    assert gauges() == {"online_ml_training_up": 0.0, "online_ml_model_age_seconds": 0.0}
    save_model(store, age=30)
    client.application.extensions["model_cache"].get()  # what a prediction does first
    watcher_says(store, "running")
    got = gauges()
    assert got["online_ml_training_up"] == 1.0 and got["online_ml_model_age_seconds"] >= 30
    watcher_says(store, "failed")
    assert gauges()["online_ml_training_up"] == 0.0
