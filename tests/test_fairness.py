"""The server's fairness over raw HTTP: one budget of slots for every listener that explains, per-tab and
per-address limits, a bounded queue that answers "busy", and the slot of a client that has gone freed."""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from app_fixtures import models_dir, serve  # noqa: F401  (fixture)
from fairness_support import Gauge, Tab, fn_ids

from cbam_viz.data import render_sample
from cbam_viz.service import random_imagenet_set
from cbam_viz.ui.compare import OWN
from cbam_viz.ui.fairness import Limits, machine_limits

DEMO = ["demo", "gradcam", "layer4.1", OWN, False, "layer4.1", "baseline", "cbam"]  # compare's inputs after the image


def until(condition, timeout: float = 30.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Distinct generated images (distinct requests: no cache hit, no shared computation)."""
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for i in range(12):
        paths.append(folder / f"shape-{i}.png")
        render_sample(77, i).image.save(paths[-1])
    return paths


def test_one_budget_of_slots_across_every_listener(models_dir: Path, images: list[Path]) -> None:  # noqa: F811
    """The 12-slot regression: /compare, /export and the compare after a set change each had 4 slots of their own."""
    ctx = Gauge(models_dir=models_dir, device="cpu")
    limits = Limits(slots=2, slow_slots=1, per_address=50, address_running=50)
    with serve(ctx, limits) as url:
        ids = fn_ids(url)
        tabs = [Tab(url) for _ in range(9)]
        ctx.hold.clear()
        for i, tab in enumerate(tabs):
            payload = tab.upload(images[i])
            name = ("compare", "export", "after_set")[i % 3]
            data = [payload, *DEMO] if name != "export" else [payload, *DEMO[:4]]
            assert tab.join(ids[name], data).status_code == 200
            tab.listen()
        until(lambda: ctx.now == 2)
        time.sleep(1.5)  # the queue had time to start more, were it allowed
        assert ctx.now == ctx.peak == 2
        ctx.hold.set()
        for tab in tabs:
            (done,) = tab.wait()
            assert done["success"], done
            tab.leave()
        assert ctx.peak == 2


def test_one_running_and_few_waiting_per_tab_and_address_and_a_bounded_queue(models_dir: Path,  # noqa: F811
                                                                              images: list[Path]) -> None:
    ctx = Gauge(models_dir=models_dir, device="cpu")
    limits = Limits(slots=2, slow_slots=1, per_client=2, per_address=4, address_running=2, queue_size=3)
    with serve(ctx, limits, trusted_proxies=("127.0.0.1",)) as url:  # the X-Forwarded-For tabs: other addresses
        compare = fn_ids(url)["compare"]
        a, b, c = Tab(url), Tab(url), Tab(url)
        elsewhere = [Tab(url, {"X-Forwarded-For": f"203.0.113.{i}"}) for i in (1, 2)]
        ctx.hold.clear()
        assert a.join(compare, [a.upload(images[0]), *DEMO]).status_code == 200
        a.listen()
        assert a.join(compare, [a.upload(images[1]), *DEMO]).status_code == 200
        refused = a.join(compare, [a.upload(images[2]), *DEMO])
        assert refused.status_code == 503 and "Too many requests from this page" in refused.text
        until(lambda: ctx.now == 1)
        time.sleep(1.0)
        assert ctx.now == 1  # two slots, but the tab's second request waits for its first
        assert b.join(compare, [b.upload(images[3]), *DEMO]).status_code == 200
        b.listen()
        until(lambda: ctx.now == 2)
        assert c.join(compare, [c.upload(images[4]), *DEMO]).status_code == 200  # 4 from 127.0.0.1 now
        c.listen()
        refused = Tab(url).join(compare, [c.upload(images[5]), *DEMO])
        assert refused.status_code == 503 and "your network address" in refused.text
        far = elsewhere[0]
        assert far.join(compare, [far.upload(images[6]), *DEMO]).status_code == 200  # 3 waiting: the queue is full
        far.listen()
        refused = elsewhere[1].join(compare, [elsewhere[1].upload(images[7]), *DEMO])
        assert refused.status_code == 503 and "busy: try again" in refused.text
        ctx.hold.set()
        for tab, count in ((a, 2), (b, 1), (c, 1), (far, 1)):
            assert all(done["success"] for done in tab.wait(count))
        assert elsewhere[1].join(compare, [elsewhere[1].upload(images[7]), *DEMO]).status_code == 200  # room again
        elsewhere[1].listen()
        assert elsewhere[1].wait()[0]["success"]
        for tab in (a, b, c, *elsewhere):
            tab.leave()


@pytest.fixture(scope="module")
def slow_app(models_dir: Path) -> Iterator[str]:  # noqa: F811
    """The demo set and three random ResNet-50s (a Score-CAM of layer4.2 takes minutes here); every request
    counts as slow, so one slow slot holds them all."""
    ctx = Gauge(models_dir=models_dir, device="cpu")
    ctx.add(replace(random_imagenet_set("cpu"), name="resnet50-random"))
    limits = Limits(slots=2, slow_slots=1, slow_seconds=0.0, max_request_seconds=1e9, per_address=50,
                    address_running=50, connect_grace_s=2.0)
    with serve(ctx, limits) as url:
        yield url


SCORECAM = ["resnet50-random", "scorecam", "layer4.2", OWN, False, "layer4.2", "baseline", "cbam"]


@pytest.mark.parametrize("how", ["tab closed", "result never read"])
def test_the_slot_of_a_client_that_has_gone_is_freed_within_seconds(slow_app: str, images: list[Path], how: str) -> None:
    compare = fn_ids(slow_app)["compare"]
    gone, other = Tab(slow_app), Tab(slow_app)
    assert gone.join(compare, [gone.upload(images[8]), *SCORECAM]).status_code == 200
    if how == "tab closed":
        gone.listen()
        until(lambda: gone.started() == 1)
        time.sleep(1.0)  # computing its first batches
        gone.leave()
    left = time.monotonic()
    assert other.join(compare, [other.upload(images[9]), *DEMO]).status_code == 200  # needs the one slow slot
    other.listen()
    (done,) = other.wait(timeout=120)
    waited = time.monotonic() - left
    other.leave()
    assert done["success"]
    assert waited < 15, f"the slot freed after {waited:.1f} s"  # the Score-CAM alone takes minutes here


def test_the_cost_is_shown_and_checked_before_anything_computes(models_dir: Path, images: list[Path]) -> None:  # noqa: F811
    ctx = Gauge(models_dir=models_dir, device="cpu")
    ctx.measure_speed()
    fast, slow = ctx.estimate("demo", "gradcam", "layer4.1"), ctx.estimate("demo", "scorecam", "layer4.1")
    assert slow > 20 * fast  # 129 forward passes per model against 3
    limit = (fast * slow) ** 0.5
    with serve(ctx, Limits(max_request_seconds=limit, slow_seconds=limit / 100)) as url:
        ids = fn_ids(url)
        tab = Tab(url)
        note = tab.http.post("run/predict", json={"fn_index": ids["estimate"], "data": ["demo", "scorecam", "layer4.1"],
                                                  "session_hash": tab.session}).json()["data"][0]
        assert note.startswith("Estimated time: about ") and "above this server's limit" in note
        assert tab.join(ids["compare"], [tab.upload(images[10]), "demo", "scorecam", *DEMO[2:]]).status_code == 200
        tab.listen()
        (refused,) = tab.wait()
        assert not refused["success"] and "would take about" in refused["output"]["error"]
        assert ctx.peak == 0  # refused before computing
        assert tab.join(ids["compare"], [tab.upload(images[10]), *DEMO]).status_code == 200
        tab.listen()
        assert tab.wait(2)[1]["success"]
        tab.leave()


def test_limits_are_sized_from_the_machine_and_keep_a_fast_slot() -> None:
    cpu = machine_limits("cpu")
    assert 2 <= cpu.slots <= 8 and 1 <= cpu.slow_slots < cpu.slots
    assert machine_limits("cuda:0").slots == 4 and machine_limits("cpu", slots=6).slow_slots == 2
    with pytest.raises(ValueError, match="slow slots < slots"):
        machine_limits("cpu", slots=1)
    assert machine_limits("cpu", queue_size=None).queue_size == Limits().queue_size  # None: the default
