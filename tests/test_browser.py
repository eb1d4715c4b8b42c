"""The Compare tab in a real browser: Playwright's Python package driving Debian's Chromium.

Never `playwright install`: the test uses the `chromium` binary on PATH and FAILS without it
(.ci/run installs it). It saves the README's screenshots: docs/screenshot-compare.png (the demo set) and
docs/screenshot-compare-three.png (a three-model ResNet-50 set, random weights, on a photo).
"""
from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from app_fixtures import serve, write_models
from PIL import Image
from browser_support import chromium_page
from playwright.sync_api import Page, expect

from cbam_viz.data import CLASSES, DIFFICULTIES, render_sample
from cbam_viz.explain import explain_batch
from cbam_viz.models.sets import load_set, role_title
from cbam_viz.render import panels
from cbam_viz.service import AppContext, random_imagenet_set
from cbam_viz.ui.compare import EXAMPLE_SEED, OWN, TRUTH

pytestmark = pytest.mark.browser
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "screenshot-compare.png"
SCREENSHOT_THREE = SCREENSHOT.with_name("screenshot-compare-three.png")
THREE = "resnet50-random"
TIMEOUT_MS = 60_000  # a shared 2-core machine can be slow
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The bundled (trained) demo set, for a meaningful screenshot, and the three-model ResNet-50 set."""
    ctx = AppContext(models_dir=write_models(tmp_path_factory.mktemp("trained"), trained_demo=True), device="cpu")
    ctx.add(replace(random_imagenet_set("cpu"), name=THREE))
    with serve(ctx) as url:
        yield url


@pytest.fixture(scope="module")
def page(app_url: str) -> Iterator[Page]:
    with chromium_page(1400, 1000, TIMEOUT_MS) as page:
        page.goto(app_url)
        yield page


def choose(page: Page, label: str, option: str, search: str | None = None) -> None:
    """Pick ``option`` in the dropdown labelled ``label``, typing ``search`` first to filter the list."""
    box = page.get_by_role("combobox", name=label)
    box.click()
    if search:
        box.fill(search)
    page.get_by_role("option", name=option, exact=True).click()


def expect_images(page: Page, *selectors: str) -> None:
    for selector in selectors:
        image = page.locator(f"{selector} img").first
        expect(image).to_be_visible()
        page.wait_for_function("s => document.querySelector(s)?.naturalWidth > 0", arg=f"{selector} img")


# Text that must show in full: block titles, gallery captions, table cells, headings, list items of the summary
# and the legend, the set's description. An element is clipped when its content is larger than its box.
TEXT = ("label[data-testid=block-label], #views .caption-label, #summary td, #summary th, #summary li, #top5 td, "
        "#top5 th, #top-channels td, #top-channels th, #legend li, #set-info p, .prose h3")
CLIPPED = """s => [...document.querySelectorAll(s)].filter(e => e.offsetParent !== null)
  .filter(e => e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1)
  .map(e => `${e.tagName} ${e.scrollWidth}x${e.scrollHeight} in ${e.clientWidth}x${e.clientHeight}: ${e.textContent.trim()}`)"""
# Where Gradio's label sits over an image, and where the image shows (the page's pixels, after scaling).
LABEL_OVER_IMAGE = """s => { const b = document.querySelector(s + ' label[data-testid=block-label]').getBoundingClientRect();
  const i = document.querySelector(s + ' img'); const r = i.getBoundingClientRect();
  return {label_bottom: b.bottom, top: r.top, scale: r.height / i.naturalHeight}; }"""


def expect_every_panel_named_and_nothing_clipped(page: Page, titles: list[str]) -> None:
    """Each CAM's caption is its model's full title, then the class its map explains; the attention panels'
    first title lies below Gradio's label (panels.TOP pixels are left for it; test_panels checks every model's
    title is drawn); no text clipped."""
    expect(page.locator("#views .caption-label")).to_have_text([re.compile("^" + re.escape(t) + r" · explains .+ \(\d+\.\d%\)$")
                                                                for t in titles])
    for selector in ("#spatial", "#channels"):
        box = page.evaluate(LABEL_OVER_IMAGE, selector)
        assert box["label_bottom"] <= box["top"] + panels.TOP * box["scale"] + 1, (selector, box)
    assert page.evaluate(CLIPPED, TEXT) == []


def misclassified_example() -> tuple[str, str, str]:
    """(class, model title, predicted class) of the first Compare-tab example that a bundled demo model gets wrong."""
    demo = load_set("demo", device="cpu")
    samples = [render_sample(EXAMPLE_SEED, i, difficulty=DIFFICULTIES[demo.generator]) for i in range(len(CLASSES))]  # as the tab draws them
    results = explain_batch(demo.models, [s.image for s in samples])
    for i, sample in enumerate(samples):
        for role, by_image in results.items():
            if by_image[i].prediction != sample.label:
                return sample.class_name, demo.models[role].info.title, CLASSES[by_image[i].prediction]
    raise AssertionError("every bundled demo model classifies every example correctly: this check needs a mistake")


def test_compare_tab(page: Page) -> None:
    summary = page.locator("#summary")
    page.get_by_text("demo: circle", exact=True).click()  # an example from the gallery
    expect(summary).to_contain_text("Grad-CAM of layer4.1 for the ground truth, circle", timeout=TIMEOUT_MS)
    expect(summary).to_contain_text("pointing game")  # the example's ground truth is known
    expect(summary).to_contain_text("rank hit")
    expect(page.locator("#views")).to_contain_text("explains circle")  # every caption names its class
    expect_images(page, "#views", "#spatial", "#channels")
    expect(page.locator("#slider img")).to_have_count(2)
    expect(page.locator("#views img")).to_have_count(3)  # one CAM per model of the demo set: baseline, SE, CBAM
    expect(page.locator("#top5")).to_contain_text("SE · ")
    expect(page.locator("#top5")).to_contain_text("CBAM · ")
    demo = ["ResNet-18/w16 (demo)", "ResNet-18/w16 + SE (demo)", "ResNet-18/w16 + CBAM (demo)"]
    expect_every_panel_named_and_nothing_clipped(page, [f"{role_title(r)} · {t}" for r, t in zip(["baseline", "se", "cbam"], demo)])
    expect(page.locator("#legend")).to_contain_text("own range")

    page.get_by_role("combobox", name="CAM method").click()  # Tab closes an open menu
    expect(page.get_by_role("option", name="Grad-CAM++", exact=True)).to_be_visible()
    page.keyboard.press("Tab")
    expect(page.get_by_role("option", name="Grad-CAM++", exact=True)).to_have_count(0)
    target = page.get_by_role("combobox", name="Target class")  # typing replaces the current choice's text
    target.click()
    page.keyboard.type("sta")
    expect(target).to_have_value("sta")
    page.keyboard.press("Escape")

    choose(page, "CAM method", "Grad-CAM++")
    expect(summary).to_contain_text("Grad-CAM++ of layer4.1")
    choose(page, "Target class", "star", search="sta")
    expect(summary).to_contain_text("Grad-CAM++ of layer4.1 for class star")
    choose(page, "Target class", OWN)
    expect(summary).to_contain_text(f"Grad-CAM++ of layer4.1 for {OWN}")
    expect_images(page, "#views", "#spatial", "#channels")

    page.get_by_role("button", name="Prepare downloads").click()
    downloads = page.locator("#downloads")
    expect(downloads).to_contain_text(".png")
    expect(downloads).to_contain_text(".npz")
    page.wait_for_timeout(500)  # let the images finish painting
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=SCREENSHOT, full_page=True)

    truth, title, predicted = misclassified_example()  # with each model's own prediction, a wrong model's map is not scored
    page.get_by_text(f"demo: {truth}", exact=True).click()
    expect(summary).to_contain_text(f"Ground truth: {truth}")
    expect(summary.locator("tr", has_text=title)).to_contain_text(f"explains {predicted}: not scored")
    choose(page, "Target class", TRUTH)  # the default: every map explains the ground truth and is scored
    expect(summary).to_contain_text(f"for the ground truth, {truth}")
    expect(summary).not_to_contain_text(": not scored")

    upload = page.locator("#image input[type=file]")
    page.locator("#image").get_by_role("button", name="Remove Image").click()
    upload.set_input_files(files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"not an image"}])
    expect(page.get_by_text("notes.png: not an image file").first).to_be_visible()
    page.locator("#image").get_by_role("button", name="Remove Image").click()
    upload.set_input_files(files=[{"name": "small.png", "mimeType": "image/png", "buffer": _png(20)}])
    expect(summary).to_contain_text("smaller than the model input")

    choose(page, "Model set", "imagenet (unavailable)")
    expect(page.locator("#set-info")).to_contain_text("unavailable")
    expect(summary).to_contain_text("This model set is unavailable")
    for selector in ("#views", "#slider", "#spatial", "#channels"):  # the previous set's panels are gone
        expect(page.locator(f"{selector} img")).to_have_count(0)
    expect(page.locator("#top5")).to_have_text("")
    expect(page.get_by_text("missing ResNet-50")).to_have_count(1)  # the set's message, once: no error toast
    expect(page.locator(".toast-body")).to_have_count(0)


def _png(side: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (side, side), (30, 160, 90)).save(out, "PNG")
    return out.getvalue()


def test_a_three_model_set_on_a_photo(page: Page) -> None:
    """ResNet-50, SE-ResNet-50 and ResNet-50 + CBAM side by side (random weights: the layout, not the maps)."""
    page.goto(page.url)
    choose(page, "Model set", f"{THREE} (random weights)")
    expect(page.locator("#set-info")).to_contain_text("SE-ResNet-50")
    page.get_by_text("photo (ImageNet set): Grace Hopper", exact=True).click()
    summary = page.locator("#summary")
    expect(summary).to_contain_text("Grad-CAM of layer4.2")
    expect(page.locator("#views img")).to_have_count(3)
    expect(page.locator("#top5")).to_contain_text("SE · ")
    expect_images(page, "#views", "#spatial", "#channels")
    expect(summary).to_contain_text("Random weights: these models were never trained")
    expect(page.locator("#legend")).to_contain_text("own range")
    titles = ["ResNet-50", "ResNet-50 + SE", "ResNet-50 + CBAM"]
    expect_every_panel_named_and_nothing_clipped(
        page, [f"{role_title(r)} · {t} (random weights)" for r, t in zip(["baseline", "se", "cbam"], titles)])
    page.get_by_label("Raw values on one shared colour scale").check()
    expect(page.locator("#legend")).to_contain_text("shared by all 3 models")
    page.wait_for_timeout(500)
    page.screenshot(path=SCREENSHOT_THREE, full_page=True)

