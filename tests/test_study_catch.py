"""Catch trials look like real trials (issue 23, finding 5): on a generated study with the bundled demo
models, no single threshold on a simple image statistic of the two maps tells catch trials from real ones
on held-out trials much better than chance, except the overlap of the two maps (below), and every catch
trial keeps a clear right answer.

Real trial: the study's two models' maps of an image. Catch trial: OBJECT and BACKGROUND of the same image.
A and B sides drawn at random (seeded), as the scheduler does. Statistics as the participant sees them
(the map resized to the displayed image, visible where >= the threshold): overlap (IoU) of the visible
regions, visible area of A, of B, their mean and difference, contrast (std of the map) of A and B. Each
rule ("statistic < t => catch", or ">") is fitted on the trials of half of the images and scored on the
other half. `python tests/test_study_catch.py` prints the table the README quotes."""
from __future__ import annotations

import io
import os
import random
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image
from scipy.stats import binomtest

from cbam_viz.render.overlay import resize_map
from cbam_viz.study import DemoStimuli, StudyConfig, load_stimuli
from cbam_viz.study.catch import energy_in_box, region_overlap
from cbam_viz.study.stimuli import renderer_from_context, resolve_target, stimulus_targets

IMAGES = 40
CONFIG = StudyConfig(name="catch-check", pair="demo", method="gradcam", display="threshold", threshold=0.6,
                     stimuli=DemoStimuli(seed=4, count=IMAGES), trials_per_participant=10, catch_trials=2)


def statistics(a: np.ndarray, b: np.ndarray, size: tuple[int, int], threshold: float) -> dict[str, float]:
    big_a, big_b = resize_map(a, size), resize_map(b, size)
    seen_a, seen_b = big_a >= threshold, big_b >= threshold
    return {"overlap": region_overlap(seen_a, seen_b), "area A": seen_a.mean(), "area B": seen_b.mean(),
            "area mean": (seen_a.mean() + seen_b.mean()) / 2, "area difference": abs(seen_a.mean() - seen_b.mean()),
            "contrast A": float(big_a.std()), "contrast B": float(big_b.std())}


def best_rule(values: np.ndarray, is_catch: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The threshold rule with the highest accuracy on (values, is_catch)."""
    cuts = np.concatenate([[-np.inf], np.sort(values), [np.inf]])
    best = max([(np.mean((values < t) == is_catch), 1, t) for t in cuts]
               + [(np.mean((values > t) == is_catch), -1, t) for t in cuts], key=lambda r: r[0])
    _, sign, cut = best
    return (lambda v: v < cut) if sign == 1 else (lambda v: v > cut)


@pytest.fixture(scope="module")
def trials() -> dict:
    from cbam_viz.service import AppContext

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    renderer = renderer_from_context(AppContext(sets=["demo"], device="cpu"), CONFIG)
    stimuli = load_stimuli(CONFIG)
    targets = stimulus_targets(CONFIG, stimuli)
    shown = renderer(stimuli[0], targets[stimuli[0].id])  # what a participant gets: every map the same shape and length
    size = Image.open(io.BytesIO(shown.maps["object"])).size[::-1]
    assert len({len(png) for png in shown.maps.values()}) == 1 and size == Image.open(io.BytesIO(shown.image)).size[::-1]
    rng = random.Random(23)
    rows, energies = [], []
    for half, stimulus in enumerate(stimuli):
        _, _, cams, box = renderer.maps(stimulus, resolve_target(targets[stimulus.id], renderer.side.class_names))
        for kind, pair in (("real", CONFIG.models), ("catch", ("object", "background"))):
            a, b = (cams[m] for m in (pair if rng.random() < 0.5 else pair[::-1]))
            rows.append((kind == "catch", half % 2, statistics(a, b, size, CONFIG.threshold)))
        energies.append((energy_in_box(cams["object"], box), energy_in_box(cams["background"], box)))
    return {"rows": rows, "energies": energies}


def held_out_accuracy(rows: list, name: str) -> tuple[int, int]:
    """(correct, total) of the best rule on `name`, fitted on the even images, scored on the odd ones."""
    values = np.array([r[2][name] for r in rows])
    is_catch = np.array([r[0] for r in rows])
    fit = np.array([r[1] == 0 for r in rows])
    rule = best_rule(values[fit], is_catch[fit])
    return int((rule(values[~fit]) == is_catch[~fit]).sum()), int((~fit).sum())


STATISTICS = ["overlap", "area A", "area B", "area mean", "area difference", "contrast A", "contrast B"]


@pytest.mark.parametrize("name", [s for s in STATISTICS if s != "overlap"])
def test_no_simple_statistic_but_the_overlap_tells_catch_from_real(trials: dict, name: str) -> None:
    correct, total = held_out_accuracy(trials["rows"], name)
    assert binomtest(correct, total, 0.5, alternative="greater").pvalue > 0.05, f"{name}: {correct}/{total}"


def test_catch_maps_overlap_as_far_as_a_clear_answer_lets_them(trials: dict) -> None:
    """The overlap does tell them apart (README: 39/40 with the plateau-trained demo set, whose real maps
    overlap more than a map with half the in-box energy can), but catch maps are not the disjoint blobs of
    issue 23 (overlap 0.00 in 50 of 50): measured median 0.23 with the plateau set, 0.19 with the 4-epoch set."""
    catch = [r[2]["overlap"] for r in trials["rows"] if r[0]]
    assert np.median(catch) >= 0.15


def test_every_catch_trial_has_a_clear_answer(trials: dict) -> None:
    for on_object, on_background in trials["energies"]:
        assert on_object > 0 and on_object >= 2 * on_background


if __name__ == "__main__":
    found = trials.__wrapped__()
    for name in STATISTICS:
        correct, total = held_out_accuracy(found["rows"], name)
        p = binomtest(correct, total, 0.5, alternative="greater").pvalue
        real = [r[2][name] for r in found["rows"] if not r[0]]
        catch = [r[2][name] for r in found["rows"] if r[0]]
        spread = [f"{np.median(v):.2f} ({min(v):.2f}-{max(v):.2f})" for v in (real, catch)]
        print(f"| {name} | {correct}/{total} ({(200 * correct + total) // (2 * total)}%) | {p:.3f} | {spread[0]} | {spread[1]} |")
    print("least OBJECT/BACKGROUND in-box energy ratio:", min(o / max(b, 1e-12) for o, b in found["energies"]))
