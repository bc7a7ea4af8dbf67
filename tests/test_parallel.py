"""The job at parallelism N on the real stack, submitted with the flink CLI as a user does: N
learners, one served model that counts every record (online_ml/sync_protocol.py); a TaskManager
killed under it; a stop with a savepoint and a restart at another parallelism."""
from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid

import pytest
from kafka import KafkaConsumer
from sklearn.datasets import load_digits

from online_ml import augment, nearest
from online_ml.config import Settings
from online_ml.harness.flink import FlinkJobs
from online_ml.harness.kafka import Topics, produce
from online_ml.harness.paths import ROOT, STATE, VENV_BIN, venv_tool
from online_ml.harness.stack import pid_alive, service_pid, stack_script
from online_ml.harness.waiting import WaitTimeout, wait_for
from online_ml.learner import OnlineLearner, make_model
from online_ml.model_store import ModelStore
from online_ml.producer import iter_records
from online_ml.schema import encode_record

pytestmark = pytest.mark.integration


# -- helpers -------------------------------------------------------------------------------------
@pytest.fixture
def par_env(settings, redis_client, kafka_service, flink_service):
    """This test's topics (the source with 4 partitions, one per learner at most) and model key."""
    suffix = uuid.uuid4().hex[:8]
    with Topics(settings) as topics:
        env = {"SOURCE_TOPIC": topics.create(f"test_par_src_{suffix}", partitions=4),
               "SINK_TOPIC": topics.create(f"test_par_sink_{suffix}"),
               "DEAD_LETTER_TOPIC": topics.create(f"test_par_dead_{suffix}"),
               "ALERT_TOPIC": topics.create(f"test_par_alerts_{suffix}"),
               "KAFKA_GROUP_ID": topics.group(f"group_{suffix}")}
        # a job name of its own: the stack's job watcher looks after the demo's job only
        yield dict(os.environ, **env, JOB_NAME=f"test_parallel_{suffix}", MODEL_KEY=settings.model_key,
                   REDIS_DB=str(settings.redis_db), SYNC_INTERVAL_SECONDS="1",
                   BACKUP_INTERVAL_SECONDS="2", PATH=f"{VENV_BIN}:{os.environ['PATH']}")


@pytest.fixture(scope="module")
def two_taskmanagers(flink_service):
    """A second TaskManager process, standing in for a second machine (`TASKMANAGERS=2 make
    up`); stopped at the end if this module started it."""
    started = not pid_alive("flink-taskmanager-2")
    out = stack_script("up.sh", "flink", env={"TASKMANAGERS": "2"})
    assert out.returncode == 0, out.stdout + out.stderr
    yield
    if started:
        stack_script("down.sh", "flink-taskmanager-2")
    stack_script("up.sh", "flink")


STREAM = [(x, y) for x, y in itertools.islice(iter_records(seed=5, epochs=3), 3 * 1797)]


def records(n: int, start: int = 0, prefix: str = "r") -> list[bytes]:
    """``n`` records of the producer's shuffled stream, with unique ids: every prediction in the
    sink names its record."""
    return [encode_record(x, y, id=f"{prefix}-{i}")
            for i, (x, y) in enumerate(STREAM[start:start + n], start)]


def one_learner_accuracy(n: int, params: dict | None = None) -> float:
    """What one learner of the job's kind (parallelism 1: LEARNER, and LEARNER_PARAMS or
    ``params``) makes of the same ``n`` records, on all of digits."""
    settings = Settings()
    learner = OnlineLearner(make_model(settings.learner,
                                       **(settings.learner_kwargs() if params is None else params)))
    for x, y in STREAM[:n]:
        learner.learn_one(x, y)
    X, y = load_digits(return_X_y=True)
    return float((learner.model.predict(X) == y).mean())


class Sink(threading.Thread):
    """Counts the predictions in the sink topic per record id."""

    def __init__(self, bootstrap: str, topic: str):
        super().__init__(daemon=True)
        self.ids: dict[str, int] = {}
        self.errors: list[str] = []
        self._halt = threading.Event()
        self.consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap,
                                      auto_offset_reset="earliest", consumer_timeout_ms=500)

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                for message in self.consumer:
                    rid = json.loads(message.value).get("id")
                    self.ids[rid] = self.ids.get(rid, 0) + 1
            except Exception as exc:  # a broker hiccup must not end the count silently
                self.errors.append(repr(exc))
                time.sleep(0.5)
        self.consumer.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


class Versions(threading.Thread):
    """Every (version, samples_seen) of the served model, polled."""

    def __init__(self, store: ModelStore):
        super().__init__(daemon=True)
        self.store, self.seen = store, []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.2):
            meta = self.store.load_meta()
            if meta and (not self.seen or self.seen[-1][0] != meta["version"]):
                self.seen.append((meta["version"], meta.get("samples_seen", 0)))

    def stop(self) -> list[tuple[int, int]]:
        self._halt.set()
        self.join(10)
        return self.seen


def served_accuracy(store: ModelStore) -> float:
    X, y = load_digits(return_X_y=True)
    return float((store.load().model.predict(X) == y).mean())


def predicted(flink: FlinkJobs, job: str, sink: Sink, n: int, timeout: float, what: str) -> None:
    """Wait until the sink holds predictions for ``n`` records; on a timeout, say what the job
    was doing (its state, subtasks, restarts, last failure and the TaskManagers' direct memory):
    a CI run once timed out here with nothing else to go by, and once because a TaskManager's
    direct memory was spent (stack/flink/config.yaml, ``task.off-heap``)."""
    try:
        wait_for(lambda: len(sink.ids) >= n, timeout, what)
    except WaitTimeout as exc:
        try:
            info = flink.job(job)
            state = info.get("state")
            subtasks = [(v.get("name", "")[:40], v.get("status"), v.get("parallelism"))
                        for v in info.get("vertices", [])]
            overview = flink.overview()
            direct = {tm[-6:]: f"{used:.0f}/{limit:.0f} MB"
                      for tm, (used, limit) in flink.direct_memory().items()}
        except Exception as err:  # the REST API itself is the problem
            state, subtasks, overview, direct = f"unknown ({err!r})", [], {}, {}
        raise WaitTimeout(
            f"{exc}: {len(sink.ids)} predicted (sink errors: {sink.errors[-3:]}); "
            f"job {job} {state}, vertices {subtasks}, "
            f"restarts {flink.restarts_if_known(job)}, cluster {overview}, "
            f"TaskManagers' direct memory {direct}, last failure:\n"
            f"{flink.failure_if_any(job)[:3000]}") from exc


def settled_meta(store: ModelStore, samples: int, timeout: float = 60) -> dict:
    """The served model once it has seen ``samples`` records (merges lag one sync interval)."""
    return wait_for(lambda: (m := store.load_meta()) and m.get("samples_seen", 0) >= samples
                    and m, timeout, f"a served model that has seen {samples} records")


# -- tests -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("memory", [False, True], ids=["softmax-neighbours-0", "softmax"])
def test_two_learners_one_model(par_env, settings, redis_client, flink, two_taskmanagers, memory):
    # with memory (the default; without: LEARNER_PARAMS neighbours 0), the records each learner
    # remembered are merged into one memory of the newest (online_ml/nearest.py; sync.MEMORY)
    # three passes of digits: after 900 records SGD's last iterate is too noisy to compare one
    # run with another (one learner on digits: 0.900-0.940 over its last 100 of 900 records,
    # 0.962-0.971 over its last 100 of 5,391), and a served model that ends on a few unaveraged
    # steps read 0.754-0.939 in-process; CI once failed this test at 900 records, 0.878 vs 0.924
    n = len(STREAM)
    produce(settings.kafka_bootstrap_servers, par_env["SOURCE_TOPIC"], records(n))
    sink = Sink(settings.kafka_bootstrap_servers, par_env["SINK_TOPIC"])
    sink.start()
    store = ModelStore(redis_client, settings.model_key)
    try:
        env = dict(par_env, PARALLELISM="2")
        params = None if memory else {"neighbours": 0}
        if params:
            env["LEARNER_PARAMS"] = json.dumps(params)
        job = flink.submit("stream.py", env)
        hosts = wait_for(lambda: flink.fully_running(job) and subtask_hosts(flink, job), 90,
                         "the job RUNNING")
        assert len(set(hosts)) == 2, f"both subtasks on one TaskManager: {hosts}"
        predicted(flink, job, sink, n, 300, f"predictions for all {n} records")
        # one served model, merged from both learners, that has seen every record
        meta = settled_meta(store, n)
        assert meta["samples_seen"] == n and meta["learners"] == 2, meta
        if memory:  # one memory, every record of both learners counted once (each 1 once more,
            # mirrored with a base: the learner's ``mirrored`` and ``mirror_base``; a 1 itself
            # with a faint base, ``record_base``), the newest kept
            model = store.load().model
            ones = sum(1 for _, label in STREAM if label == 1)
            assert model.neighbours == 9 and model.memory_count_ == n + ones, model.memory_count_
            X, y = load_digits(return_X_y=True)
            labels: dict[tuple, set] = {}
            for image, label in zip(X.tolist(), y.tolist()):
                labels.setdefault(tuple(image), set()).add(label)
            digit_ones = X[y == 1]
            for image in (augment.with_base(augment.mirror(digit_ones), model.mirror_base).tolist()
                          + augment.with_base(digit_ones, model.record_base).tolist()):
                labels.setdefault(tuple(image), set()).add(1)
            kept, kept_y = nearest.chronological(model.memory_x_, model.memory_y_, n + ones)
            # records as they came, with their labels: not averaged, not mixed up
            assert all(model.classes_[int(c)] in labels.get(tuple(row), ())
                       for row, c in zip(kept.tolist(), kept_y.tolist()))
        history = [h["version"] for h in store.history()]
        assert history == sorted(history) and len(history) >= 2
        accuracy, alone = served_accuracy(store), one_learner_accuracy(n, params)
        print(f"\nparallelism 2, {n} records: served model accuracy on digits {accuracy:.3f} "
              f"(one learner: {alone:.3f}), {meta['version']} versions")
        # one learner of the job's own kind (it was SGD, 0.947, whatever the job ran): softmax
        # 0.992, with the memory 0.993; served through Flink 0.989 and 0.991 (2026-12-03). With
        # SGD, measured in-process (two Trainers in threads, 6 runs): 0.958-0.964 against 0.967;
        # two learners that never merge lose ~9 points at 900 records. The margin is for the
        # partitioning and the timing of the merges
        assert accuracy > alone - 0.02, (accuracy, alone)
    finally:
        sink.stop()


def test_one_of_two_taskmanagers_killed(par_env, settings, redis_client, flink,
                                        two_taskmanagers):
    """Two TaskManagers, one learner on each: kill -9 of one TaskManager JVM. Flink restarts the
    job, the surviving learner is not blocked, nothing acknowledged is lost from the sink, and
    the served model never goes backwards."""
    n = 3000
    produce(settings.kafka_bootstrap_servers, par_env["SOURCE_TOPIC"], records(n))
    sink = Sink(settings.kafka_bootstrap_servers, par_env["SINK_TOPIC"])
    store = ModelStore(redis_client, settings.model_key)
    versions = Versions(store)
    sink.start()
    versions.start()
    try:
        job = flink.submit("stream.py", dict(par_env, PARALLELISM="2", UDF_MODE="row"))
        hosts = wait_for(lambda: flink.fully_running(job) and subtask_hosts(flink, job), 90,
                         "the job RUNNING")
        assert len(set(hosts)) == 2, f"both subtasks on one TaskManager: {hosts}"
        wait_for(lambda: len(sink.ids) >= n // 4, 120, "a quarter of the records predicted")
        victim = service_pid("flink-taskmanager-2")
        assert victim is not None, "TaskManager 2 is not supervised"
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: service_pid("flink-taskmanager-2") not in (None, victim), 60,
                 "supervisord to start a new TaskManager")
        wait_for(lambda: flink.fully_running(job) and len(set(subtask_hosts(flink, job))) >= 1,
                 120, "the job RUNNING again")
        print(f"\nTaskManager 2 killed -> job RUNNING again after {time.monotonic() - killed:.1f} s")
        predicted(flink, job, sink, n, 180, f"predictions for all {n} records")
        missing = {f"r-{i}" for i in range(n)} - set(sink.ids)
        assert not missing, f"{len(missing)} acknowledged records never predicted"
        meta = settled_meta(store, n)
        seen = versions.stop()
        for (v0, s0), (v1, s1) in zip(seen, seen[1:]):
            assert v1 > v0 and s1 >= s0, f"the served model went backwards: {seen}"
        print(f"served model: version {meta['version']}, samples_seen {meta['samples_seen']} for "
              f"{n} records (replayed ones count again), accuracy {served_accuracy(store):.3f}")
    finally:
        sink.stop()
        versions.stop()


def subtask_hosts(flink: FlinkJobs, job: str) -> list[str]:
    """The TaskManager of each subtask of the job's first operator chain."""
    vertex = flink.job(job)["vertices"][0]["id"]
    detail = flink._call(f"/jobs/{job}/vertices/{vertex}")
    return [s.get("taskmanager-id") or s.get("host", "") for s in detail["subtasks"]]


def test_savepoint_restart_at_another_parallelism(par_env, settings, redis_client, flink):
    """`flink stop --savepointPath` at parallelism 2, then `flink run -s … ` at 3: training goes on
    from the merged model and the source offsets (no record predicted twice or skipped)."""
    first, second = 600, 300
    produce(settings.kafka_bootstrap_servers, par_env["SOURCE_TOPIC"], records(first))
    sink = Sink(settings.kafka_bootstrap_servers, par_env["SINK_TOPIC"])
    sink.start()
    store = ModelStore(redis_client, settings.model_key)
    savepoints = STATE / "flink" / "savepoints"
    try:
        job = flink.submit("stream.py", dict(par_env, PARALLELISM="2"))
        predicted(flink, job, sink, first, 180, f"predictions for all {first} records")
        settled_meta(store, first)
        out = subprocess.run([venv_tool("flink"), "stop", "-m", flink.address, "--savepointPath",
                              f"file://{savepoints}", job], cwd=ROOT, env=par_env,
                             capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stdout + out.stderr
        path = re.search(r"Savepoint completed\. Path: (\S+)", out.stdout)
        assert path, out.stdout
        before = settled_meta(store, first)
        assert before["samples_seen"] == first  # the stop merged and published everything

        produce(settings.kafka_bootstrap_servers, par_env["SOURCE_TOPIC"],
                records(second, start=first))
        job = flink.submit("stream.py", dict(par_env, PARALLELISM="3"),
                           flink_options=("-s", path.group(1)))
        predicted(flink, job, sink, first + second, 180, "predictions for the new records")
        assert all(count == 1 for count in sink.ids.values()), "a record was predicted twice"
        after = settled_meta(store, first + second)
        assert after["version"] > before["version"] and after["learners"] == 3, after
        assert after["samples_seen"] == first + second
    finally:
        sink.stop()
