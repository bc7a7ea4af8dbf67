"""The model store against a real Redis: versions, atomicity, retention, history, announcements,
refusal of corrupt or untrusted blobs, rollback, and the key names it owns."""
from __future__ import annotations

import io
import json
import os
import tempfile
import threading
import zipfile

import pytest
import skops.io as sio
from sklearn.linear_model import SGDClassifier

from online_ml import model_store
from online_ml.harness.waiting import wait_for
from online_ml.model_store import ModelFormatError, ModelStore, dumps, loads

pytestmark = pytest.mark.integration

MARKER = os.path.join(tempfile.gettempdir(), f"online_ml_untrusted_code_ran_{os.getpid()}")


class Untrusted:
    """Not a trusted type: loading a blob that contains it must not run its code."""

    def __init__(self):
        self.payload = "x"

    def __setstate__(self, state):
        with open(MARKER, "w") as f:  # proof that loading executed our code
            f.write("ran")
        self.__dict__.update(state)


def trained_model(alpha: float = 0.001) -> SGDClassifier:
    from online_ml.producer import load_dataset

    X, y = load_dataset()
    model = SGDClassifier(alpha=alpha, loss="log_loss")
    model.partial_fit(X[:300], y[:300], classes=list(range(10)))
    return model


@pytest.fixture
def store(redis_client, settings) -> ModelStore:
    return ModelStore(redis_client, settings.model_key, keep=10)


def test_save_and_load_round_trip(store):
    from online_ml.producer import load_dataset

    model = trained_model()
    meta = store.save(model, {"samples_seen": 300, "learner": "SGDClassifier"})
    assert meta["version"] == 1 and meta["format"] == "skops" and meta["size_bytes"] > 0
    stored = store.load()
    assert stored.version == 1
    assert stored.meta["samples_seen"] == 300 and stored.meta["learner"] == "SGDClassifier"
    X, _ = load_dataset()
    assert (stored.model.predict(X[300:400]) == model.predict(X[300:400])).all()
    assert store.current_version() == 1
    assert store.load(1).version == 1  # the kept copy too


def test_empty_store_has_no_model(store):
    assert store.load() is None
    assert store.load_meta() is None
    assert store.current_version() == 0
    assert store.history() == []


def test_versions_strictly_increase(store):
    versions = [store.save(SGDClassifier(alpha=0.1 * (i + 1)))["version"] for i in range(5)]
    assert versions == [1, 2, 3, 4, 5]


def test_versions_strictly_increase_with_two_writers(redis_client, settings):
    """Two jobs (or a job and a rollback) writing at once never reuse or reorder a version."""
    writers = [ModelStore(settings.redis_client(), settings.model_key) for _ in range(2)]
    got: list[list[int]] = [[], []]

    def write(i: int) -> None:
        for _ in range(25):
            got[i].append(writers[i].save(SGDClassifier())["version"])

    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for mine in got:
        assert mine == sorted(mine) and len(set(mine)) == len(mine)  # increasing per writer
    assert sorted(got[0] + got[1]) == list(range(1, 51))  # no version given twice
    assert ModelStore(redis_client, settings.model_key).current_version() == 50


def test_metadata_and_blob_of_one_version_always_match(redis_client, settings):
    """A reader polling while a writer saves many versions never sees a blob with another
    version's metadata (the model's alpha is stored in the metadata to check that)."""
    writer = ModelStore(settings.redis_client(), settings.model_key, keep=5)
    reader = ModelStore(settings.redis_client(), settings.model_key, keep=5)
    done = threading.Event()
    mismatches, reads = [], [0]

    def read() -> None:
        while not done.is_set():
            stored = reader.load()
            if stored is None:
                continue
            reads[0] += 1
            if stored.model.alpha != stored.meta["alpha"]:
                mismatches.append((stored.version, stored.model.alpha, stored.meta["alpha"]))

    t = threading.Thread(target=read)
    t.start()
    try:
        for i in range(1, 101):
            alpha = i / 1000
            writer.save(SGDClassifier(alpha=alpha), {"alpha": alpha})
    finally:
        done.set()
        t.join(30)
    assert reads[0] > 10, "the reader hardly ran; the check proves nothing"
    assert mismatches == []
    last = reader.load()
    assert last.version == 100 and last.model.alpha == last.meta["alpha"] == 0.1


def test_only_the_last_k_versions_are_kept(redis_client, settings):
    store = ModelStore(redis_client, settings.model_key, keep=3)
    for i in range(7):
        store.save(SGDClassifier(alpha=0.1 * (i + 1)), {"i": i})
    assert store.kept_versions() == [5, 6, 7]
    assert store.load(4) is None and store.load_meta(4) is None
    assert store.load(5).meta["i"] == 4
    for v in range(1, 5):
        assert not redis_client.exists(store.version_blob_key(v), store.version_meta_key(v))


def test_history_is_capped_and_ordered(store, monkeypatch):
    monkeypatch.setattr(model_store, "HISTORY_LENGTH", 5)
    for i in range(8):
        store.save(SGDClassifier(), {"i": i}, snapshot={"accuracy": i / 10, "samples_seen": i})
    history = store.history()
    assert [h["version"] for h in history] == [4, 5, 6, 7, 8]  # oldest first, capped
    assert [h["samples_seen"] for h in history] == [3, 4, 5, 6, 7]
    assert all(a["time"] <= b["time"] for a, b in zip(history, history[1:]))
    assert [h["version"] for h in store.history(limit=2)] == [7, 8]  # the newest ones
    store.save(SGDClassifier())  # no snapshot: no history entry
    assert len(store.history()) == 5


def test_a_new_version_is_announced(store, settings):
    subscriber = settings.redis_client().pubsub(ignore_subscribe_messages=True)
    subscriber.subscribe(store.channel)
    wait_for(lambda: subscriber.get_message(timeout=0.1) is None and
             settings.redis_client().pubsub_numsub(store.channel)[0][1] >= 1, 5, "the subscription")
    meta = store.save(SGDClassifier(), {"samples_seen": 42})

    def announced():
        message = subscriber.get_message(timeout=0.5)
        return message and json.loads(message["data"])

    got = wait_for(announced, 5, "the announcement of the new version")
    assert got["version"] == meta["version"] and got["samples_seen"] == 42
    subscriber.close()


def test_corrupt_blob_is_refused_with_model_format_error(store, redis_client):
    store.save(trained_model())
    good = redis_client.get(store.blob_key)
    for bad in (b"not a model at all", good[: len(good) // 2], b"PK\x03\x04" + b"\x00" * 100):
        redis_client.set(store.blob_key, bad)
        with pytest.raises(ModelFormatError):
            store.load()


def test_blob_naming_os_system_is_refused(store, redis_client):
    blob = sio.dumps({"hook": os.system})
    with pytest.raises(ModelFormatError, match="untrusted types: .*system"):
        loads(blob)
    redis_client.set(store.blob_key, blob)
    with pytest.raises(ModelFormatError, match="system"):
        store.load()


def test_blob_with_a_foreign_class_is_refused_and_nothing_runs(store, redis_client):
    if os.path.exists(MARKER):
        os.remove(MARKER)
    blob = sio.dumps(Untrusted())
    with pytest.raises(ModelFormatError, match="Untrusted"):
        loads(blob)
    redis_client.set(store.blob_key, blob)
    with pytest.raises(ModelFormatError):
        store.load()
    assert not os.path.exists(MARKER), "loading the blob ran code of an untrusted class"
    # the same class inside an otherwise good model's file (a tampered schema) is refused too
    good = dumps(SGDClassifier())
    tampered = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(tampered, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "schema.json":
                schema = json.loads(data)
                schema["__module__"], schema["__class__"] = Untrusted.__module__, "Untrusted"
                data = json.dumps(schema).encode()
            dst.writestr(item, data)
    with pytest.raises(ModelFormatError, match="Untrusted"):
        loads(tampered.getvalue())
    assert not os.path.exists(MARKER)


def test_rollback_to_previous_and_to_a_given_version(store):
    for alpha in (0.1, 0.2, 0.3):
        store.save(SGDClassifier(alpha=alpha), {"alpha": alpha})
    meta = store.rollback()  # to the previous one, as a new version
    assert meta["version"] == 4 and meta["rolled_back_from"] == 2
    assert store.load().model.alpha == 0.2 and store.load().meta["alpha"] == 0.2
    meta = store.rollback(1)
    assert meta["version"] == 5 and store.load().model.alpha == 0.1
    with pytest.raises(LookupError, match="99"):
        store.rollback(99)
    assert store.current_version() == 5  # a failed rollback changes nothing


def test_rollback_without_an_older_version(store):
    with pytest.raises(LookupError):
        store.rollback()
    store.save(SGDClassifier())
    with pytest.raises(LookupError):
        store.rollback()


def test_project_keys_are_exactly_the_stores(store, redis_client, settings):
    p = settings.model_key
    store.save(SGDClassifier(), snapshot={"accuracy": 0.5})
    store.save(SGDClassifier(), snapshot={"accuracy": 0.6})
    redis_client.set(p + "_other", "x")  # other keys that share the prefix's characters
    redis_client.set(p + "2:meta", "x")
    redis_client.set("unrelated", "x")
    assert store.project_keys() == sorted([
        p, f"{p}:meta", f"{p}:version", f"{p}:versions", f"{p}:history",
        f"{p}:v:1", f"{p}:v:2", f"{p}:meta:1", f"{p}:meta:2"])
    for key in store.project_keys():
        redis_client.delete(key)
    assert store.project_keys() == [] and redis_client.exists("unrelated", p + "_other") == 2
