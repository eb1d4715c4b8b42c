"""The per-address rate limiter on a fake clock."""
import threading

import pytest

from cbam_viz.study.limits import RateLimiter


def test_sliding_window_per_key() -> None:
    now = [0.0]
    limiter = RateLimiter(3, 60.0, clock=lambda: now[0])
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b")  # another address has its own budget
    assert limiter.retry_after("a") == pytest.approx(60.0) and limiter.retry_after("b") == 0.0
    now[0] = 59.9
    assert not limiter.allow("a")  # refused calls are not counted, the window still ends at 60 s
    now[0] = 60.0
    assert limiter.allow("a") and limiter.retry_after("a") == 0.0  # the first three have left the window
    assert [limiter.allow("a") for _ in range(3)] == [True, True, False]


def test_exactly_the_limit_under_threads() -> None:
    limiter = RateLimiter(50, 3600.0)
    allowed = []
    threads = [threading.Thread(target=lambda: allowed.append(limiter.allow("x"))) for _ in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(allowed) == 50


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0, 60)
    with pytest.raises(ValueError):
        RateLimiter(1, 0)
