"""How many corrections one client may send to the board: a window counted in Redis.

Why: a correction from the board moves the served weights at once and stays among the model's
lessons (README "Teaching it"), so a careless or hostile client that sends many wrong ones costs
everyone's drawings (``python bench/teaching.py``: the "wrong corrections by count" table says how
much). A limit per client bounds what one address can send in a window; the counts live in Redis,
beside the model, so every worker and replica of the server shares them and a restart does not
reset them. The address is the one the server sees: behind a reverse proxy, the proxy's, unless
``TRUSTED_PROXIES`` says how many proxies stand in front (the server then takes the address the
nearest one appended to ``X-Forwarded-For``; one a client wrote itself is not believed).

A fixed window: the count of ``who`` in the current window (``window_seconds`` long, aligned to
the epoch) is one Redis key that expires with the window; ``take`` adds one and refuses above
``limit`` with the seconds until the window ends. A correction Kafka did not store is given back.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable


class FeedbackLimited(Exception):
    """``who`` sent ``limit`` corrections in this window already; ``retry_after`` seconds until
    the next window (HTTP 429 with a ``Retry-After`` header)."""

    def __init__(self, limit: int, window_seconds: float, retry_after: int):
        self.limit, self.window_seconds, self.retry_after = limit, window_seconds, retry_after
        super().__init__(
            f"too many corrections from this address: at most {limit} in {_span(window_seconds)} "
            f"(FEEDBACK_LIMIT, FEEDBACK_WINDOW_SECONDS); try again in {retry_after} s")


def _span(seconds: float) -> str:
    """600 -> '10 minutes', 90 -> '90 s'."""
    if seconds >= 120 and seconds % 60 == 0:
        return f"{seconds / 60:g} minutes"
    return f"{seconds:g} s"


class FeedbackLimit:
    """At most ``limit`` corrections per ``window_seconds`` from one client (0: no limit).

    ``client`` is a redis client; ``prefix`` the model's key prefix, so a store's limits sit
    beside its model (``<prefix>:feedback_limit:<who>:<window>``). Redis errors propagate: the
    caller answers 503 rather than take corrections it cannot count.
    """

    def __init__(self, client, prefix: str, limit: int, window_seconds: float,
                 clock: Callable[[], float] = time.time):
        if limit < 0 or window_seconds <= 0:
            raise ValueError("the feedback limit must be >= 0 and its window > 0 seconds")
        self.client, self.prefix = client, prefix
        self.limit, self.window_seconds = int(limit), float(window_seconds)
        self.clock = clock

    def _window(self) -> tuple[int, float]:
        """(the current window's number, seconds until it ends)."""
        now = self.clock()
        number = math.floor(now / self.window_seconds)
        return number, (number + 1) * self.window_seconds - now

    def key(self, who: str, number: int) -> str:
        return f"{self.prefix}:feedback_limit:{who}:{number}"

    def take(self, who: str) -> str | None:
        """Count one correction of ``who``; raise :class:`FeedbackLimited` above the limit.
        Returns the key counted (for :meth:`give_back`), None when there is no limit."""
        if not self.limit:
            return None
        number, left = self._window()
        key = self.key(who, number)
        pipe = self.client.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, math.ceil(self.window_seconds) + 1)
        count, _ = pipe.execute()
        if int(count) > self.limit:
            raise FeedbackLimited(self.limit, self.window_seconds, max(1, math.ceil(left)))
        return key

    def give_back(self, key: str | None) -> None:
        """Uncount a correction that was not stored (Kafka did not take it)."""
        if key is not None:
            self.client.decr(key)
