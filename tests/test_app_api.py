"""The app's API through gradio_client: every input control of the Compare tab, every kind of bad input."""
from __future__ import annotations

import io
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest
from app_fixtures import MAX_FILE_SIZE, models_dir, serve  # noqa: F401  (fixture)
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from cbam_viz.data import CLASSES, render_sample
from cbam_viz.explain import METHODS
import cbam_viz.ui.compare as compare_ui
from cbam_viz.ui.compare import EXAMPLE_SEED, OWN, TRUTH
from cbam_viz.service import AppContext, random_imagenet_set

LAYER = "layer4.1"  # last block of a ResNet-18
RANDOM = "resnet50-random"  # the --random-imagenet set, under another name: "imagenet" stays unavailable
DEFAULTS = {"model_set": "demo", "method": "gradcam", "layer": LAYER, "target": OWN, "shared": False, "block": LAYER,
            "left": "baseline", "right": "cbam"}
SUMMARY, VIEWS, SLIDER, TOP5, LEGEND, SPATIAL, CHANNELS, TOP_CHANNELS = range(8)


@pytest.fixture(scope="module")
def app_url(models_dir: Path) -> Iterator[str]:  # noqa: F811
    """The app with the demo set, the unavailable imagenet set and a random-weight ResNet-50 set (three models)."""
    ctx = AppContext(models_dir=models_dir, device="cpu")
    ctx.add(replace(random_imagenet_set("cpu"), name=RANDOM))
    with serve(ctx) as url:
        yield url


@pytest.fixture(scope="module")
def client(app_url: str, tmp_path_factory: pytest.TempPathFactory) -> Client:
    return Client(app_url, verbose=False, ssl_verify=False,  # plain HTTP: skip loading CA certificates per call
                  download_files=tmp_path_factory.mktemp("downloads"))  # not /tmp/gradio, which outlives the run


@pytest.fixture(scope="module")
def sample_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Example 0 of the app's gallery (a generated circle): the app knows its ground truth."""
    path = tmp_path_factory.mktemp("good") / "circle.png"
    render_sample(EXAMPLE_SEED, 0).image.save(path)
    return path


def compare(client: Client, path: Path | str, **kwargs: object) -> tuple:
    return client.predict(handle_file(str(path)), **{**DEFAULTS, **kwargs}, api_name="/compare")


def gallery(views: list) -> dict[str, np.ndarray]:
    """The CAM gallery as {caption: pixels}."""
    def path(item: object) -> str:
        return item["path"] if isinstance(item, dict) else item
    return {item["caption"]: np.asarray(Image.open(path(item["image"]))) for item in views}


def export(client: Client, path: Path | str, **kwargs: object) -> dict[str, np.ndarray]:
    args = {k: v for k, v in {**DEFAULTS, **kwargs}.items() if k not in ("shared", "block", "left", "right")}
    files = client.predict(handle_file(str(path)), **args, api_name="/export")
    by_suffix = {Path(f).suffix: f for f in files}
    assert set(by_suffix) == {".png", ".npz"} and Image.open(by_suffix[".png"]).width > 200
    with np.load(by_suffix[".npz"]) as arrays:
        return dict(arrays)


def test_endpoints(client: Client) -> None:
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/compare", "/select_set", "/export"} <= set(api)
    params = [p["parameter_name"] for p in api["/compare"]["parameters"]]
    assert params == ["image", "model_set", "method", "layer", "target", "shared", "block", "left", "right"]


def test_compare_shows_every_model_and_every_attention_panel(client: Client, sample_path: Path) -> None:
    summary, views, slider, top5, legend, spatial, channels, top_ch = compare(client, sample_path)
    assert "Ground truth: **circle**" in summary and "pointing game" in summary and "energy in box" in summary
    assert ("agree" in summary) and "Grad-CAM of layer4.1" in summary
    assert "know only the 12 generated shapes" not in summary  # a generated shape: in the models' domain
    pixels = gallery(views)
    assert [caption.split(" · explains ")[0] for caption in pixels] == ["Baseline · Demo ResNet-18", "CBAM · Demo ResNet-18 + CBAM"]
    assert all(re.fullmatch(r".* · explains \w+ \(\d+\.\d%\)", caption) for caption in pixels)  # the class and its probability
    assert all(p.shape[:2] == (256, 256) for p in pixels.values())
    baseline, cbam = pixels.values()
    assert baseline.std() > 0 and not np.array_equal(baseline, cbam)
    assert all(Image.open(path).size == (256, 256) for path in slider)
    assert top5.count("\n") == 6 and "| top-5 | Baseline · Demo ResNet-18 | CBAM · Demo ResNet-18 + CBAM |" in top5
    assert sum(name in top5 for name in CLASSES) >= 5
    assert "top channels of layer4.1" in top_ch and top_ch.count("channel ") >= 8
    grid, heat = Image.open(spatial), Image.open(channels)
    assert grid.width > 4 * 128 and grid.height > 2 * 128  # 4 stages x 2 blocks, 2 stages per row
    assert heat.width > 384 and heat.height > 8 * 14
    assert "normalized to its own range" in legend


def test_every_method(client: Client, sample_path: Path) -> None:
    for method in METHODS:
        summary = compare(client, sample_path, method=method)[0]
        assert " of layer4.1" in summary, method


def test_layer_target_block_and_shared_scale(client: Client, sample_path: Path) -> None:
    views = {}
    for layer in ("layer1.0", "layer3.1"):
        summary, views[layer] = compare(client, sample_path, layer=layer)[:2]
        assert f"of {layer} " in summary
    assert not np.array_equal(*(list(gallery(views[layer]).values())[0] for layer in ("layer1.0", "layer3.1")))

    arrays = export(client, sample_path, target="star")
    assert int(arrays["baseline/target"]) == int(arrays["cbam/target"]) == CLASSES.index("star")
    assert "for class star" in compare(client, sample_path, target="star")[0]

    normal, shared = compare(client, sample_path), compare(client, sample_path, shared=True)
    assert "one scale shared by both models" in shared[LEGEND] and "own range" in normal[LEGEND]
    assert not np.array_equal(*(list(gallery(r[VIEWS]).values())[0] for r in (normal, shared)))

    first, last = (compare(client, sample_path, block=b)[TOP_CHANNELS] for b in ("layer1.0", "layer4.1"))
    assert first.split("|", 3)[2:] != last.split("|", 3)[2:] and "layer1.0" in first

    same = compare(client, sample_path, left="cbam", right="cbam")[SLIDER]  # the slider shows the chosen models
    halves = [np.asarray(Image.open(path)) for path in same]
    assert np.array_equal(halves[0][:-40], halves[1][:-40])  # the same view above the labels ...
    assert (halves[0][-8:, :8] > 200).all() and (halves[1][-8:, -8:] > 200).all()  # ... each half labelled in its corner


def test_export_has_every_array_and_the_ground_truth(client: Client, sample_path: Path) -> None:
    arrays = export(client, sample_path)
    assert arrays["image"].shape == (64, 64, 3) and arrays["mask"].shape == (64, 64)
    truth = render_sample(EXAMPLE_SEED, 0).mask  # 96 px; the export is at the models' 64 px input
    expected = np.asarray(Image.fromarray(truth.astype(np.uint8) * 255).resize((64, 64), Image.BILINEAR)) >= 128
    assert (arrays["mask"] & expected).sum() / (arrays["mask"] | expected).sum() > 0.9
    assert {"baseline/cam", "cbam/cam", "cbam/channel_attention/layer4.1", "cbam/spatial_attention/layer1.0"} <= set(arrays)


def test_sets(client: Client, sample_path: Path) -> None:
    info, layer, target, block, left, right = client.predict("imagenet", api_name="/select_set")
    assert "unavailable" in info and "resnet50" in info.lower() and "weights fetch imagenet" in info
    assert "IMAGENET1K_V1" in info and "top-1 76.13%" in info and "seresnet50b" in info  # sources, published accuracy
    with pytest.raises(AppError, match="missing ResNet-50"):
        compare(client, sample_path, model_set="imagenet")
    info, layer, target, block, left, right = client.predict("demo", api_name="/select_set")
    assert layer["value"] == LAYER and target["value"] == TRUTH and block["value"] == LAYER
    assert (left["value"], right["value"]) == ("baseline", "cbam")
    assert [c[1] for c in target["choices"]] == [TRUTH, OWN, *CLASSES]
    assert compare(client, sample_path)[1]


def test_random_imagenet_set_and_invalid_options(client: Client, sample_path: Path) -> None:
    info, layer, target, block, left, right = client.predict(RANDOM, api_name="/select_set")
    assert "RANDOM WEIGHTS" in info and layer["value"] == block["value"] == "layer4.2"
    assert [c[1] for c in left["choices"]] == ["baseline", "se", "cbam"] and right["value"] == "cbam"
    classes = [c[1] for c in target["choices"]]
    assert len(classes) == len(set(classes)) == 2 + 1000 and "tabby" in classes  # the ground truth, own prediction, classes
    summary, views, _slider, top5, _legend, spatial, channels, top_ch = compare(
        client, sample_path, model_set=RANDOM, layer="layer3.5", target="tabby", block="layer2.3", right="se")
    assert "(random weights)" in summary and "of layer3.5 for class tabby" in summary and "all agree" not in summary
    assert [caption.split(" · ")[0] for caption in gallery(views)] == ["Baseline", "SE", "CBAM"]
    assert top5.splitlines()[0].count("|") == 5  # three model columns
    assert "| top channels of layer2.3 | SE · " in top_ch and " | CBAM · " in top_ch  # SE and CBAM: channel attention
    assert Image.open(channels).height > 2 * 16 * 14  # two heat maps (SE, CBAM) of 16 blocks each
    assert Image.open(spatial).width > 4 * 128  # CBAM's spatial maps
    client.predict("demo", api_name="/select_set")
    for kwargs, message in [({"layer": "layer3.5"}, "unknown target layer"), ({"target": "tabby"}, "unknown target class"),
                            ({"block": "layer2.3"}, "unknown attention block"), ({"method": "nope"}, "unknown CAM method"),
                            ({"right": "se"}, "unknown model 'se' for the slider"),
                            ({"model_set": "nope"}, "unknown model set")]:  # ResNet-50 layers, ImageNet classes: not the demo's
        with pytest.raises(AppError, match=message):
            compare(client, sample_path, **kwargs)
    assert compare(client, sample_path)[1]


# ---------------------------------------------------------------- bad and unusual files

def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` (a decompression bomb's header) and holds no pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + chunk(b"IEND", b"")


def _encoded(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kwargs)
    return out.getvalue()


def _halves(size: tuple[int, int] = (96, 64)) -> Image.Image:
    """Left half red, right half blue."""
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    pixels[:, : size[0] // 2, 0] = 255
    pixels[:, size[0] // 2:, 2] = 255
    return Image.fromarray(pixels)


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90° clockwise: the red (left) half goes to the top
    return _encoded(_halves(), "JPEG", exif=exif, quality=95)


def _animated_gif() -> bytes:
    red, blue = Image.new("RGB", (64, 64), (255, 0, 0)), Image.new("RGB", (64, 64), (0, 0, 255))
    return _encoded(red, "GIF", save_all=True, append_images=[blue], duration=100, loop=0)


BAD = {  # name: (file bytes, error message)
    "truncated.jpg": (lambda: _encoded(render_sample(1, 1, 128).image, "JPEG")[:1500], "truncated or corrupt"),
    "bomb.png": (lambda: _png_header_only(30000, 30000), "too large"),
    "tiny.png": (lambda: _encoded(Image.new("RGB", (4, 4), "white"), "PNG"), "too small"),
    "thin.png": (lambda: _png_header_only(8, 2_000_000), "too elongated"),  # resized to 224 px: ~49 GB
    "text.png": (lambda: b"this is not an image\n" * 20, "not an image file"),
    "empty.jpg": (lambda: b"", "not an image file"),
}
GOOD = {  # name: (file bytes, check of the image the models saw: (64, 64, 3) uint8)
    "gray.png": (lambda: _encoded(Image.new("L", (80, 80), 128), "PNG"), lambda im: np.all(im == 128)),
    "deep.png": (lambda: _encoded(Image.fromarray(np.tile(np.arange(0, 65536, 512, dtype=np.uint16), (128, 1))), "PNG"),
                 lambda im: im[:, 0].max() < 10 and im[:, -1].min() > 245),
    "cmyk.jpg": (lambda: _encoded(Image.new("CMYK", (80, 80), (0, 255, 255, 0)), "JPEG", quality=95),
                 lambda im: im[..., 0].mean() > 200 and im[..., 1:].mean() < 60),
    "rgba.png": (lambda: _encoded(Image.new("RGBA", (80, 80), (255, 0, 0, 0)), "PNG"), lambda im: np.all(im == 255)),
    "animated.gif": (_animated_gif, lambda im: im[..., 0].mean() > 200 and im[..., 2].mean() < 50),
    "rotated.jpg": (_exif_rotated, lambda im: im[:20, :, 0].mean() > 200 and im[-20:, :, 2].mean() > 200),
    "small.png": (lambda: _encoded(Image.new("RGB", (20, 20), (0, 255, 0)), "PNG"), lambda im: np.all(im[..., 1] > 240)),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_file_is_refused_with_a_clear_message(client: Client, sample_path: Path, tmp_path: Path, name: str) -> None:
    make, message = BAD[name]
    (tmp_path / name).write_bytes(make())
    with pytest.raises(AppError, match=message) as error:
        compare(client, tmp_path / name)
    assert str(error.value).startswith(name) and "/tmp" not in str(error.value)
    assert compare(client, sample_path)[1]  # the server keeps serving


@pytest.mark.parametrize("name", GOOD)
def test_unusual_file_is_handled(client: Client, sample_path: Path, tmp_path: Path, name: str) -> None:
    make, check = GOOD[name]
    (tmp_path / name).write_bytes(make())
    summary = compare(client, tmp_path / name)[0]
    assert "of layer4.1" in summary
    assert ("smaller than the model input" in summary) == (name == "small.png")
    seen = export(client, tmp_path / name)["image"]
    assert seen.shape == (64, 64, 3) and check(seen), name
    assert compare(client, sample_path)[1]


def test_a_banner_is_explained_by_every_set(client: Client, tmp_path: Path) -> None:
    """3000x40 (75:1) used to be refused as too elongated; the demo set squashes it, the ImageNet set keeps its centre."""
    pixels = np.zeros((40, 3000, 3), np.uint8)
    pixels[:, 1490:1510] = 255  # a white block in the middle (the ImageNet set keeps the centre 35 px)
    Image.fromarray(pixels).save(tmp_path / "banner.png")
    assert "of layer4.1" in compare(client, tmp_path / "banner.png")[SUMMARY]
    assert export(client, tmp_path / "banner.png")["image"].shape == (64, 64, 3)
    summary = compare(client, tmp_path / "banner.png", model_set=RANDOM, layer="layer4.2", block="layer4.2")[SUMMARY]
    assert "of layer4.2" in summary
    seen = export(client, tmp_path / "banner.png", model_set=RANDOM, layer="layer4.2")["image"]
    assert seen.shape == (224, 224, 3) and seen[:, 112].min() > 200 and seen[:, 0].max() < 50  # the centre of it


def test_oversize_upload_is_refused(client: Client, app_url: str, sample_path: Path, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(_encoded(Image.new("RGB", (64, 64)), "PNG") + bytes(3 * 1024 * 1024))
    with pytest.raises(ValueError, match="exceeds the maximum file size"):  # gradio_client checks first
        compare(client, big)
    response = httpx.post(f"{app_url}gradio_api/upload", files={"files": ("big.png", big.read_bytes(), "image/png")})
    assert response.status_code == 413, (response.status_code, MAX_FILE_SIZE)  # and the server refuses it too
    assert compare(client, sample_path)[1]


def test_the_demo_set_says_a_photo_is_outside_what_it_knows(client: Client, tmp_path: Path) -> None:
    from matplotlib import cbook

    photo = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    summary = compare(client, photo)[SUMMARY]
    assert "know only the 12 generated shapes" in summary and "weights fetch imagenet" in summary
    assert "The models agree" not in summary and "The models disagree" not in summary
    views = gallery(compare(client, photo)[VIEWS])
    assert all(v.shape[:2] == (600, 512) for v in views.values())  # drawn on the photo at its own resolution


def test_ground_truth_scores_link_to_the_sets_layer_sweep(client: Client, app_url: str, sample_path: Path,
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(compare_ui, "RESULTS_DIR", empty)
    summary = compare(client, sample_path)[SUMMARY]
    assert "(target layer layer4.1)" in summary and "evaluate --layers all" in summary  # no sweep page there
    page = tmp_path / "demo_sweep.html"
    page.write_text("<!doctype html><title>demo sweep</title><p>every layer</p>")
    (tmp_path / "demo_per_image.csv").write_text("not served\n")
    monkeypatch.setattr(compare_ui, "RESULTS_DIR", tmp_path)
    summary = compare(client, sample_path, layer="layer3.0")[SUMMARY]
    link = re.search(r"\[the layer and seed sweep of `demo`\]\((/gradio_api/file=[^)]+)\)", summary)
    assert link and "(target layer layer3.0)" in summary
    assert httpx.get(app_url.rstrip("/") + link.group(1), timeout=30).text.endswith("<p>every layer</p>")
    other = link.group(1).replace("demo_sweep.html", "demo_per_image.csv")
    assert httpx.get(app_url.rstrip("/") + other, timeout=30).status_code >= 400  # only the page is served
