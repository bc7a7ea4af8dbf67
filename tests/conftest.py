"""Shared fixtures. Services are real: started through the same stack scripts `make up` uses.

A service that was already running (e.g. after `make up`) is used and left running; one the test
session started is stopped at the end. Tests use Redis db 1 (flushed per test) and their own Kafka
topics and model keys, so they never touch the demo's data in db 0. The helpers the fixtures and
tests use live in ``online_ml.harness`` (shared with bench/).

The whole suite runs against another stack instance through the stack's own variables, e.g.::

    ONLINE_ML_STATE=/tmp/stack2 REDIS_PORT=16379 KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 \
    KAFKA_CONTROLLER_PORT=19093 FLINK_REST_PORT=18081 FLINK_RPC_PORT=16123 pytest tests

(FLINK_REST_URL follows FLINK_REST_PORT; the `flink` CLI gets that instance's configuration.)
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from online_ml.config import Settings
from online_ml.harness.flink import FlinkJobs
from online_ml.harness.kafka import Topics
from online_ml.harness.paths import VENV_BIN, instance_environment
from online_ml.harness.stack import Stack

TEST_REDIS_DB = 1
os.environ.update(instance_environment())  # another stack instance: its REST URL, its CLI conf


@pytest.fixture(scope="module")
def shuffled_digits():
    """scikit-learn's digits in one fixed shuffled order (X, y): the learners' unit tests."""
    import numpy as np
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    return X[order], y[order]


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    s = Stack()
    yield s
    s.down()


@pytest.fixture(scope="session")
def redis_service(stack):
    stack.up("redis")


@pytest.fixture(scope="session")
def kafka_service(stack):
    stack.up("kafka")


@pytest.fixture(scope="session")
def flink_service(stack):
    stack.up("flink")


@pytest.fixture
def settings(redis_service) -> Settings:
    """Settings for tests: the local stack, Redis db 1, a model key of its own."""
    return Settings.from_env(redis_db=TEST_REDIS_DB, model_key=f"test_model_{uuid.uuid4().hex[:8]}")


@pytest.fixture
def redis_client(settings):
    client = settings.redis_client()
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def unique_topics(kafka_service) -> Iterator[dict[str, str]]:
    """Fresh source, sink, dead-letter and alert topics for one test (deleted afterwards)."""
    suffix = uuid.uuid4().hex[:8]
    with Topics(Settings.from_env()) as topics:
        yield {role: topics.create(f"test_{short}_{suffix}") for role, short in
               (("source", "src"), ("sink", "sink"), ("dead", "dead"), ("alerts", "alerts"))}


@pytest.fixture
def job_env(settings, unique_topics, flink_service) -> dict:
    """Environment for `flink run … stream.py` reading and writing this test's own topics and
    model key, under a job name of its own (the stack's job watcher looks after the demo's job
    by its name, JOB_NAME, and must not take a test's job for it); tests override single
    settings with ``dict(job_env, NAME=value)``."""
    return dict(os.environ,
                JOB_NAME=f"test job {unique_topics['source']}",
                SOURCE_TOPIC=unique_topics["source"], SINK_TOPIC=unique_topics["sink"],
                DEAD_LETTER_TOPIC=unique_topics["dead"], ALERT_TOPIC=unique_topics["alerts"],
                KAFKA_GROUP_ID=f"group_{unique_topics['source']}",
                MODEL_KEY=settings.model_key, REDIS_DB=str(settings.redis_db),
                BACKUP_INTERVAL_SECONDS="10",
                PATH=f"{VENV_BIN}:{os.environ['PATH']}")


@pytest.fixture
def flink(settings, flink_service) -> Iterator[FlinkJobs]:
    """The cluster's REST API, and `flink run` as a user types it; every job submitted through
    it is cancelled when the test ends, whatever happened."""
    with FlinkJobs(settings.flink_rest_url) as jobs:
        yield jobs
