"""Synthetic shapes: determinism, ground truth, dataset and export."""
import csv

import numpy as np
import pytest
import torch
from PIL import Image

from cbam_viz.data import (CLASSES, DIFFICULTIES, EASY, HARD, MEAN, MEDIUM, NUM_CLASSES, STD, Difficulty, SynthShapes,
                           default_transform, render_sample, write_samples)


def _pixels(sample) -> np.ndarray:
    return np.asarray(sample.image).astype(np.int16)


def test_classes_are_many_and_unique():
    assert len(CLASSES) >= 10
    assert len(set(CLASSES)) == len(CLASSES) == NUM_CLASSES


def test_same_seed_and_index_give_identical_sample():
    a, b = render_sample(7, 3), render_sample(7, 3)
    assert a.image.tobytes() == b.image.tobytes()
    assert np.array_equal(a.mask, b.mask)
    assert a.box == b.box and a.label == b.label


def test_different_seeds_and_indices_differ():
    base = render_sample(7, 3).image.tobytes()
    assert render_sample(8, 3).image.tobytes() != base
    assert render_sample(7, 3 + NUM_CLASSES).image.tobytes() != base  # same class, other index


@pytest.mark.parametrize("size", [32, 64, 97, 256])
def test_image_size_mode_and_mask_shape(size):
    s = render_sample(1, 5, size)
    assert s.image.mode == "RGB" and s.image.size == (size, size)
    assert s.mask.dtype == bool and s.mask.shape == (size, size)


@pytest.mark.parametrize("size", [31, 257])
def test_size_out_of_range_is_rejected(size):
    with pytest.raises(ValueError):
        render_sample(0, 0, size)


def test_label_cycles_through_all_classes():
    samples = [render_sample(2, i) for i in range(2 * NUM_CLASSES)]
    assert [s.label for s in samples] == [i % NUM_CLASSES for i in range(2 * NUM_CLASSES)]
    assert [s.class_name for s in samples[:NUM_CLASSES]] == list(CLASSES)


@pytest.mark.parametrize("size", [32, 64, 160])
def test_box_is_tight_around_nonempty_mask_inside_image(size):
    for i in range(2 * NUM_CLASSES):
        s = render_sample(4, i, size)
        x0, y0, x1, y1 = s.box
        assert 0 < x0 < x1 < size and 0 < y0 < y1 < size  # the target is not cut off
        inside = s.mask[y0:y1, x0:x1]
        assert inside.sum() == s.mask.sum() > 0
        assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()


@pytest.mark.parametrize("size", [32, 64, 128])
def test_mask_is_exactly_the_painted_target(size):
    for i in range(2 * NUM_CLASSES):
        with_target = render_sample(9, i, size)
        without = render_sample(9, i, size, draw_target=False)
        diff = np.abs(_pixels(with_target) - _pixels(without)).sum(axis=2)
        assert np.array_equal(without.mask, with_target.mask)
        assert (diff[~with_target.mask] == 0).all(), "pixels outside the mask changed"
        assert diff[with_target.mask].min() >= 30, "target pixel not clearly distinct from background"


def test_target_colour_is_uniform_and_background_is_textured():
    for i in range(NUM_CLASSES):
        s = render_sample(3, i, difficulty=EASY)
        pixels = _pixels(s)
        assert len(np.unique(pixels[s.mask], axis=0)) == 1
        assert len(np.unique(pixels[~s.mask], axis=0)) > 100


def test_hard_targets_are_plain_or_striped_in_two_paints():
    counts = [len(np.unique(_pixels(s)[s.mask], axis=0)) for s in (render_sample(3, i) for i in range(4 * NUM_CLASSES))]
    assert set(counts) == {1, 2}  # both kinds occur, nothing else


def test_an_occluder_hides_part_of_the_target_and_the_mask_leaves_it_out():
    plain = Difficulty(occlusion=0.0)
    occluded = Difficulty(occlusion=1.0, min_visible=0.6)
    smaller = 0
    for i in range(2 * NUM_CLASSES):
        full, part = render_sample(6, i, 96, difficulty=plain), render_sample(6, i, 96, difficulty=occluded)
        assert not (part.mask & ~full.mask).any()  # the same target, never more of it
        assert part.mask.sum() >= 0.6 * full.mask.sum()
        smaller += part.mask.sum() < full.mask.sum()
        changed = (_pixels(full) != _pixels(part)).any(axis=2)
        assert (changed == (full.mask & ~part.mask) | (changed & ~full.mask)).all()  # hidden pixels were repainted
    assert smaller >= NUM_CLASSES  # most draws fit under the visibility floor


def test_decoys_of_other_classes_share_the_target_colour_and_keep_clear_of_it():
    level = Difficulty(distractors=(0, 0), decoys=(2, 2), shared_colour=1.0, texture=0.0, occlusion=0.0)
    for i in range(NUM_CLASSES):
        s = render_sample(8, i, 96, difficulty=level)
        pixels = _pixels(s)
        colour = pixels[s.mask][0]
        same = (pixels == colour).all(axis=2) & ~s.mask
        assert same.sum() > 0.05 * s.mask.sum()  # the decoys are painted like the target
        ys, xs = np.nonzero(s.mask)
        for y, x in zip(*np.nonzero(same)):
            assert np.min(np.hypot(ys - y, xs - x)) > 2  # never touching it


def test_difficulty_knobs_are_validated():
    for bad in ({"decoys": (3, 1)}, {"occlusion": 1.5}, {"scale": (0.3, 0.2)}, {"distractors": (-1, 2)}):
        with pytest.raises(ValueError):
            Difficulty(**bad)
    assert DIFFICULTIES["hard"] is HARD and DIFFICULTIES["medium"] is MEDIUM and DIFFICULTIES["easy"] is EASY


def test_dataset_returns_normalised_tensors():
    ds = SynthShapes(seed=5, length=48, size=64)
    assert len(ds) == 48
    image, label = ds[13]
    assert isinstance(image, torch.Tensor) and image.dtype == torch.float32
    assert image.shape == (3, 64, 64) and label == 13 % NUM_CLASSES
    torch.testing.assert_close(image, default_transform()(ds.sample(13).image))
    batch = torch.stack([ds[i][0] for i in range(len(ds))])
    mean, std = batch.mean(dim=(0, 2, 3)), batch.std(dim=(0, 2, 3))
    assert mean.abs().max() < 0.2, mean
    assert ((std > 0.8) & (std < 1.25)).all(), std


def test_normalisation_constants_are_per_channel():
    assert len(MEAN) == len(STD) == 3 and all(0 < s < 1 for s in STD)


def test_dataset_sample_matches_render_and_custom_transform():
    ds = SynthShapes(seed=5, length=4, size=48, transform=np.asarray)
    s = ds.sample(2)
    assert s.image.tobytes() == render_sample(5, 2, 48).image.tobytes()
    array, label = ds[2]
    assert array.shape == (48, 48, 3) and label == s.label
    with pytest.raises(IndexError):
        ds.sample(4)
    with pytest.raises(IndexError):
        ds[-1]


def test_dataloader_batches():
    loader = torch.utils.data.DataLoader(SynthShapes(seed=0, length=8, size=32), batch_size=4)
    images, labels = next(iter(loader))
    assert images.shape == (4, 3, 32, 32) and labels.tolist() == [0, 1, 2, 3]


def test_write_samples_writes_images_masks_and_csv(tmp_path):
    paths = write_samples(tmp_path / "out", n=5, seed=3, size=40)
    assert [p.name for p in paths] == [f"{i:05d}_{CLASSES[i]}.png" for i in range(5)]
    with open(tmp_path / "out" / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5
    for i, (path, row) in enumerate(zip(paths, rows)):
        s = render_sample(3, i, 40)
        assert Image.open(path).tobytes() == s.image.tobytes()
        mask = np.asarray(Image.open(path.with_name(f"{i:05d}_{s.class_name}_mask.png")))
        assert np.array_equal(mask > 0, s.mask) and set(np.unique(mask)) == {0, 255}
        assert row == {"index": str(i), "file": path.name, "class": s.class_name, "label": str(s.label),
                       "x0": str(s.box[0]), "y0": str(s.box[1]), "x1": str(s.box[2]), "y1": str(s.box[3])}
