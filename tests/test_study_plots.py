"""Study Results figures (cbam_viz.render.study_plots): valid PNGs, one mark per row, no text overlapping."""
from __future__ import annotations

import io
import warnings
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from itertools import combinations

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.offsetbox import AnnotationBbox
from matplotlib.text import Text
from PIL import Image

from cbam_viz.render.study_plots import (
    DPI,
    catch_trial_figure,
    figure_png,
    forest_figure,
    position_bias_figure,
    preference_figure,
    ranking_figure,
    votes_over_time_figure,
)
from cbam_viz.study.analysis import (
    Comparison,
    bradley_terry,
    pairwise_table,
    per_stimulus,
    position_bias,
)

MODELS = ["baseline", "se", "cbam"]
STRENGTH = {"baseline": -0.5, "se": 0.0, "cbam": 0.5}
START = datetime(2026, 11, 1, 9, 0)


@pytest.fixture(scope="module")
def votes() -> list[Comparison]:
    rng = np.random.default_rng(0)
    out = []
    for p in range(12):
        for image in range(9):
            for a, b in combinations(MODELS, 2):
                if rng.random() < 0.5:
                    a, b = b, a
                if rng.random() < 0.1:
                    winner = None
                else:
                    winner = a if rng.random() < 1 / (1 + np.exp(STRENGTH[b] - STRENGTH[a])) else b
                at = START + timedelta(hours=p * 3, seconds=int(image * 40 + rng.integers(0, 30)))
                out.append(Comparison(f"participant-{p}", f"image-{image}", a, b, winner, at=at))
    return out


def drawn_texts(fig) -> list[tuple[str, object]]:
    """(text, window extent) of every text the figure draws: visible, non-empty, tick labels in view."""
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    hidden = set()
    for ax in fig.findobj(Axes):
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            for tick, loc in zip(axis.get_major_ticks(), axis.get_majorticklocs()):
                if not low - 1e-9 <= loc <= high + 1e-9:
                    hidden.update((id(tick.label1), id(tick.label2)))
    return [(t.get_text(), t.get_window_extent(renderer)) for t in fig.findobj(Text)
            if t.get_visible() and t.get_text().strip() and id(t) not in hidden]


def assert_readable(fig) -> list[str]:
    """No two drawn texts overlap and every text lies inside the figure; returns the texts."""
    texts = drawn_texts(fig)
    width, height = fig.bbox.width, fig.bbox.height
    for text, box in texts:
        assert box.x0 >= -1 and box.y0 >= -1 and box.x1 <= width + 1 and box.y1 <= height + 1, f"{text!r} is cut off"
    for (a, box_a), (b, box_b) in combinations(texts, 2):
        overlap_w = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
        overlap_h = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
        assert overlap_w <= 1 or overlap_h <= 1, f"{a!r} overlaps {b!r}"
    return [text for text, _ in texts]


def assert_png(fig) -> Image.Image:
    image = Image.open(io.BytesIO(figure_png(fig)))
    assert image.format == "PNG"
    assert image.size == (round(fig.get_figwidth() * DPI), round(fig.get_figheight() * DPI))
    return image


def test_ranking_figure_has_one_row_per_model_best_on_top(votes):
    ranking = bradley_terry(votes, MODELS)
    fig = ranking_figure(ranking)
    assert_png(fig)
    texts = assert_readable(fig)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [s.model for s in ranking.strengths]
    assert ranking.strengths[0].model == "cbam"
    [points] = [line for line in ax.lines if line.get_marker() == "o"]
    assert list(points.get_xdata()) == [s.strength for s in ranking.strengths]
    assert list(points.get_ydata()) == sorted(points.get_ydata(), reverse=True)  # best first = top
    assert any("clustered by participant and image" in t for t in texts)
    named = ranking_figure(ranking, names={"cbam": "ResNet-50 + CBAM", "se": "SE-ResNet-50"})
    assert [t.get_text() for t in named.axes[0].get_yticklabels()] == ["ResNet-50 + CBAM", "SE-ResNet-50", "baseline"]


def test_preference_figure_has_one_row_per_pair(votes):
    rows = pairwise_table(votes, MODELS)
    fig = preference_figure(rows)
    assert_png(fig)
    texts = assert_readable(fig)
    [points] = [line for line in fig.axes[0].lines if line.get_marker() == "o"]
    assert len(points.get_xdata()) == 3  # baseline-se, baseline-cbam, se-cbam
    assert all(x >= 0.5 for x in points.get_xdata())  # each pair's more chosen model
    shown = {(r.model, r.opponent) for r in rows if r.preference.share is not None and r.preference.share >= 0.5}
    assert sum(f"{m}\nover {o}" in texts for m, o in shown) == 3
    named = assert_readable(preference_figure(rows, names={"cbam": "ResNet-50 + CBAM", "baseline": "ResNet-50"}))
    assert "ResNet-50 + CBAM\nover ResNet-50" in named
    empty = preference_figure(pairwise_table([], MODELS))
    assert "no decisive votes yet" in assert_readable(empty)


def test_forest_figure_rows_thumbnails_and_overall(votes):
    rows = per_stimulus(votes, "cbam", "baseline")
    overall = next(r.preference for r in pairwise_table(votes, MODELS) if (r.model, r.opponent) == ("cbam", "baseline"))
    rng = np.random.default_rng(1)
    thumbnails = {f"image-{i}": rng.integers(0, 256, (80, 60, 3), dtype=np.uint8) for i in range(4)}
    thumbnails["image-4"] = Image.new("RGB", (300, 200), "red")
    thumbnails["image-5"] = rng.random((50, 50))  # float grayscale in [0, 1]
    fig = forest_figure(rows, thumbnails, overall)
    assert_png(fig)
    texts = assert_readable(fig)
    thumbs_ax, ax = fig.axes[:2]
    assert len(thumbs_ax.get_yticklabels()) == 9 + 1
    assert "all images  " + f"{overall.successes}/{overall.n}" in texts
    squares = [line for line in ax.lines if line.get_marker() == "s"]
    assert len(squares) == 9
    shares = [line.get_xdata()[0] for line in squares]
    assert shares == sorted(shares, reverse=True)
    boxes = [a for a in thumbs_ax.artists if isinstance(a, AnnotationBbox)]
    assert len(boxes) == 6
    renderer = fig.canvas.get_renderer()
    extents = [b.get_window_extent(renderer) for b in boxes]
    for a, b in combinations(extents, 2):  # thumbnails do not overlap each other ...
        assert min(a.y1, b.y1) - max(a.y0, b.y0) <= 1
    labels = [t.get_window_extent(renderer) for t in thumbs_ax.get_yticklabels()]
    for box in extents:  # ... nor the image labels
        for label in labels:
            assert min(box.x1, label.x1) - max(box.x0, label.x0) <= 1 or min(box.y1, label.y1) - max(box.y0, label.y0) <= 1
        assert max(box.width, box.height) <= 38 + 1
    only_ties = [Comparison("p", "image-0", "cbam", "baseline", None)]
    assert "no decisive votes on this pair yet" in assert_readable(forest_figure(per_stimulus(only_ties, "cbam", "baseline")))
    named = forest_figure(rows, names={"cbam": "ResNet-50 + CBAM", "baseline": "ResNet-50"})
    assert "share of decisive votes choosing ResNet-50 + CBAM over ResNet-50" in assert_readable(named)


def test_position_bias_figure_one_point_per_participant(votes):
    bias = position_bias(votes)
    fig = position_bias_figure(bias)
    assert_png(fig)
    texts = assert_readable(fig)
    [points] = [c for c in fig.axes[0].collections if len(c.get_offsets())]
    assert len(points.get_offsets()) == 12
    shares = points.get_offsets()[:, 1]
    assert list(shares) == sorted(shares)
    assert any(t.startswith(f"overall {bias.overall.successes}/{bias.overall.n}") for t in texts)


def test_votes_over_time_counts_votes_and_participants(votes):
    fig = votes_over_time_figure(votes + [Comparison("late", "image-0", "se", "cbam", "se")])  # no time stamp
    assert_png(fig)
    assert_readable(fig)
    ax, people = fig.axes[:2]
    assert ax.lines[0].get_ydata()[-1] == len(votes)
    assert people.lines[0].get_ydata()[-1] == 12
    assert "no time-stamped votes yet" in assert_readable(votes_over_time_figure([]))


@pytest.mark.parametrize("span, unit", [(timedelta(0), "seconds"), (timedelta(milliseconds=40), "seconds"),
                                        (timedelta(minutes=2), "minutes"), (timedelta(hours=5), "hours"),
                                        (timedelta(days=3), "days"), (timedelta(days=40), "days")])
@pytest.mark.parametrize("zone", [None, timezone.utc, timezone(timedelta(hours=-5))])
def test_votes_over_time_reads_at_any_span(span, unit, zone):
    """A single vote, a burst within a second and a study of weeks all get a readable time axis in a unit
    that fits, without matplotlib's date-locator warnings (a lone vote's axis once ran from 2025 to 2029).
    PostgreSQL hands back aware times, SQLite naive UTC ones: the label gives the first vote in UTC."""
    start = datetime(2026, 12, 7, 9, 0, tzinfo=timezone.utc)
    votes = [Comparison(f"p{i % 2}", "image-0", "baseline", "cbam", "cbam", at=start + span * i / 4)
             for i in range(5 if span else 1)]
    if zone is None:
        votes = [replace(v, at=v.at.replace(tzinfo=None)) for v in votes]
    else:
        votes = [replace(v, at=v.at.astimezone(zone)) for v in votes]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # matplotlib's; not the ResourceWarnings other tests' leftovers raise when collected
        fig = votes_over_time_figure(votes)
        assert_png(fig)
        assert_readable(fig)
    ax = fig.axes[0]
    label = ax.get_xlabel()
    assert label.startswith(f"{unit} since the first vote") and "2026-12-07 09:00 UTC" in label
    x = ax.lines[0].get_xdata()
    low, high = ax.get_xlim()
    assert x[0] == 0 and low <= 0 and max(x[:-1]) < high == x[-1]  # every vote inside, the line drawn to the edge
    assert ax.get_title().endswith("5 votes from 2 participants" if span else "1 vote from 1 participant")
    for axis in fig.axes[:2]:  # counts of votes and participants: whole numbers
        assert all(float(t).is_integer() for t in axis.get_yticks())
    assert 2 <= len([t for t in ax.get_xticks() if low <= t <= high]) <= 10


def test_catch_trial_figure_stacks_excluded_participants():
    results = {f"p{i}": (i % 4, 3) if i % 4 != 3 else (3, 3) for i in range(20)}
    results["late"] = (0, 0)  # saw no catch trial yet
    excluded = [key for key, (passed, shown) in results.items() if shown and passed < 2]
    fig = catch_trial_figure(results, excluded)
    assert_png(fig)
    texts = assert_readable(fig)
    bars = fig.axes[0].patches
    heights = [bar.get_height() for bar in bars]
    assert sum(heights) == 20
    assert sum(bar.get_height() for bar in bars if bar.get_facecolor()[0] > 0.7) == len(excluded)  # red ones
    passed = sum(p for p, _ in results.values())
    assert any(f"{passed}/60 passed" in t for t in texts)
    with pytest.raises(ValueError, match="impossible"):
        catch_trial_figure({"p": (4, 3)})


def test_figures_stay_readable_with_many_rows():
    rng = np.random.default_rng(3)
    votes = [Comparison(f"p{p}", f"a-rather-long-image-name-{i:03d}", "cbam", "baseline",
                        "cbam" if rng.random() < 0.6 else "baseline")
             for p in range(15) for i in range(40)]
    fig = forest_figure(per_stimulus(votes, "cbam", "baseline"))
    assert_readable(fig)
    assert len(fig.axes[0].get_yticklabels()) == 40


def test_the_overlap_check_catches_overlapping_and_cut_off_text():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2), layout="constrained")
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, "one label")
    ax.text(0.52, 0.5, "another label")
    with pytest.raises(AssertionError, match="overlaps"):
        assert_readable(fig)
    fig = Figure(figsize=(3, 2))
    fig.text(0.9, 0.5, "runs past the right edge")
    with pytest.raises(AssertionError, match="cut off"):
        assert_readable(fig)
