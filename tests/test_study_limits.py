"""The per-address limits kept in the study database: quotas per window and the password back-off."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from cbam_viz.study import open_store
from cbam_viz.study.limits import Quota, Throttle


def test_quota_per_key_and_window_with_refunds_shared_by_two_stores(tmp_path: Path) -> None:
    now = [7200.0]
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    with open_store(url) as one, open_store(url) as two:  # two processes of one deployment
        first, second = (Quota(store, "join", 3, 3600.0, clock=lambda: now[0]) for store in (one, two))
        windows = [first.take("a"), second.take("a")]
        assert windows == [7200, 7200] and first.take("a") == 7200
        assert second.take("a") is None and first.take("a") is None  # full, whoever asks
        assert first.take("b") == 7200  # another address has its own quota
        second.refund("a", 7200)  # a join that did not happen
        assert first.take("a") == 7200 and second.take("a") is None
        now[0] += 3600  # the next window
        assert second.take("a") == 10800
    with pytest.raises(ValueError):
        Quota(one, "join", 0, 60)


def test_exactly_the_limit_under_threads(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'db.sqlite3'}") as store:
        quota = Quota(store, "join", 20, 3600.0)
        results: list[int | None] = []
        threads = [threading.Thread(target=lambda: results.extend(quota.take("k") for _ in range(5))) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(r is not None for r in results) == 20


def test_throttle_backs_off_per_key_and_a_success_clears_it(tmp_path: Path) -> None:
    now = [1000.0]
    with open_store(f"sqlite:///{tmp_path / 'db.sqlite3'}") as store:
        throttle = Throttle(store, "password", free=2, base_s=2.0, max_s=60.0, clock=lambda: now[0])
        assert [throttle.failed("a") for _ in range(5)] == [0.0, 0.0, 2.0, 4.0, 8.0]
        assert throttle.wait("a") == 8.0 and throttle.wait("b") == 0.0  # never another key
        assert throttle.lock_for(40) == 60.0  # capped
        now[0] += 8
        assert throttle.wait("a") == 0.0
        throttle.succeeded("a")
        assert throttle.failed("a") == 0.0  # counting starts again
