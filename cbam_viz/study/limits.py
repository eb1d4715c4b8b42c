"""Per-client rate limits (joining a study, admin password attempts), in memory, thread-safe.

A sliding window: at most `limit` events per key within `window_s` seconds. A refused call returns
at once (no sleeping in a worker thread). Keys are the client addresses the server sees (headers
such as X-Forwarded-For are not trusted: a client could forge them); behind a reverse proxy every
client shares the proxy's address, so raise the limit there.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

MAX_KEYS = 100_000  # the least recently seen keys are forgotten beyond this


class RateLimiter:
    """`allow(key)` is True for at most `limit` calls per `key` in any `window_s` seconds."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic):
        if limit < 1 or window_s <= 0:
            raise ValueError(f"need limit >= 1 and window_s > 0, got {limit}, {window_s}")
        self.limit, self.window_s = limit, window_s
        self._clock = clock
        self._events: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        """Count one event for `key`, unless it is over its limit (then nothing is counted)."""
        now = self._clock()
        with self._lock:
            events = self._events.pop(key, None) or deque()
            while events and events[0] <= now - self.window_s:
                events.popleft()
            allowed = len(events) < self.limit
            if allowed:
                events.append(now)
            self._events[key] = events
            while len(self._events) > MAX_KEYS:
                self._events.popitem(last=False)
            return allowed

    def retry_after(self, key: str) -> float:
        """Seconds until `key` may act again (0 when it may now)."""
        with self._lock:
            events = self._events.get(key)
            if not events or len(events) < self.limit:
                return 0.0
            return max(0.0, events[0] + self.window_s - self._clock())
