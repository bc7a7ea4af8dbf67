"""The data generator: shuffled sklearn ``digits`` records into Kafka, at a steady rate.

It stands in for "live, already feature-engineered data" (tutorial, section 2.1). The parts worth
testing are pure: ``iter_records`` (what is sent, in which order), ``Pacer`` (when) and
``Progress`` (what the user sees; both in producer_progress.py). ``run`` wires them to a real
``KafkaProducer``.
"""
from __future__ import annotations

import argparse
import collections
import itertools
import logging
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import TextIO

from .config import Settings
from .producer_progress import Pacer, Progress, reason
from .schema import encode_record

log = logging.getLogger(__name__)

SOURCE = "producer"  # value of the record's optional "source" field (the board sends "feedback")


# -- what is sent ------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def load_dataset() -> tuple[tuple[tuple[int, ...], ...], tuple[int, ...]]:
    """sklearn's digits as plain ints (1797 images of 8x8 pixels, values 0..16, labels 0..9)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = tuple(tuple(int(v) for v in row) for row in digits.data)
    y = tuple(int(v) for v in digits.target)
    return X, y


def iter_records(
    seed: int | None = None,
    epochs: int | None = None,
    dataset: tuple[Sequence[Sequence[int]], Sequence[int]] | None = None,
) -> Iterator[tuple[list[int], int]]:
    """Yield ``(x, actual_y)`` pairs: the data set in a new random order on every pass.

    ``epochs=None`` loops forever (the tutorial's behaviour); the same ``seed`` gives the same
    sequence. Reshuffling each pass keeps a long run from replaying one fixed order, which a
    learner could otherwise exploit.

    >>> X, y = [[0] * 64, [1] * 64, [2] * 64], [0, 1, 2]
    >>> sorted(label for _, label in iter_records(seed=1, epochs=2, dataset=(X, y)))
    [0, 0, 1, 1, 2, 2]
    """
    if epochs is not None and epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    X, y = load_dataset() if dataset is None else dataset
    if len(X) != len(y):
        raise ValueError(f"dataset has {len(X)} images but {len(y)} labels")
    if not len(X):
        return
    rng = random.Random(seed)
    order = list(range(len(X)))
    passes = itertools.count() if epochs is None else range(epochs)
    for _ in passes:
        rng.shuffle(order)
        for i in order:
            yield list(X[i]), int(y[i])


def make_message(x: Sequence[int], actual_y: int, ts: str | None = None,
                 id: str | None = None) -> bytes:
    """One Kafka value, validated against the contract (``schema.encode_record``); ``id``, when
    given, is carried to the prediction in ``digit_predict``."""
    return encode_record(x, actual_y, ts=ts, source=SOURCE, **({} if id is None else {"id": id}))


# -- wiring ------------------------------------------------------------------------------------
def build_parser(settings: Settings | None = None) -> argparse.ArgumentParser:
    settings = settings or Settings.from_env()
    p = argparse.ArgumentParser(
        prog="kafka_producer.py",
        description="Stream shuffled sklearn digits records into Kafka as JSON "
                    '{"ts", "x"[64], "actual_y"}, like live, feature-engineered data.')
    p.add_argument("--rate", type=float, default=settings.producer_rate,
                   help="records per second, 0 = as fast as possible "
                        "(default %(default)s, env PRODUCER_RATE)")
    p.add_argument("--count", type=int, default=None, metavar="N",
                   help="stop after N records (default: no limit)")
    p.add_argument("--epochs", type=int, default=None, metavar="E",
                   help="stop after E passes over the data set, reshuffled each pass "
                        "(default: forever)")
    p.add_argument("--topic", default=settings.source_topic,
                   help="target topic (default %(default)s, env SOURCE_TOPIC)")
    p.add_argument("--bootstrap-servers", default=settings.kafka_bootstrap_servers,
                   help="Kafka bootstrap servers (default %(default)s, "
                        "env KAFKA_BOOTSTRAP_SERVERS)")
    p.add_argument("--seed", type=int, default=None,
                   help="shuffle seed for a reproducible order (default: random, printed)")
    p.add_argument("--ids", metavar="PREFIX", default=None,
                   help="give record n (from 0) the id PREFIX-n, carried to its prediction in "
                        "the sink topic: a consumer can tell which record it is (the scale-out "
                        "benchmark counts each record in the pass it belongs to)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def parse_args(argv: Sequence[str] | None = None,
               settings: Settings | None = None) -> argparse.Namespace:
    parser = build_parser(settings)
    args = parser.parse_args(argv)
    if args.rate < 0:
        parser.error(f"--rate must be >= 0, got {args.rate}")
    if args.count is not None and args.count < 0:
        parser.error(f"--count must be >= 0, got {args.count}")
    if args.epochs is not None and args.epochs < 0:
        parser.error(f"--epochs must be >= 0, got {args.epochs}")
    if args.ids is not None and not 0 < len(args.ids) <= 80:
        parser.error(f"--ids must be a prefix of 1..80 characters, got {len(args.ids)}")
    return args


MAX_PENDING = 20000  # records sent but not yet acknowledged, at most


def _connect(bootstrap: str):
    from kafka import KafkaProducer

    return KafkaProducer(
        bootstrap_servers=[s.strip() for s in bootstrap.split(",") if s.strip()],
        client_id="online_ml-producer",
        acks="all",
        linger_ms=5,  # a few ms of batching at high rates; invisible at 10 rec/s
        batch_size=256 * 1024,  # records are ~300 bytes: fewer, larger requests at --rate 0
        bootstrap_timeout_ms=5000,
        max_block_ms=10000,  # how long send() may wait for topic metadata
        delivery_timeout_ms=60000,  # must exceed linger_ms + request_timeout_ms (30 s)
    )


def _unreachable(bootstrap: str, exc: BaseException) -> str:
    if isinstance(exc, ValueError):
        return (f"error: invalid Kafka address {bootstrap!r} ({exc}); expected host:port[,...] "
                f"in --bootstrap-servers or KAFKA_BOOTSTRAP_SERVERS.")
    return (f"error: cannot reach Kafka at {bootstrap} ({reason(exc)}). "
            f"Is the local stack running? Start it with `make up`, or point "
            f"--bootstrap-servers / KAFKA_BOOTSTRAP_SERVERS at your broker.")


def run(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Send records until done or interrupted; return the process exit code.

    0: done (or stopped with Ctrl-C) and every record acknowledged; 1: some records were not
    acknowledged; 2: Kafka unreachable or the topic unavailable.
    """
    from kafka.errors import KafkaError, KafkaTimeoutError

    # kafka-python logs every failed connection attempt; the user gets one clear line instead.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)

    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    try:
        load_dataset()  # the sklearn import takes seconds; not inside the timed, paced loop
        producer = _connect(args.bootstrap_servers)
    except (KafkaError, ValueError, OSError) as exc:
        print(_unreachable(args.bootstrap_servers, exc), file=err)
        return 2
    except KeyboardInterrupt:
        print("stopped by Ctrl-C before connecting; nothing sent", file=out)
        return 0

    rate_text = "as fast as possible" if args.rate == 0 else f"{args.rate:g} rec/s"
    limits = []
    if args.count is not None:
        limits.append(f"{args.count} records")
    if args.epochs is not None:
        limits.append(f"{args.epochs} epoch{'s' if args.epochs != 1 else ''}")
    print(f"producing to {args.topic} @ {args.bootstrap_servers}, {rate_text}, seed {seed}, "
          f"until {' or '.join(limits) if limits else 'Ctrl-C'}", file=out, flush=True)

    records = iter_records(seed=seed, epochs=args.epochs)
    if args.count is not None:
        records = itertools.islice(records, args.count)
    progress = Progress()
    pacer = Pacer(args.rate)
    tty = hasattr(err, "isatty") and err.isatty()
    interval = 1.0 if tty else 10.0
    next_report = time.monotonic() + interval
    next_check, warned = time.monotonic() + 1.0, False
    stall_limit = 15.0
    code, stopped_by = 0, None

    def show(text: str, final: bool = False) -> None:
        if args.quiet:
            return
        if tty:
            print("\r" + text + "\033[K", end="\n" if final else "", file=err, flush=True)
        elif not final:
            print(text, file=err, flush=True)

    progress.started = time.monotonic()
    pending: collections.deque = collections.deque()
    try:
        for n, (x, y) in enumerate(records):
            if STOP.reason is not None:  # a signal asked us to stop: leave between two sends
                stopped_by = f"stopped by {STOP.reason}"
                break
            pacer.wait()
            future = producer.send(args.topic, value=make_message(
                x, y, id=None if args.ids is None else f"{args.ids}-{n}"))
            progress.sent += 1
            future.add_callback(progress.on_ack)
            future.add_errback(progress.on_error)
            # Bound what waits for an acknowledgement. Without this, at --rate 0 this loop
            # starves kafka-python's sender thread (one GIL), batches wait in the buffer past
            # delivery_timeout_ms and expire: 2.2 M of 3 M records failed that way.
            pending.append(future)
            if len(pending) > MAX_PENDING:
                while len(pending) > MAX_PENDING // 2:
                    oldest = pending.popleft()
                    if not oldest.is_done:
                        try:
                            oldest.get(timeout=60)
                        except KafkaError:
                            pass  # counted by its errback
            now = time.monotonic()
            if now >= next_report:
                show(progress.line(now))
                next_report = now + interval
            if now >= next_check:
                next_check = now + 1.0
                stalled = progress.stalled_for(now)
                if stalled >= stall_limit and not warned:
                    print(f"\nwarning: no acknowledgement from Kafka at {args.bootstrap_servers} "
                          f"for {stalled:.0f} s ({progress.sent - progress.acked - progress.failed}"
                          f" records pending). Is the broker still up? (`make up`)",
                          file=err, flush=True)
                    warned = True
                elif stalled == 0 and warned:
                    print("\nKafka is acknowledging records again", file=err, flush=True)
                    warned = False
    except KeyboardInterrupt as exc:
        stopped_by = f"stopped by {exc.args[0] if exc.args else 'Ctrl-C'}"
    except KafkaTimeoutError as exc:
        print(f"\nerror: Kafka at {args.bootstrap_servers} did not accept records for topic "
              f"{args.topic!r} in time ({reason(exc)}). Check that the broker is up "
              f"(`make up`) and that the topic exists.", file=err)
        code = 2
    except KafkaError as exc:
        print(f"\nerror: sending to {args.topic!r} failed: {reason(exc)}", file=err)
        code = 2
    finally:
        progress.finished = time.monotonic()
        show(progress.line(), final=True)
        forced = not _close(producer, err)

    summary = progress.summary()
    print(f"{stopped_by + ': ' if stopped_by else ''}{summary}", file=out, flush=True)
    if code == 0 and (progress.failed or progress.acked < progress.sent):
        code = 1
    if forced:
        raise ForcedExit(code)
    return code


class ForcedExit(Exception):
    """The producer could not be closed cleanly (second Ctrl-C, or records still pending).

    ``main`` then leaves with ``os._exit``: kafka-python would otherwise retry the close from its
    destructor at interpreter exit and print tracebacks.
    """

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


def _close(producer, err: TextIO) -> bool:
    """Wait (bounded) for outstanding acknowledgements; False if the producer is left open."""
    from kafka.errors import KafkaError

    try:
        producer.flush(timeout=10)
        producer.close(timeout=5)
        return True
    except KeyboardInterrupt:
        print("\nsecond interrupt: not waiting for the remaining acknowledgements", file=err)
    except KafkaError as exc:
        print(f"\nwarning: some records were not acknowledged in time ({reason(exc)})",
              file=err)
    return False


class STOP:
    """Set by the first Ctrl-C or SIGTERM: the send loop stops between two records, then
    flushes and summarises. Raising KeyboardInterrupt from the handler instead can land anywhere
    inside kafka-python, e.g. while it holds a lock (a producer that ignored SIGINT for 30 s was
    seen once in tests/test_load.py). A second signal still interrupts at once."""

    reason: str | None = None


def _on_stop_signal(signum, frame) -> None:
    name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    if STOP.reason is not None:
        raise KeyboardInterrupt(name)
    STOP.reason = name


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except ValueError as exc:  # a bad setting in the environment: say which, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_stop_signal)
        signal.signal(signal.SIGTERM, _on_stop_signal)  # `kill` behaves like Ctrl-C
    try:
        return run(args)
    except ForcedExit as exc:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exc.code)
