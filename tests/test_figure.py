"""``python -m cbam_viz figure``: the paper's Grad-CAM figure (one row per image, the input and every
model's CAM, the prediction under each panel, one colour bar), as PDF/SVG with vector text and as PNG,
with no overlapping text; bad images get one line each and exit status 2."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
import zlib
from itertools import combinations
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from PIL import Image  # noqa: E402

from matplotlib import cbook  # noqa: E402

from cbam_viz.cli import main  # noqa: E402
from cbam_viz.data import render_sample  # noqa: E402
from cbam_viz.data.domain import OUT_OF_DOMAIN  # noqa: E402
from cbam_viz.explain import explain, explain_batch  # noqa: E402
from cbam_viz.models import build_resnet  # noqa: E402
from cbam_viz.models.config import read_models_config  # noqa: E402
from cbam_viz.models.sets import load_set  # noqa: E402
from cbam_viz.render import GridRow, caption, cam_grid  # noqa: E402
from cbam_viz.render.figure import PAD_INCHES, comparison_plot, to_picture  # noqa: E402
from cbam_viz.render.grid import PANEL  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Long names on purpose: unwrapped, they would run into the neighbouring panels' captions.
CLASSES = ["German short-haired pointer with a long name", "Staffordshire bullterrier, Staffordshire bull terrier"]
TITLES = {"baseline": "ResNet-18 baseline trained on the lesion data", "se": "ResNet-18 + SE (lesion data)",
          "cbam": "ResNet-18 + CBAM trained on the lesion data"}


@pytest.fixture(scope="module")
def models_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A three-model set (baseline, SE, CBAM: tiny ResNet-18s, 2 classes, 48 px) registered in a TOML file."""
    folder = tmp_path_factory.mktemp("models")
    common = f'depth = 18\noptions = {{ width = 8, stem = "small" }}\ninput_size = 48\nresize = false\nclass_names = {json.dumps(CLASSES)}\n'
    toml = ""
    for seed, (role, attention) in enumerate([("baseline", "none"), ("se", "se"), ("cbam", "cbam")]):
        torch.manual_seed(seed)
        model = build_resnet(18, None if attention == "none" else attention, num_classes=2, width=8, stem="small")
        torch.save(model.state_dict(), folder / f"{role}.pth")
        toml += f'[models.t-{role}]\npath = "{role}.pth"\nattention = "{attention}"\ntitle = "{TITLES[role]}"\n{common}\n'
    toml += '[sets.tiny3]\nmodels = { baseline = "t-baseline", se = "t-se", cbam = "t-cbam" }\n'
    (folder / "tiny.toml").write_text(toml)
    return folder / "tiny.toml"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two generated images (one not square) and a photo-like random image with a long file name."""
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for index in range(2):
        image = render_sample(seed=9, index=index, size=64).image
        if index == 1:
            image = image.resize((96, 64))
        paths.append(folder / f"sample-{index}.png")
        image.save(paths[-1])
    paths.append(folder / "a_photo_with_a_rather_long_file_name_from_the_camera_IMG_20240611_101112.jpg")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 100, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def visible_texts(fig: Figure) -> list[tuple[str, object]]:
    """(text, window extent) of every non-empty visible text of the drawn figure."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return [(t.get_text(), t.get_window_extent(renderer)) for t in fig.findobj(Text)
            if t.get_visible() and t.get_text().strip()]


def intersect(a, b) -> bool:
    """Whether two boxes share an area (touching edges do not count)."""
    return min(a.x1, b.x1) - max(a.x0, b.x0) > 0.5 and min(a.y1, b.y1) - max(a.y0, b.y0) > 0.5


def overlaps(fig: Figure) -> list[str]:
    """Every pair of texts that intersect, every text that covers an image panel or leaves the figure."""
    texts = visible_texts(fig)
    panels = [ax.get_window_extent() for ax in fig.axes if ax.images]
    found = [f"{a!r} / {b!r}" for (a, box_a), (b, box_b) in combinations(texts, 2) if intersect(box_a, box_b)]
    found += [f"{text!r} on a panel" for text, box in texts for panel in panels if intersect(box, panel)]
    figure = fig.bbox
    found += [f"{text!r} outside" for text, box in texts
              if box.x0 < figure.x0 - 0.5 or box.y0 < figure.y0 - 0.5 or box.x1 > figure.x1 + 0.5 or box.y1 > figure.y1 + 0.5]
    return found


def test_the_overlap_check_sees_overlaps() -> None:
    fig = plt.figure(figsize=(3, 2))
    fig.text(0.2, 0.5, "pred: circle (91.7%)")
    fig.text(0.3, 0.5, "pred: star (97.1%)")
    assert len(overlaps(fig)) == 1
    plt.close(fig)


def test_grid_layout_captions_and_no_overlaps(models_file: Path, images: list[Path]) -> None:
    model_set = load_set("tiny3", device="cpu", user=read_models_config(models_file))
    pictures = [Image.open(p).convert("RGB") for p in images]
    results = explain_batch(model_set.models, pictures)
    rows = [GridRow(p.name, np.asarray(picture), {role: results[role][i] for role in model_set.roles})
            for i, (p, picture) in enumerate(zip(images, pictures))]
    fig = cam_grid(rows, CLASSES, TITLES, "Grad-CAM")
    try:
        assert overlaps(fig) == []
        panels = [ax for ax in fig.axes if ax.images]
        grid = np.array(panels).reshape(3, 4)
        assert len(fig.axes) == len(panels) + 1  # one shared colour bar
        bar = next(ax for ax in fig.axes if not ax.images).get_window_extent()
        top, bottom = grid[0, 0].get_window_extent().y1, grid[-1, 0].get_window_extent().y0
        assert bar.height > 0.8 * (top - bottom)
        assert [ax.get_title().replace("\n", " ") for ax in grid[0]] == ["input", *TITLES.values()]
        assert all(ax.get_title() == "" for ax in grid[1:].ravel())
        assert [ax.get_ylabel().replace("\n", "") for ax in grid[:, 0]] == [p.name for p in images]
        wrapped = 0
        for i, row in enumerate(rows):
            assert grid[i, 0].get_xlabel() == ""
            for ax, role in zip(grid[i, 1:], model_set.roles):
                text = ax.get_xlabel()
                assert text.replace("\n", " ") == caption(row.results[role], CLASSES)
                assert re.search(r"\(\d+\.\d%\)", text)
                assert ax.xaxis.label.get_window_extent().width <= PANEL * fig.dpi
                wrapped += "\n" in text
                # the overlay is this model's CAM on this row's image, at the image's own resolution
                assert ax.images[0].get_array().shape == row.image.shape
        assert wrapped == 9  # every caption needed wrapping, and got it
    finally:
        plt.close(fig)


def pdf_text(data: bytes) -> str:
    """The text drawn with text operators in a matplotlib PDF (TrueType fonts, 2-byte codes)."""
    out = []
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S):
        try:
            content = zlib.decompress(stream)
        except zlib.error:
            continue
        for block in re.findall(rb"BT(.*?)ET", content, re.S):
            strings = re.findall(rb"\(((?:\\.|[^\\)])*)\)", block, re.S)
            raw = b"".join(re.sub(rb"\\(.)", rb"\1", s, flags=re.S) for s in strings)
            out.append(raw.decode("utf-16-be", errors="replace"))
    return "\n".join(out)


def test_pdf_and_svg_have_vector_text(models_file: Path, images: list[Path], tmp_path: Path, capsys) -> None:
    for suffix in ("pdf", "svg"):
        out = tmp_path / f"fig.{suffix}"
        assert main(["figure", *map(str, images), "--models", str(models_file), "--set", "tiny3", "--out", str(out)]) == 0
        assert f"wrote {out} (3 images x 3 models" in capsys.readouterr().out
    data = (tmp_path / "fig.pdf").read_bytes()
    assert data.startswith(b"%PDF") and b"/Type3" not in data and b"/CIDFontType2" in data
    text = " ".join(pdf_text(data).split())  # wrapped lines joined
    for expected in ["input", "sample-0.png", "ResNet-18 + SE (lesion data)", "pred:", "Grad-CAM"]:
        assert expected in text, expected
    svg = ET.parse(tmp_path / "fig.svg").getroot()
    strings = [t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    strings += [s.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}text")
                for s in t.iter("{http://www.w3.org/2000/svg}tspan")]
    joined = " ".join(" ".join(strings).split())
    assert "input" in joined and "pred:" in joined and "ResNet-18 + SE (lesion data)" in joined
    assert len([s for s in strings if s.startswith("pred:")]) == 9  # a caption under each of the 3 x 3 CAMs
    assert len(svg.findall(".//{http://www.w3.org/2000/svg}image")) == 12 + 1  # the panels and the colour bar are raster images


def test_png_with_the_shipped_demo_set_and_pair_alias(images: list[Path], tmp_path: Path, capsys) -> None:
    out = tmp_path / "out" / "fig.png"
    assert main(["figure", str(images[0]), str(images[1]), "--pair", "demo", "--method", "layercam",
                 "--layer", "layer3.1", "--out", str(out)]) == 0
    assert "2 images x 3 models of demo, LayerCAM" in capsys.readouterr().out
    picture = Image.open(out)
    assert picture.format == "PNG"
    # 300 dpi: three columns of PANEL inches, two rows
    assert picture.width > 3 * PANEL * 300 and picture.height > 2 * PANEL * 300
    pixels = np.asarray(picture.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1000  # overlays drawn, not blank


def test_bad_images_one_line_each_exit_2(images: list[Path], tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("not an image")
    truncated = tmp_path / "cut.png"
    data = images[0].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    result = subprocess.run([sys.executable, "-m", "cbam_viz", "figure", str(images[0]), str(tmp_path / "notes.png"),
                             str(truncated), "--out", str(tmp_path / "fig.pdf")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("error: notes.png: not an image file")
    assert lines[1].startswith("error: cut.png: truncated or corrupt image")
    assert not (tmp_path / "fig.pdf").exists()


@pytest.mark.parametrize("args, message", [
    (["--out", "fig.jpg"], "fig.jpg: the figure is written as .pdf, .svg or .png"),
    (["--method", "magic", "--out", "fig.png"], "unknown method 'magic'"),
    (["--layer", "layer9.0", "--out", "fig.png"], "unknown layer 'layer9.0'"),
    (["--set", "nope", "--out", "fig.png"], "unknown model set 'nope'"),
])
def test_bad_options_one_line(images: list[Path], tmp_path: Path, capsys, args: list[str], message: str) -> None:
    args = [str(tmp_path / a) if a.startswith("fig.") else a for a in args]
    assert main(["figure", str(images[0]), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_comparison_figure_titles_lie_inside_the_image(models_file: Path, images: list[Path]) -> None:
    """The exported comparison figure (CLI `explain`, the app's downloads): long, wrapped, multi-line titles, the
    out-of-domain note and the row titles all lie inside the rendered image, none cut at its edge."""
    model_set = load_set("tiny3", device="cpu", user=read_models_config(models_file))
    picture = np.asarray(Image.open(images[1]).convert("RGB"))
    results = explain(model_set.models, Image.fromarray(picture), target=1)  # "explained: ..." adds a caption line
    fig = comparison_plot(picture, results, CLASSES, TITLES, note=OUT_OF_DOMAIN)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    canvas = fig.get_tightbbox(renderer).padded(PAD_INCHES)  # inches: what to_picture keeps
    titles = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()
              and (t in [ax.title for ax in fig.axes] or t is fig._suptitle or t in [s._suptitle for s in fig.subfigs])]
    assert len(titles) == 1 + 3 + 4 + 1 + 1  # input, 3 CAMs, 4 stages, the CBAM row's title, the note
    assert any("ResNet-18 baseline trained" in t.get_text() for t in titles)
    assert fig._suptitle.get_text().replace("\n", " ") == OUT_OF_DOMAIN
    for t in titles:
        box = t.get_window_extent(renderer)
        inches = [v / fig.dpi for v in (box.x0, box.y0, box.x1, box.y1)]
        assert canvas.x0 <= inches[0] and canvas.y0 <= inches[1] and inches[2] <= canvas.x1 and inches[3] <= canvas.y1, t
    image = np.asarray(to_picture(fig))
    assert abs(image.shape[1] - canvas.width * fig.dpi) <= 2 and abs(image.shape[0] - canvas.height * fig.dpi) <= 2
    frame = np.concatenate([image[:3].reshape(-1, 3), image[-3:].reshape(-1, 3), image[:, :3].reshape(-1, 3),
                            image[:, -3:].reshape(-1, 3)])
    assert (frame == 255).all()  # a white margin all round: no title cut at an edge
    assert (image[:40] < 200).any()  # and the note's ink at the top


def test_the_grid_carries_the_out_of_domain_note_without_overlaps(models_file: Path, images: list[Path]) -> None:
    model_set = load_set("tiny3", device="cpu", user=read_models_config(models_file))
    pictures = [Image.open(p).convert("RGB") for p in images[:2]]
    results = explain_batch(model_set.models, pictures)
    rows = [GridRow(p.name, np.asarray(picture), {role: results[role][i] for role in model_set.roles})
            for i, (p, picture) in enumerate(zip(images, pictures))]
    fig = cam_grid(rows, CLASSES, TITLES, "Grad-CAM", note=OUT_OF_DOMAIN)
    try:
        assert fig._suptitle.get_text().replace("\n", " ") == OUT_OF_DOMAIN
        assert overlaps(fig) == []
    finally:
        plt.close(fig)


def test_demo_models_on_a_photo_say_so_on_the_console_and_the_figure(tmp_path: Path, capsys) -> None:
    """A photo with the demo set: a warning line on the console and on the figure; images that `samples` wrote
    (listed in its labels.csv) carry none."""
    photo = tmp_path / "grace_hopper.jpg"
    photo.write_bytes(Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).read_bytes())
    assert main(["explain", str(photo), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr()
    assert out.err.startswith("warning: These models know only the 12 generated shapes") and "--set imagenet" in out.err
    assert "pred " in out.out

    generated = main_samples(tmp_path / "samples")
    assert main(["figure", str(photo), str(generated), "--out", str(tmp_path / "fig.svg")]) == 0
    out = capsys.readouterr()
    assert "warning: These models know only the 12 generated shapes" in out.err and "Not generated: grace_hopper.jpg." in out.err
    assert f"Not generated: {generated.name}" not in out.err
    svg = ET.parse(tmp_path / "fig.svg").getroot()
    text = " ".join("".join(t.itertext()) for t in svg.iter("{http://www.w3.org/2000/svg}text"))
    assert OUT_OF_DOMAIN in " ".join(text.split()) and "Not generated: grace_hopper.jpg." in text

    assert main(["figure", str(generated), "--out", str(tmp_path / "generated.svg")]) == 0
    assert "warning" not in capsys.readouterr().err
    assert "know only" not in (tmp_path / "generated.svg").read_text()


def main_samples(folder: Path) -> Path:
    """One image written by `python -m cbam_viz samples` (with its labels.csv)."""
    assert main(["samples", "--out", str(folder), "-n", "1", "--seed", "9"]) == 0
    return next(p for p in folder.glob("*.png") if not p.name.endswith("_mask.png"))
