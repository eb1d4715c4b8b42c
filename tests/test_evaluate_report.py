"""The static HTML report of `evaluate --report`, opened offline in a real Chromium: the summary
renders, every image of the gallery loads, and nothing is fetched from anywhere."""

import numpy as np
import pytest

from cbam_viz.data import DIFFICULTIES, write_samples
from cbam_viz.evaluate import evaluate_folder
from cbam_viz.evaluate import NO_VERDICT
from cbam_viz.evaluate.report import _verdict, disagreement
from tests.browser_support import chromium_page
from tests.evaluate_support import SIZE, tiny_set

pytestmark = pytest.mark.browser
N = 5


def test_report_renders_offline_with_the_gallery(tmp_path):
    images = tmp_path / "images"
    write_samples(images, N, 5, SIZE, DIFFICULTIES["easy"])
    (images / "labels.csv").write_text((images / "labels.csv").read_text() + "5,missing.png,circle,0,1,1,9,9\n")
    result = evaluate_folder(tiny_set(), images, images / "labels.csv", "csv", ["gradcam"], batch_size=4, road=False,
                             out=tmp_path / "out", report=True)
    report = result.files[-1]
    assert report.name == "tiny3_images_report.html"
    gaps = disagreement(result, "gradcam")
    expected_first = result.images[int(np.argmax(gaps))]
    requests: list[str] = []
    with chromium_page(1400, 1000, 20_000) as page:
        page.on("request", lambda request: requests.append(request.url))
        page.goto(report.as_uri())
        assert page.title() == "Localization: tiny3_images"
        analyses = 2 + (result.all_correct.sum() >= 2)  # all images, own prediction (+ all correct with 2 images or more)
        assert page.locator("table tbody tr").count() == 2 + analyses * 6 * 2 * 2  # accuracy x2; 6 metrics x 2 models x 2 placements
        assert "concentration" in page.locator("body").inner_text() and "explains" in page.locator(".item").first.inner_text()
        assert page.locator(".item").count() == N
        assert page.locator(".item").first.inner_text().startswith(expected_first)  # the largest difference first
        assert page.locator(".item").first.locator("figure").count() == 1 + 3  # the input and every model's CAM
        loaded = page.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
        assert len(loaded) == N * 4 and all(loaded)
        assert "missing.png" in page.locator("body").inner_text()  # the skip list
        headings = page.locator("table thead th").all_inner_texts()
        explained = " | ".join(page.locator("ul.note li b").all_inner_texts())
        assert headings and all(h in explained for h in headings), (headings, explained)  # every column explained
        columns = page.locator("ul.note").inner_text()
        assert "half-pixel" in columns and "receptive-field" in columns and "higher is better" in columns
        assert "Holm's correction for multiple comparisons over the rows of the same analysis" in columns
        page.screenshot(path=str(tmp_path / "report.png"), full_page=False)
    assert all(url.startswith(("file://", "data:")) for url in requests), requests
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_the_verdict_says_when_the_correction_is_why():
    row = {"call": NO_VERDICT, "verdict": NO_VERDICT, "diff_lo": 0.02, "diff_hi": 0.09, "p": 0.004, "p_holm": 0.09}
    assert _verdict(row, 24) == ("no clear difference: the interval excludes 0 and p = 0.004, but Holm's correction "
                                 "over 24 tests gives p = 0.09 (needs < 0.05)")
    assert _verdict({**row, "diff_lo": -0.01}, 24) == NO_VERDICT  # the interval itself includes 0
    assert _verdict({**row, "call": "CBAM better", "verdict": "CBAM better", "p_holm": 0.01}, 24) == "CBAM better"
