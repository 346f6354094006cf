"""Rate-limited logging for the worker: an outage is a few lines, not a flood.

When the broker goes away, aiokafka and Faust log every failed connection attempt and
every failed request: a one-minute broker restart wrote about a thousand ERROR lines,
burying the line that said what happened. :class:`RateLimit` lets each kind of message
(logger, level and message template, so that the same message with other arguments
counts as the same kind) through ``burst`` times per ``window_s`` seconds and counts the
rest; the next line of that kind that gets through says how many were held back.

>>> import logging
>>> limit = RateLimit(burst=2, window_s=60.0, clock=iter([0, 1, 2, 3, 70]).__next__)
>>> recs = [logging.LogRecord("kafka", logging.ERROR, "x", 1, "node %s down", (i,), None) for i in range(5)]
>>> [limit.filter(r) for r in recs]
[True, True, False, False, True]
>>> recs[4].getMessage()
'node 4 down (2 similar messages suppressed in the last 60 s)'
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import faust


class RateLimit(logging.Filter):
    """At most ``burst`` records of each kind per ``window_s`` seconds (see the module docstring)."""

    def __init__(self, burst: int = 5, window_s: float = 30.0, clock: Callable[[], float] = time.monotonic,
                 max_kinds: int = 10_000) -> None:
        super().__init__()
        if burst < 1 or window_s <= 0:
            raise ValueError(f"burst must be >= 1 and window_s > 0, got {burst}, {window_s}")
        self.burst, self.window_s, self.clock, self.max_kinds = burst, window_s, clock, max_kinds
        self._kinds: dict[tuple[str, int, str], list[float]] = {}  # kind -> [window start, passed, held]

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, record.msg if isinstance(record.msg, str) else type(record.msg).__name__)
        now = self.clock()
        state = self._kinds.get(key)
        if state is None:
            if len(self._kinds) >= self.max_kinds:  # bounded: forget the oldest kinds
                self._kinds.pop(next(iter(self._kinds)))
            self._kinds[key] = [now, 1, 0]
            return True
        if now - state[0] >= self.window_s:
            held = int(state[2])
            self._kinds[key] = [now, 1, 0]
            if held:
                record.msg = f"{record.msg} ({held} similar messages suppressed in the last {self.window_s:g} s)"
            return True
        if state[1] < self.burst:
            state[1] += 1
            return True
        state[2] += 1
        return False


def rate_limit_handlers(logger: logging.Logger, limit: RateLimit | None = None) -> RateLimit:
    """Put one :class:`RateLimit` on every handler of ``logger`` (the root logger: all records)."""
    limit = limit or RateLimit()
    for h in logger.handlers:
        if not any(isinstance(f, RateLimit) for f in h.filters):
            h.addFilter(limit)
    return limit


class RateLimitedWorker(faust.Worker):
    """Faust's worker whose log handlers, once Faust has set them up, are rate-limited."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        rate_limit_handlers(logger)
