"""Every setting in one place.

Defaults match the local stack (``make up``); each setting can be overridden by the environment
variable of the same name (the names are shared with docker-compose.yml and stack/env.sh), and the
CLIs accept flags on top of that.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


def _env(name: str, default: str, environ: Mapping[str, str]) -> str:
    value = environ.get(name)
    return default if value is None or value == "" else value


EXECUTION_MODES = ("process", "thread")


def check_execution_mode(udf_mode: str, execution_mode: str) -> None:
    """Refuse what Flink would fail on only once the job runs: its thread mode does not run
    pandas UDFs (UDF_MODE=batch).

    >>> check_execution_mode("row", "thread")
    >>> check_execution_mode("batch", "thread")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: PYTHON_EXECUTION_MODE=thread runs no pandas UDFs: UDF_MODE=batch needs ...
    """
    if execution_mode not in EXECUTION_MODES:
        raise ValueError(f"PYTHON_EXECUTION_MODE must be 'process' or 'thread', "
                         f"got {execution_mode!r}")
    if execution_mode == "thread" and udf_mode == "batch":
        raise ValueError("PYTHON_EXECUTION_MODE=thread runs no pandas UDFs: UDF_MODE=batch needs "
                         "PYTHON_EXECUTION_MODE=process (the default)")


#: The job's parameters for a learner when LEARNER_PARAMS is not set, on top of
#: ``learner.make_model``'s defaults (which keep the tutorial's SGD, alpha 0.01).
JOB_LEARNER_PARAMS: dict[str, dict[str, Any]] = {"sgd": {"alpha": 0.001}}


@dataclass(frozen=True)
class Settings:
    """Runtime configuration shared by the producer, the job, the server and the tools."""

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    source_topic: str = "handwritten_digit"
    sink_topic: str = "digit_predict"
    kafka_group_id: str = "online_ml"
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    redis_password: str = "redis_password"
    redis_db: int = 0
    model_key: str = "online_ml_model"
    backup_interval_seconds: float = 10.0
    model_versions_kept: int = 10
    server_host: str = "127.0.0.1"
    server_port: int = 8066
    flink_rest_url: str = "http://localhost:8081"
    # the training job's name in Flink (what the stack, the tests and the health check look for)
    job_name: str = "Classifier Model Train"
    producer_rate: float = 10.0
    # the job's UDF: "row" (one record per call, the tutorial's) or "batch" (pandas, per Arrow batch)
    udf_mode: str = "row"
    batch_size: int = 5000
    # where the job's Python UDF runs (Flink's python.execution-mode): "process", Flink's default,
    # a Python worker per TaskManager talking gRPC with the JVM (local sockets, see README
    # "Services"), or "thread", the UDF inside the TaskManager JVM through pemja (no sockets;
    # scalar functions only: not UDF_MODE=batch, a pandas UDF)
    python_execution_mode: str = "process"
    # batch mode predicts a chunk of records, then learns it; the chunk grows with experience
    # (samples_seen / 16, between 8 and this cap): see README "Mini-batch mode"
    max_predict_chunk: int = 1024
    # bad source records go, with the reason, to this topic (and are not trained on)
    dead_letter_topic: str = "digit_dead_letter"
    # accuracy alerts: after ALERT_WARMUP records learned, when the accuracy over the last
    # ALERT_WINDOW records falls below ALERT_THRESHOLD, one "accuracy_drop" record goes to
    # ALERT_TOPIC; one "recovered" record when it is back at ALERT_THRESHOLD + ALERT_HYSTERESIS
    alert_topic: str = "model_alerts"
    alert_threshold: float = 0.8
    alert_window: int = 500
    alert_warmup: int = 1000
    alert_hysteresis: float = 0.05
    # Redis unreachable when the job starts: keep trying to load the stored model this long
    # before training a new one (which then defers to a better stored model once Redis is back)
    redis_load_retry_seconds: float = 30.0
    # the learner: a name of online_ml.learner.MODELS and JSON parameters on top of its defaults
    # (make_model's). The default, softmax (online_ml/softmax.py), won bench/learners.py and
    # bench/handwriting.py (README "The learner"). Unset LEARNER_PARAMS: the job's parameters for
    # that learner, JOB_LEARNER_PARAMS (sgd: alpha 0.001; the others their own). The tutorial's
    # model is LEARNER=sgd LEARNER_PARAMS='{"alpha": 0.01}' (or '{}').
    learner: str = "softmax"
    learner_params: str = ""
    # scale-out (README "Parallel learners"): the job's parallelism when set (`flink run -p N`
    # also works), the source topic's partitions (>= the parallelism you run), and how often
    # the parallel learners merge their models through Redis: every SYNC_EVERY_RECORDS records
    # a learner learned, or every SYNC_INTERVAL_SECONDS. A learner silent for
    # LEARNER_TIMEOUT_SECONDS is dropped and its unmerged contribution expires.
    parallelism: int = 0
    # "merge" (one model learned by all) or "off": N independent learners, each backing up its
    # own model to the same key (only to show, in bench/scaleout.py, what goes wrong)
    sync: str = "merge"
    source_partitions: int = 4
    sync_every_records: int = 10
    sync_interval_seconds: float = 2.0
    learner_timeout_seconds: float = 30.0
    # how K SGD or softmax learners' deltas merge: "sqrt" (their weighted mean, taken √K times: measured
    # for SYNC_EVERY_RECORDS up to 100) or "mean" (the plain weighted mean: steadier at 250+)
    sync_merge_step: str = "sqrt"
    # the job watcher (python -m online_ml.watcher, README "Recovery without loss"): how often it
    # asks Flink for the training job (JOB_NAME), brings back a job that vanished or failed, and
    # writes the training state the server shows; a state older than 3 intervals is "unknown"
    watch_interval_seconds: float = 2.0
    # a record from the board's feedback (source "feedback"): the share of its step that also
    # goes straight into the averaged weights the softmax learner predicts with, so the lesson
    # shows in the next answers (README "Teaching it": chosen by bench/teaching.py on real
    # handwriting's development split: 0.25 for the softmax without its memory of records, 0.5
    # with it, 0.75 with training-time augmentation too, the default since late 2026-12-03: its
    # variants' steps dilute the average twice as fast); 0: an ordinary step, diluted in the
    # average (a correction changes nothing the board shows). Learners without averaged weights:
    # no effect.
    feedback_step_share: float = 0.75
    # how many corrections one client address may send through the board in a window of
    # FEEDBACK_WINDOW_SECONDS (online_ml/feedback_limit.py, counted in Redis; 0: no limit): a wrong
    # correction costs everyone's drawings (README "Teaching it", bench/teaching.py)
    feedback_limit: int = 20
    feedback_window_seconds: float = 600.0
    # how many reverse proxies (an ingress, a load balancer) stand in front of the server and
    # append the client's address to X-Forwarded-For: the server then counts FEEDBACK_LIMIT per
    # the address the nearest of them saw (werkzeug's ProxyFix). 0: the header is ignored, every
    # client is the address that connected (behind a proxy: one allowance for all), and a client
    # cannot name itself another to escape the limit. Set it to what is really in front: a header
    # no proxy of yours wrote is the client's to forge.
    trusted_proxies: int = 0
    # threads numpy's BLAS may use in the server and in the job's Python workers (online_ml/blas.py:
    # one halves a board request's CPU and the batch UDF's); 0 leaves BLAS as it is (every core)
    blas_threads: int = 1

    # env var name for each field, e.g. kafka_bootstrap_servers -> KAFKA_BOOTSTRAP_SERVERS
    @staticmethod
    def env_name(field_name: str) -> str:
        return field_name.upper()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> Settings:
        """Defaults, then environment variables, then explicit overrides (CLI flags).

        A value that cannot be converted raises ``ValueError`` naming the variable.
        """
        environ = os.environ if environ is None else environ
        values = {}
        for f in dataclasses.fields(cls):
            raw = _env(cls.env_name(f.name), "", environ)
            if raw == "":
                continue
            kind: type = type(f.default)
            try:
                values[f.name] = kind(raw)
            except ValueError:
                raise ValueError(
                    f"environment variable {cls.env_name(f.name)}={raw!r} is not a valid "
                    f"{kind.__name__}"
                ) from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        if settings.udf_mode not in ("row", "batch"):
            raise ValueError(f"UDF_MODE must be 'row' or 'batch', got {settings.udf_mode!r}")
        check_execution_mode(settings.udf_mode, settings.python_execution_mode)
        try:
            params = settings.learner_kwargs()
        except ValueError as exc:
            raise ValueError(f"LEARNER_PARAMS is not JSON: {exc}") from None
        if not isinstance(params, dict):
            raise ValueError("LEARNER_PARAMS must be a JSON object, e.g. '{\"alpha\": 0.001}'")
        if settings.sync not in ("merge", "off"):
            raise ValueError(f"SYNC must be 'merge' or 'off', got {settings.sync!r}")
        if settings.sync_merge_step not in ("sqrt", "mean"):
            raise ValueError("SYNC_MERGE_STEP must be 'sqrt' or 'mean', got "
                             f"{settings.sync_merge_step!r}")
        if not 0.0 <= settings.feedback_step_share <= 1.0:
            raise ValueError("FEEDBACK_STEP_SHARE must be between 0 and 1, got "
                             f"{settings.feedback_step_share}")
        if settings.feedback_limit < 0 or settings.feedback_window_seconds <= 0:
            raise ValueError("FEEDBACK_LIMIT must be >= 0 (0: no limit) and "
                             "FEEDBACK_WINDOW_SECONDS > 0")
        if settings.trusted_proxies < 0:
            raise ValueError(f"TRUSTED_PROXIES must be >= 0 (0: none), got {settings.trusted_proxies}")
        if settings.parallelism < 0 or settings.source_partitions < 1:
            raise ValueError("PARALLELISM must be >= 0 (0: Flink's default) and "
                             "SOURCE_PARTITIONS >= 1")
        if settings.sync_every_records < 1 or settings.sync_interval_seconds <= 0 \
                or settings.learner_timeout_seconds <= settings.sync_interval_seconds:
            raise ValueError("SYNC_EVERY_RECORDS must be >= 1, SYNC_INTERVAL_SECONDS > 0 and "
                             "LEARNER_TIMEOUT_SECONDS > SYNC_INTERVAL_SECONDS")
        if settings.blas_threads < 0:
            raise ValueError(f"BLAS_THREADS must be >= 0 (0: every core), got {settings.blas_threads}")
        if settings.batch_size < 1 or settings.max_predict_chunk < 1:
            raise ValueError("BATCH_SIZE and MAX_PREDICT_CHUNK must be >= 1")
        if settings.watch_interval_seconds <= 0:
            raise ValueError(f"WATCH_INTERVAL_SECONDS must be > 0, got {settings.watch_interval_seconds}")
        if not 0.0 < settings.alert_threshold <= 1.0:
            raise ValueError(f"ALERT_THRESHOLD must be in (0, 1], got {settings.alert_threshold}")
        if settings.alert_window < 1 or settings.alert_warmup < 0 or settings.alert_hysteresis < 0:
            raise ValueError("ALERT_WINDOW must be >= 1, ALERT_WARMUP and ALERT_HYSTERESIS >= 0")
        return settings

    def learner_kwargs(self) -> dict:
        """LEARNER_PARAMS, or when unset the job's parameters for LEARNER.

        >>> Settings().learner_kwargs(), Settings(learner="sgd").learner_kwargs()
        ({}, {'alpha': 0.001})
        >>> Settings(learner="sgd", learner_params='{"alpha": 0.01}').learner_kwargs()
        {'alpha': 0.01}
        """
        if not self.learner_params.strip():
            return dict(JOB_LEARNER_PARAMS.get(self.learner, {}))
        return json.loads(self.learner_params)

    def redis_client(self, **kwargs):
        """A redis-py client for these settings (imported lazily: the producer does not need it)."""
        import redis

        options: dict[str, Any] = dict(
            host=self.redis_host,
            port=self.redis_port,
            password=self.redis_password or None,
            db=self.redis_db,
            socket_connect_timeout=2,
            socket_timeout=5,
        )
        options.update(kwargs)
        return redis.Redis(**options)
