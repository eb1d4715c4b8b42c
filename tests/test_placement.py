"""Sets whose models crop differently (torchvision's V2 baseline: resize 232, SE/CBAM: 256): every map
lands on the reference's crop where the image point it marks lies, checked against torchvision's own
transforms on non-square images; `evaluate` scores every model on the crop its masks are mapped onto."""
import numpy as np
import pytest
import torch
from PIL import Image

from cbam_viz.evaluate.datasets import prepare
from cbam_viz.evaluate.scoring import model_input, score_batch
from cbam_viz.explain import explain
from cbam_viz.explain.placement import place_map
from cbam_viz.models import ModelInfo, build_resnet, crop_for_display, display_crop
from cbam_viz.models.published import torchvision_source
from cbam_viz.models.transforms import crop_box
from cbam_viz.render.overlay import overlay
from tests.evaluate_support import tiny

V2 = torchvision_source("imagenet-resnet50", "ResNet50_Weights.IMAGENET1K_V2")  # resize and crop from torchvision's metadata
GEOMETRIES = {"v2": (V2.resize, V2.crop), "256": (256, 224)}


def _info(name: str) -> ModelInfo:
    resize, crop = GEOMETRIES[name]
    return ModelInfo(depth=50, resize=resize, input_size=crop)


def _marker(size: tuple[int, int], point: tuple[int, int]) -> Image.Image:
    """A black image with a white 7x7 square centred on ``point``."""
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    x, y = point
    pixels[y - 3:y + 4, x - 3:x + 4] = 255
    return Image.fromarray(pixels)


def _centroid(values: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(values > 0)
    weights = values[ys, xs]
    return np.array([(weights * xs).sum(), (weights * ys).sum()]) / weights.sum()


def test_geometries_are_the_published_ones():
    assert GEOMETRIES["v2"] == (232, 224)


@pytest.mark.parametrize("size", [(640, 480), (333, 517)])
@pytest.mark.parametrize("name", ["v2", "256"])
def test_crop_box_is_where_torchvision_puts_a_point(size, name):
    info = _info(name)
    point = (size[0] // 2 + 61, size[1] // 2 - 47)
    crop = np.asarray(crop_for_display(_marker(size, point), info))[..., 0].astype(float)
    left, top, right, bottom = crop_box(size, info)
    expected = [(point[0] + 0.5 - left) / (right - left) * 224 - 0.5, (point[1] + 0.5 - top) / (bottom - top) * 224 - 0.5]
    assert np.abs(_centroid(crop) - expected).max() < 0.1
    assert crop_box(size, ModelInfo(depth=50, resize=None, input_size=32)) == (0.0, 0.0, *map(float, size))


@pytest.mark.parametrize("size", [(640, 480), (333, 517)])
@pytest.mark.parametrize("model, reference", [("256", "v2"), ("v2", "256")])
def test_a_map_marking_a_point_lands_on_that_point_after_placement(size, model, reference):
    """The map is what the model sees of a marker image (its own crop); placed onto the reference's crop
    it must lie where torchvision's transform for the reference puts the marker."""
    point = (round(size[0] * 0.3), round(size[1] * 0.65))  # inside both crops, well off their centre
    image = _marker(size, point)
    seen = np.asarray(crop_for_display(image, _info(model)))[..., 0].astype(np.float32)
    truth = np.asarray(crop_for_display(image, _info(reference)))[..., 0].astype(float)
    placed = place_map(seen, crop_box(size, _info(model)), crop_box(size, _info(reference)), (224, 224))
    assert placed.shape == (224, 224)
    assert np.abs(_centroid(placed) - _centroid(truth)).max() < 0.5
    unplaced = np.abs(_centroid(seen) - _centroid(truth)).max()
    assert unplaced > 4  # the map drawn as if it covered the reference's crop: ~9% of the point's distance from the centre


def test_outside_the_models_crop_is_zero_and_a_coarse_map_keeps_its_shape():
    size = (640, 480)
    box, onto = crop_box(size, _info("256")), crop_box(size, _info("v2"))
    centres = np.arange(224) + 0.5
    covered = []
    for axis in (1, 0):  # rows (y), then columns (x)
        start = (box[axis] - onto[axis]) / (onto[axis + 2] - onto[axis]) * 224  # the 256 crop starts this far inside
        end = (box[axis + 2] - onto[axis]) / (onto[axis + 2] - onto[axis]) * 224
        assert 10 < start < 11 and 213 < end < 214  # (1 - 232/256) / 2 of the side
        covered.append((centres >= start) & (centres <= end))
    placed = place_map(np.ones((224, 224), np.float32), box, onto, (224, 224))
    assert np.array_equal(placed > 0, covered[0][:, None] & covered[1][None, :])
    assert np.allclose(placed[covered[0]][:, covered[1]], 1)
    coarse = place_map(np.arange(49, dtype=np.float32).reshape(7, 7), box, onto)
    assert coarse.shape == (7, 7) and coarse[3, 3] == pytest.approx(24, abs=0.01)  # the centre stays the centre
    same = np.random.default_rng(0).random((7, 7)).astype(np.float32)
    assert place_map(same, onto, onto) is same


def _small(attention, seed, name):
    torch.manual_seed(seed)
    model = build_resnet(18, attention, num_classes=5, width=8, stem="small").eval()
    model.info.resize, model.info.input_size = GEOMETRIES[name]
    return model


def test_a_v2_baseline_set_gives_every_model_the_reference_crop():
    """Random weights, the V2 geometry first (the reference) and a CBAM model with resize 256: both CAMs and the
    CBAM's spatial maps are on the displayed crop; the CBAM's are its own maps placed there."""
    models = {"baseline": _small(None, 0, "v2"), "cbam": _small("cbam", 1, "256")}
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (300, 420, 3), dtype=np.uint8))
    out = explain(models, image, target=2)
    display = np.asarray(display_crop(image, models["baseline"].info))
    views = [overlay(display, r.cam) for r in out.values()]
    assert out["baseline"].cam.shape == out["cbam"].cam.shape == (224, 224) and views[0].shape == views[1].shape
    alone = {role: explain({role: m}, image, target=2)[role] for role, m in models.items()}
    assert np.array_equal(out["baseline"].cam, alone["baseline"].cam)  # the reference is untouched
    box, onto = crop_box(image.size, models["cbam"].info), crop_box(image.size, models["baseline"].info)
    assert np.allclose(out["cbam"].cam, place_map(alone["cbam"].cam, box, onto, (224, 224)))
    assert np.allclose(out["cbam"].raw_cam, place_map(alone["cbam"].raw_cam, box, onto))
    assert out["cbam"].cam[:, :10].max() == 0 and out["cbam"].cam[:, 12:-12].max() > 0
    for placed, own in zip(out["cbam"].spatial_attention, alone["cbam"].spatial_attention):
        assert placed.shape == own.shape and np.allclose(placed, place_map(own, box, onto))
    assert out["cbam"].spatial_attention[0][:, 0].max() == 0  # 56x56: the first column is outside the 256 crop
    assert np.array_equal(out["cbam"].probs, alone["cbam"].probs)  # predictions: the model's own input


def test_evaluate_scores_every_model_on_the_crop_its_masks_are_mapped_onto():
    """A set mixing resize 36 (reference) and 40: prepare maps the mask with the reference's geometry, and score_batch
    feeds that very crop to both models (their maps and the mask share one geometry)."""
    reference, other = tiny(None, 0, size=32, resize=36), tiny("cbam", 1, size=32, resize=40)
    pixels = np.zeros((45, 60, 3), np.uint8)
    pixels[10:30, 35:55] = 255
    target = prepare(0, "x", Image.fromarray(pixels), 0, "circle", [(35, 10, 55, 30)], None, reference.info)
    white = target.pixels.numpy().min(axis=0) > 127
    assert (target.mask ^ white).sum() <= 2 * 32
    seen = {}
    handles = [m.conv1.register_forward_pre_hook(lambda mod, args, role=role: seen.setdefault(role, args[0].detach()))
               for role, m in (("reference", reference), ("other", other))]
    try:
        score_batch({"reference": reference, "other": other}, [target], ["gradcam"], road=False, seed=0)
    finally:
        for h in handles:
            h.remove()
    for role, model in (("reference", reference), ("other", other)):
        assert torch.equal(seen[role], model_input(target.pixels[None], model))
