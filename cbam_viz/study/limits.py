"""Per-client limits kept in the study database, so they survive restarts and hold across every process
of a deployment: new participants per address and hour (`Quota`), and a back-off for wrong admin
passwords per address (`Throttle`). A refused call returns at once (no sleeping in a worker thread).

Keys are client addresses (`cbam_viz.ui.clients.client_address`: forwarded headers count only from
trusted proxies). One address never affects another's limits.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from .storage import Store


class Quota:
    """At most `limit` counted events per key in each fixed window of `window_s` seconds (aligned to
    the epoch: a burst across a window's end can reach twice `limit`)."""

    def __init__(self, store: Store, scope: str, limit: int, window_s: float,
                 clock: Callable[[], float] = time.time):
        if limit < 1 or window_s <= 0:
            raise ValueError(f"need limit >= 1 and window_s > 0, got {limit}, {window_s}")
        self.store, self.scope, self.limit, self.window_s = store, scope, limit, window_s
        self._clock = clock

    def _window(self) -> int:
        return int(self._clock() // self.window_s * self.window_s)

    def take(self, key: str) -> int | None:
        """Count one event for `key`: its window (pass it to `refund`), or None when the key is over its
        limit (nothing counted)."""
        window = self._window()
        return window if self.store.take_quota(self.scope, key, window, self.limit) else None

    def refund(self, key: str, window: int) -> None:
        """Give back an event `take` counted in `window` (the call it was for did not happen)."""
        self.store.refund_quota(self.scope, key, window)


class Throttle:
    """Back-off per key: the first `free` consecutive failures cost nothing, each further one locks the
    key for `base_s` seconds, doubling per failure up to `max_s`; a success clears the key."""

    def __init__(self, store: Store, scope: str, free: int = 5, base_s: float = 2.0, max_s: float = 3600.0,
                 clock: Callable[[], float] = time.time):
        self.store, self.scope, self.free, self.base_s, self.max_s = store, scope, free, base_s, max_s
        self._clock = clock

    def lock_for(self, failures: int) -> float:
        """Seconds a key is refused after its `failures`-th consecutive failure."""
        over = failures - self.free
        return 0.0 if over <= 0 else min(self.max_s, self.base_s * 2 ** min(over - 1, 40))

    def wait(self, key: str) -> float:
        """Seconds until `key` may try again (0 when it may now)."""
        return max(0.0, self.store.lockout(self.scope, key)[1] - self._clock())

    def failed(self, key: str) -> float:
        """Count a failure of `key`; returns the seconds it must now wait."""
        now = self._clock()
        return max(0.0, self.store.add_failure(self.scope, key, self.lock_for, now) - now)

    def succeeded(self, key: str) -> None:
        """Clear `key`'s failures."""
        self.store.clear_failures(self.scope, key)
