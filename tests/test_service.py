"""The application service: no global lock around model calls, one computation per identical request."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from app_fixtures import models_dir  # noqa: F401  (fixture)

from cbam_viz import service
from cbam_viz.data import render_sample
from cbam_viz.service import AppContext


@pytest.fixture
def gated(monkeypatch):
    """`explain` that blocks while the gate is closed and counts its calls."""
    gate, calls, entered = threading.Event(), [], threading.Semaphore(0)
    real = service.explain

    def slow(models, image, **kwargs):
        calls.append(kwargs["method"])
        entered.release()
        assert gate.wait(60)
        return real(models, image, **kwargs)

    monkeypatch.setattr(service, "explain", slow)
    return gate, calls, entered


def test_a_slow_request_stalls_neither_cache_hits_nor_other_requests(models_dir: Path, gated) -> None:  # noqa: F811
    gate, calls, entered = gated
    ctx = AppContext(sets=["demo"], models_dir=models_dir, device="cpu")
    image, other = render_sample(5, 0).image, render_sample(5, 1).image
    gate.set()
    ctx.explain("demo", image, "gradcam")  # now cached
    gate.clear()
    slow = threading.Thread(target=ctx.explain, args=("demo", image, "scorecam"))
    slow.start()
    assert entered.acquire(timeout=60) and entered.acquire(timeout=60)  # the warm-up call, then Score-CAM
    result, timing = ctx.explain_timed("demo", image, "gradcam")  # a cache hit while Score-CAM computes
    assert timing.cached and timing.waited == 0 and timing.alongside == 1
    done = []
    fast = threading.Thread(target=lambda: done.append(ctx.explain_timed("demo", other, "gradcam")))
    fast.start()
    assert entered.acquire(timeout=60)  # a different request starts computing at once, beside Score-CAM
    gate.set()
    fast.join(60)
    slow.join(60)
    assert done[0][1].alongside == 1 and not done[0][1].cached
    assert calls == ["gradcam", "scorecam", "gradcam"]


def test_identical_requests_in_flight_are_computed_once(models_dir: Path, gated) -> None:  # noqa: F811
    gate, calls, entered = gated
    ctx = AppContext(sets=["demo"], models_dir=models_dir, device="cpu")
    image = render_sample(6, 2).image
    results = []
    threads = [threading.Thread(target=lambda: results.append(ctx.explain_timed("demo", image, "gradcam")))
               for _ in range(3)]
    threads[0].start()
    assert entered.acquire(timeout=60)
    for thread in threads[1:]:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join(60)
    assert calls == ["gradcam"] and len(results) == 3
    assert sum(not timing.cached for _, timing in results) == 1
    assert all(result is results[0][0] for result, _ in results)


def test_a_failed_computation_is_not_cached_and_reaches_every_waiter(models_dir: Path) -> None:  # noqa: F811
    ctx = AppContext(sets=["demo"], models_dir=models_dir, device="cpu")
    image = render_sample(6, 3).image
    with pytest.raises(ValueError, match="unknown CAM method"):
        ctx.explain("demo", image, "magic")
    with pytest.raises(ValueError, match="unknown CAM method"):  # computed again, not a cached failure
        ctx.explain("demo", image, "magic")
    assert ctx.explain("demo", image, "gradcam")["cbam"].cam.shape == (64, 64)


def test_a_cancelled_computation_is_computed_by_the_request_waiting_for_it(models_dir: Path, gated) -> None:  # noqa: F811
    """The first request's client goes (its should_stop turns True): the identical request waiting for its result
    computes it itself instead of failing."""
    gate, calls, entered = gated
    ctx = AppContext(sets=["demo"], models_dir=models_dir, device="cpu")
    image, gone, outcome = render_sample(6, 4).image, threading.Event(), []

    def first() -> None:
        try:
            ctx.explain_timed("demo", image, "scorecam", should_stop=gone.is_set)
        except service.Cancelled:
            outcome.append("cancelled")

    owner = threading.Thread(target=first)
    owner.start()
    assert entered.acquire(timeout=60)
    waiter = threading.Thread(target=lambda: outcome.append(ctx.explain_timed("demo", image, "scorecam")))
    waiter.start()
    time.sleep(0.5)  # the waiter is waiting for the owner's result
    gone.set()
    gate.set()
    owner.join(60)
    waiter.join(60)
    assert outcome[0] == "cancelled" and not outcome[1][1].cached and calls == ["scorecam", "scorecam"]
