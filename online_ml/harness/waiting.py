"""Waiting for something with a deadline: the project's only way to synchronise with a process.

Why one implementation: the tests and the benchmarks both poll (a job RUNNING, a model in
Redis, a server answering) and both need the same three things from it: keep trying while the
thing is not up (its exceptions are expected then), give up early when waiting cannot help, and
fail at the deadline with a message that names what was awaited and the last error.

The failure, :class:`WaitTimeout`, is both an ``AssertionError`` (pytest reports a failed test,
not an error in the harness) and a ``TimeoutError`` (what the benchmarks catch and report).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError, TimeoutError):
    """The deadline passed before the awaited thing happened.

    >>> issubclass(WaitTimeout, AssertionError) and issubclass(WaitTimeout, TimeoutError)
    True
    """


class GiveUp(Exception):
    """Raised by a predicate when waiting longer cannot help (the job FAILED, the process
    exited): :func:`wait_for` lets it through at once instead of waiting out the deadline."""


def wait_for(predicate: Callable[[], T | None], timeout: float, what: str,
             interval: float = 0.5) -> T:
    """Call ``predicate`` until it returns something truthy, and return that.

    It is called at least once; exceptions other than :class:`GiveUp` count as "not yet" and the
    last one is named in the failure.

    >>> wait_for(lambda: 42, 1, "the answer")
    42
    >>> wait_for(lambda: 0, 0.05, "zero to be truthy", interval=0.01)
    Traceback (most recent call last):
    ...
    online_ml.harness.waiting.WaitTimeout: timed out after 0 s waiting for zero to be truthy
    """
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except GiveUp:
            raise
        except Exception as exc:  # the thing may not be up yet
            last_exc = exc
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:.0f} s waiting for {what}"
                              + (f" (last error: {last_exc!r})" if last_exc else ""))
        time.sleep(interval)
