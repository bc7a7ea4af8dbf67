"""The producer's pure parts: which records, in which order, at which pace, shown how."""
import io
import itertools
import json
import subprocess
import sys
import time

import pytest

from online_ml import producer
from online_ml.config import Settings
from online_ml.harness.paths import ROOT
from online_ml.producer import Pacer, Progress, iter_records, load_dataset, make_message, parse_args
from online_ml.schema import decode_record, encode_prediction

N = 1797  # sklearn digits


def test_dataset_is_digits_as_ints():
    X, y = load_dataset()
    assert len(X) == len(y) == N
    assert all(len(row) == 64 for row in X)
    assert {type(v) for row in X for v in row} == {int}
    assert min(min(row) for row in X) == 0 and max(max(row) for row in X) == 16
    assert set(y) == set(range(10))


def test_every_message_is_valid_per_schema():
    for x, y in itertools.islice(iter_records(seed=1, epochs=1), 300):
        rec = decode_record(make_message(x, y))
        assert list(rec.x) == x and rec.actual_y == y
        assert rec.source == "producer"


def test_one_epoch_is_a_shuffled_permutation_of_the_data():
    X, y = load_dataset()
    sent = list(iter_records(seed=3, epochs=1))
    assert len(sent) == N
    assert sorted(map(tuple, (x for x, _ in sent))) == sorted(X)
    assert [label for _, label in sent] != list(y)  # not in the data set's order
    assert sorted(label for _, label in sent) == sorted(y)


def test_seed_is_reproducible_and_seeds_differ():
    a = list(itertools.islice(iter_records(seed=7), 50))
    b = list(itertools.islice(iter_records(seed=7), 50))
    c = list(itertools.islice(iter_records(seed=8), 50))
    assert a == b
    assert a != c


def test_each_epoch_is_reshuffled():
    sent = [label for _, label in iter_records(seed=5, epochs=2)]
    assert len(sent) == 2 * N
    assert sent[:N] != sent[N:]
    assert sorted(sent[:N]) == sorted(sent[N:])


def test_epochs_none_is_endless_and_zero_is_empty():
    assert len(list(itertools.islice(iter_records(seed=0), 3 * N + 5))) == 3 * N + 5
    assert list(iter_records(seed=0, epochs=0)) == []
    with pytest.raises(ValueError):
        list(iter_records(epochs=-1))


def test_custom_dataset():
    data = ([[1] * 64, [2] * 64], [1, 2])
    assert sorted(y for _, y in iter_records(seed=0, epochs=3, dataset=data)) == [1, 1, 1, 2, 2, 2]


# -- pacing ------------------------------------------------------------------------------------
class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_pacer_keeps_a_fixed_schedule():
    clock = FakeClock()
    pacer = Pacer(10, clock=clock, sleep=clock.sleep)
    for _ in range(11):
        pacer.wait()
        clock.now += 0.03  # time spent sending
    # 11 sends at 10/s: the 11th goes out 1.0 s after the first, work time included
    assert clock.now == pytest.approx(100.0 + 1.0 + 0.03)
    assert all(s == pytest.approx(0.07) for s in clock.sleeps)


def test_pacer_zero_rate_never_sleeps_and_stall_does_not_burst():
    clock = FakeClock()
    fast = Pacer(0, clock=clock, sleep=clock.sleep)
    for _ in range(100):
        fast.wait()
    assert clock.sleeps == []

    slow = Pacer(10, clock=clock, sleep=clock.sleep, max_lag=1.0)
    slow.wait()
    clock.now += 5.0  # e.g. send() blocked on metadata
    slow.wait()  # restarts the schedule: no sleep...
    slow.wait()  # ...and the next one waits a full interval instead of bursting
    assert clock.sleeps == [pytest.approx(0.1)]


# -- progress ----------------------------------------------------------------------------------
def test_progress_line_and_summary():
    p = Progress(started=0.0)
    p.sent = 20
    for _ in range(18):
        p.on_ack(None)
    p.on_error(RuntimeError("boom"))
    assert p.line(now=2.0) == "sent 20 | 10.0 rec/s | acked 18 | failed 1"
    p.sent = 25
    assert p.line(now=3.0).startswith("sent 25 | 5.0 rec/s")  # rate since the last line
    summary = p.summary(now=5.0)
    assert "sent 25 records in 5.0 s" in summary
    assert "acknowledged 18, failed 1, unconfirmed 6" in summary
    assert "RuntimeError: boom" in summary


# -- arguments ---------------------------------------------------------------------------------
def test_defaults_come_from_settings():
    settings = Settings.from_env({}, producer_rate=3.0, source_topic="t1",
                                 kafka_bootstrap_servers="h:1")
    args = parse_args([], settings)
    assert (args.rate, args.topic, args.bootstrap_servers) == (3.0, "t1", "h:1")
    assert args.count is None and args.epochs is None and args.seed is None and not args.quiet
    args = parse_args(["--rate", "0", "--count", "5", "--epochs", "2", "--seed", "4", "--quiet"],
                      settings)
    assert (args.rate, args.count, args.epochs, args.seed, args.quiet) == (0, 5, 2, 4, True)


@pytest.mark.parametrize("argv", [["--rate", "-1"], ["--count", "-2"], ["--epochs", "-1"],
                                  ["--rate", "fast"], ["--ids", ""], ["--ids", "x" * 81]])
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(argv, Settings())
    assert info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_ids_are_carried_by_the_record_and_its_prediction():
    """``--ids PREFIX``: record n carries the id PREFIX-n, and the job's prediction carries it
    on (a consumer of the sink can tell which record a prediction is for)."""
    record = decode_record(producer.make_message([0] * 64, 3, id="run7-12"))
    assert record.id == "run7-12" and record.source == producer.SOURCE
    assert json.loads(encode_prediction(record, 3))["id"] == "run7-12"
    assert decode_record(producer.make_message([0] * 64, 3)).id is None


def test_unreachable_broker_is_one_clear_line_and_exit_2():
    """A closed local port: no Kafka needed, and the user must not see a traceback."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "kafka_producer.py"), "--bootstrap-servers", "127.0.0.1:1",
         "--count", "1"],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "127.0.0.1:1" in lines[0] and "make up" in lines[0]
    # gives up after its 5 s bootstrap timeout instead of waiting out the 60 s delivery timeout:
    # measured 10-12 s with interpreter start-up on a busy 2-core machine
    assert time.monotonic() - started < 30


def test_invalid_address_is_explained():
    args = parse_args(["--bootstrap-servers", "host:notaport"], Settings())
    err = io.StringIO()
    assert producer.run(args, out=io.StringIO(), err=err) == 2
    assert "host:notaport" in err.getvalue()


def test_stall_is_detected_only_while_records_are_pending():
    p = Progress(started=0.0)
    assert p.stalled_for(1.0) == 0.0  # nothing sent
    p.sent = 3
    p.on_ack(None)
    assert p.stalled_for(2.0) == 0.0  # progress since the last check
    assert p.stalled_for(20.0) == 18.0  # 2 pending, no acknowledgement since t=2
    p.on_error(RuntimeError("x"))
    assert p.stalled_for(21.0) == 0.0
    p.on_ack(None)
    assert p.stalled_for(60.0) == 0.0  # everything acknowledged: idle is not stalled
