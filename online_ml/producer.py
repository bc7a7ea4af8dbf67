"""The data generator: shuffled sklearn ``digits`` records into Kafka, at a steady rate.

It stands in for "live, already feature-engineered data" (tutorial, section 2.1). The parts worth
testing are pure: ``iter_records`` (what is sent, in which order), ``Pacer`` (when) and
``Progress`` (what the user sees). ``run`` wires them to a real ``KafkaProducer``.
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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TextIO

from .config import Settings
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


def make_message(x: Sequence[int], actual_y: int, ts: str | None = None) -> bytes:
    """One Kafka value, validated against the contract (``schema.encode_record``)."""
    return encode_record(x, actual_y, ts=ts, source=SOURCE)


# -- when it is sent ---------------------------------------------------------------------------
class Pacer:
    """Releases one send every ``1/rate`` seconds on a fixed schedule, so sleeps don't add drift.

    ``rate <= 0`` means as fast as possible. After a stall longer than ``max_lag`` seconds (e.g. a
    blocked send) the schedule restarts instead of bursting to catch up.
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, max_lag: float = 1.0):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.clock, self.sleep, self.max_lag = clock, sleep, max_lag
        self._next: float | None = None

    def wait(self) -> None:
        if not self.interval:
            return
        now = self.clock()
        if self._next is None or now - self._next > self.max_lag:
            self._next = now
        delay = self._next - now
        if delay > 0:
            self.sleep(delay)
        self._next += self.interval


# -- what the user sees ------------------------------------------------------------------------
@dataclass
class Progress:
    """Counts of sent / acknowledged / failed records; updated from Kafka's I/O thread too."""

    started: float = field(default_factory=time.monotonic)
    finished: float | None = None  # when the last record was handed to Kafka
    sent: int = 0
    acked: int = 0
    failed: int = 0
    first_error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _last_time: float | None = field(default=None, repr=False)
    _last_sent: int = field(default=0, repr=False)
    _last_done: int = field(default=0, repr=False)
    _last_done_time: float = field(default_factory=time.monotonic, repr=False)

    def on_ack(self, _metadata=None) -> None:
        with self._lock:
            self.acked += 1

    def on_error(self, exc: BaseException) -> None:
        with self._lock:
            self.failed += 1
            if self.first_error is None:
                self.first_error = _reason(exc)

    def line(self, now: float | None = None) -> str:
        """``sent 120 | 10.0 rec/s | acked 118 | failed 0`` (rate since the previous line)."""
        now = time.monotonic() if now is None else now
        since, base = (self._last_time, self._last_sent) if self._last_time is not None else (
            self.started, 0)
        elapsed = now - since
        rate = (self.sent - base) / elapsed if elapsed > 0 else 0.0
        self._last_time, self._last_sent = now, self.sent
        return (f"sent {self.sent} | {rate:.1f} rec/s | acked {self.acked} | "
                f"failed {self.failed}")

    def stalled_for(self, now: float) -> float:
        """Seconds since the last acknowledgement or failure while records are pending, else 0.

        kafka-python keeps buffering while the broker is down, so without this the user would
        see a happily growing "sent" count and nothing else.
        """
        done = self.acked + self.failed
        if done != self._last_done or self.sent == done:
            self._last_done, self._last_done_time = done, now
            return 0.0
        return now - self._last_done_time

    def summary(self, now: float | None = None) -> str:
        """Totals; the rate covers the sending time, not the final wait for acknowledgements."""
        if now is None:
            now = self.finished if self.finished is not None else time.monotonic()
        elapsed = max(now - self.started, 1e-9)
        text = (f"sent {self.sent} records in {elapsed:.1f} s ({self.sent / elapsed:.1f} rec/s); "
                f"acknowledged {self.acked}, failed {self.failed}")
        if self.sent > self.acked + self.failed:
            text += f", unconfirmed {self.sent - self.acked - self.failed}"
        if self.first_error:
            text += f"; first error: {self.first_error}"
        return text


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


def _reason(exc: BaseException) -> str:
    text, name = str(exc), type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}" if text else name


def _unreachable(bootstrap: str, exc: BaseException) -> str:
    if isinstance(exc, ValueError):
        return (f"error: invalid Kafka address {bootstrap!r} ({exc}); expected host:port[,...] "
                f"in --bootstrap-servers or KAFKA_BOOTSTRAP_SERVERS.")
    return (f"error: cannot reach Kafka at {bootstrap} ({_reason(exc)}). "
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
        for x, y in records:
            if STOP.reason is not None:  # a signal asked us to stop: leave between two sends
                stopped_by = f"stopped by {STOP.reason}"
                break
            pacer.wait()
            future = producer.send(args.topic, value=make_message(x, y))
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
              f"{args.topic!r} in time ({_reason(exc)}). Check that the broker is up "
              f"(`make up`) and that the topic exists.", file=err)
        code = 2
    except KafkaError as exc:
        print(f"\nerror: sending to {args.topic!r} failed: {_reason(exc)}", file=err)
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
        print(f"\nwarning: some records were not acknowledged in time ({_reason(exc)})",
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
