"""Evaluating folders of labelled images: CSV (the `samples` layout), VOC XML, COCO JSON and mask
folders written from the generator, the skip list, ImageNet WordNet ids and the model's geometry."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask
from torchvision.datasets.imagenette import Imagenette

from cbam_viz.data import DIFFICULTIES, write_samples
from cbam_viz.data.annotations import Annotation, AnnotationError, imagenet_wnids, read_annotations
from cbam_viz.evaluate import evaluate, evaluate_folder, write_outputs
from cbam_viz.evaluate.datasets import Skipped, class_resolver, folder_dataset, prepare
from cbam_viz.models.sets import imagenet_classes
from tests.evaluate_support import SIZE, tiny, tiny_set

ROOT = Path(__file__).resolve().parents[1]
N, SEED = 6, 5
METRICS = ("pointing", "energy", "iou", "road")
NO_ROAD = METRICS[:-1]


@pytest.fixture(scope="module")
def three():
    return tiny_set()


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    """What `python -m cbam_viz samples` writes: images, <stem>_mask.png and labels.csv."""
    out = tmp_path_factory.mktemp("samples")
    write_samples(out, N, SEED, SIZE, DIFFICULTIES["easy"])
    return out


@pytest.fixture(scope="module")
def generated(three):
    return evaluate(three, ["gradcam"], n=N, seed=SEED, batch_size=4)


def _labels(samples: Path) -> list[dict]:
    with open(samples / "labels.csv", newline="") as f:
        return list(csv.DictReader(f))


def _same(a, b, metrics=METRICS) -> None:
    assert a.roles == b.roles and a.classes == b.classes
    for role in a.roles:
        assert np.array_equal(a.accuracy[role], b.accuracy[role])
        for placement in ("half-pixel", "receptive-field"):
            for metric in metrics:
                assert np.array_equal(a.values["gradcam"][placement][role][metric], b.values["gradcam"][placement][role][metric]), \
                    (role, placement, metric)


def test_csv_folder_of_samples_equals_the_generated_evaluation(three, samples, generated, tmp_path):
    folder = evaluate_folder(three, samples, samples / "labels.csv", "csv", ["gradcam"], seed=SEED, batch_size=4)
    assert folder.images == [row["file"] for row in _labels(samples)] and folder.indices == generated.indices
    assert folder.skipped == []  # the masks beside the images are not "uncovered images"
    _same(folder, generated)
    for name in ("uniform", "centre"):
        for role in folder.roles:
            for metric, values in folder.reference[name][role].items():
                assert np.array_equal(values, generated.reference[name][role][metric])
    paths = write_outputs(folder, tmp_path)
    assert [p.name for p in paths] == [f"tiny3_{samples.name}_per_image.csv", f"tiny3_{samples.name}_summary.csv",
                                      f"tiny3_{samples.name}_summary.md"]
    rows = list(csv.DictReader(open(paths[0])))
    generated_rows = list(csv.DictReader(open(write_outputs(generated, tmp_path / "generated")[0])))
    assert [{k: v for k, v in r.items() if k != "image"} for r in rows] == \
           [{k: v for k, v in r.items() if k != "image"} for r in generated_rows]
    assert rows[0]["image"] == _labels(samples)[0]["file"]


def _voc(folder: Path, rows: list[dict], skip_first_object: bool = False) -> None:
    folder.mkdir()
    for row in rows:
        stem = Path(row["file"]).stem
        x0, y0, x1, y1 = (int(row[k]) for k in ("x0", "y0", "x1", "y1"))
        (folder / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}</filename><size><width>{SIZE}</width><height>{SIZE}</height><depth>3</depth></size>"
            f"<object><name>{row['class']}</name><bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin>"
            f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object></annotation>")


def test_voc_boxes_and_the_skip_list(three, samples, generated, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rows = _labels(samples)
    for row in rows:
        (images / row["file"]).write_bytes((samples / row["file"]).read_bytes())
    Image.new("RGB", (SIZE, SIZE)).save(images / "extra.png")  # no annotation covers it
    (images / rows[1]["file"]).write_bytes((samples / rows[1]["file"]).read_bytes()[:200])  # truncated
    _voc(tmp_path / "xml", rows)
    (tmp_path / "xml" / "broken.xml").write_text("<annotation><object>")
    (tmp_path / "xml" / "zebra.xml").write_text(
        "<annotation><filename>extra.png</filename><object><name>zebra</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
        "<xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>")
    (tmp_path / "xml" / "ghost.xml").write_text(
        "<annotation><filename>ghost.jpg</filename><object><name>circle</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
        "<xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>")
    result = evaluate_folder(three, images, tmp_path / "xml", "voc", ["gradcam"], seed=SEED, batch_size=4, road=False)
    reasons = dict(result.skipped)
    assert reasons["broken.xml"].startswith("unusable VOC XML")
    assert reasons["extra.png"] == "class 'zebra' is not one of the models' classes"
    assert reasons["ghost.jpg"] == "no such image in images"
    assert "truncated or corrupt image" in reasons[rows[1]["file"]]
    assert len(result.skipped) == 4 and result.n == N - 1
    kept = [i for i in range(N) if i != 1]
    assert result.indices == kept  # the broken image keeps its place: the others' ROAD seeds do not move
    for role in result.roles:  # boxes only: the energy game is the same as with the CSV boxes (in other batches: to rounding)
        energy = result.values["gradcam"]["half-pixel"][role]["energy"]
        assert np.allclose(energy, generated.values["gradcam"]["half-pixel"][role]["energy"][kept], rtol=1e-5, atol=1e-7)
    md = write_outputs(result, tmp_path / "out")
    assert "Skipped 4 image(s) or annotation(s)" in md[2].read_text() and md[3].name.endswith("_skipped.csv")
    assert len(md[3].read_text().splitlines()) == 5


def test_voc_without_extension_and_imagenet_wordnet_ids(tmp_path):
    """ImageNet's validation XML names the image without extension and the class by WordNet id."""
    assert len(imagenet_wnids()) == 1000 and imagenet_wnids() == sorted(imagenet_wnids())
    names = imagenet_classes()
    for wnid, aliases in Imagenette._WNID_TO_CLASS.items():  # torchvision's own wnid -> name pairs
        assert names[imagenet_wnids().index(wnid)] == aliases[0]
    resolve = class_resolver(names)
    assert resolve("n01440764") == 0 and resolve("tench") == 0 and resolve("n99999999") is None
    assert class_resolver(["circle", "square"])("n01440764") is None and class_resolver(["circle", "Square"])("square") == 1
    (tmp_path / "img").mkdir()
    Image.new("RGB", (80, 60), "white").save(tmp_path / "img" / "ILSVRC2012_val_00000001.JPEG")
    (tmp_path / "val.xml").write_text(
        "<annotation><folder>val</folder><filename>ILSVRC2012_val_00000001</filename><size><width>80</width><height>60</height>"
        "</size><object><name>n01440764</name><bndbox><xmin>11</xmin><ymin>21</ymin><xmax>30</xmax><ymax>40</ymax></bndbox>"
        "</object><object><name>n01440764</name><bndbox><xmin>41</xmin><ymin>1</ymin><xmax>50</xmax><ymax>10</ymax></bndbox>"
        "</object></annotation>")
    info = tiny(None, 0, classes=names, size=32, resize=None).info
    dataset, skipped = folder_dataset(tmp_path / "img", "voc", tmp_path / "val.xml", names, info)
    assert skipped == [] and len(dataset) == 1 and dataset.labels == [0]
    assert dataset.annotations[0].boxes == [(10.0, 20.0, 30.0, 40.0), (40.0, 0.0, 50.0, 10.0)]
    target = dataset[0]
    assert target.pixels.shape == (3, 32, 32) and target.region.sum() == target.mask.sum() > 0


def test_annotations_follow_the_models_resize_and_centre_crop():
    """A 120x90 image whose box is painted white: after Resize(73) + CenterCrop(64) the mapped box is where the white is."""
    info = tiny(None, 0, size=64, resize=73).info
    pixels = np.zeros((90, 120, 3), np.uint8)
    pixels[30:70, 50:110] = 255  # the box (50, 30, 110, 70) runs off the right edge of the crop
    target = prepare(0, "x", Image.fromarray(pixels), 0, "circle", [(50, 30, 110, 70)], None, info)
    white = target.pixels.numpy().min(axis=0) > 127
    assert target.mask.shape == (64, 64) and (target.mask ^ white).sum() <= 2 * 64  # at most one pixel of edge
    assert np.array_equal(target.region, target.mask)
    outside = prepare(0, "x", Image.fromarray(pixels), 0, "circle", [(0, 0, 8, 8)], None, info)
    assert outside == Skipped("x", "the annotated object is outside the part of the image the model sees")


def test_coco_rle_and_polygons(three, samples, generated, tmp_path):
    rows = _labels(samples)
    categories = sorted({r["class"] for r in rows})
    coco = {"images": [], "annotations": [], "categories": [{"id": i + 1, "name": c} for i, c in enumerate(categories)]}
    for i, row in enumerate(rows):
        mask = np.asarray(Image.open(samples / row["file"].replace(".png", "_mask.png"))) > 0
        rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode()
        x0, y0, x1, y1 = (int(row[k]) for k in ("x0", "y0", "x1", "y1"))
        coco["images"].append({"id": i, "file_name": row["file"], "width": SIZE, "height": SIZE})
        coco["annotations"].append({"id": i, "image_id": i, "category_id": categories.index(row["class"]) + 1,
                                    "bbox": [x0, y0, x1 - x0, y1 - y0], "segmentation": rle, "iscrowd": 0})
    coco["annotations"].append({"id": 99, "image_id": 0, "category_id": 99, "bbox": [0, 0, 1, 1]})
    (tmp_path / "instances.json").write_text(json.dumps(coco))
    result = evaluate_folder(three, samples, tmp_path / "instances.json", "coco", ["gradcam"], seed=SEED, batch_size=4, road=False)
    assert result.skipped == [("instances.json annotation 99", "unusable instance (KeyError: 99)")]
    _same(result, generated, NO_ROAD)  # the RLE masks are the generator's masks, the boxes its boxes

    square = Annotation("x.png", "circle", [(10, 10, 30, 30)], segmentations=[[[10, 10, 30, 10, 30, 30, 10, 30]]])
    filled = square.mask(40, 40)
    assert abs(int(filled.sum()) - 400) <= 41 and filled[10:30, 10:30].mean() > 0.95


def test_mask_folder_with_classes(three, samples, generated, tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    rows = _labels(samples)
    for row in rows:
        (images / row["file"]).write_bytes((samples / row["file"]).read_bytes())
        (masks / (Path(row["file"]).stem + ".png")).write_bytes((samples / row["file"].replace(".png", "_mask.png")).read_bytes())
    Image.new("RGB", (SIZE, SIZE)).save(images / "uncovered.png")
    with open(masks / "classes.csv", "w", newline="") as f:
        csv.writer(f).writerows([("file", "class")] + [(r["file"], r["class"]) for r in rows] + [("ghost.png", "circle")])
    result = evaluate_folder(three, images, masks, "masks", ["gradcam"], seed=SEED, batch_size=4, road=False)
    assert sorted(result.skipped) == [("ghost.png", "no mask ghost.png or ghost_mask.png in masks"),
                                      ("uncovered.png", "not covered by the annotations")]
    _same(result, generated, NO_ROAD)  # the mask is the generator's mask, its tight box the generator's box


def test_unreadable_annotations_are_one_line_errors(tmp_path):
    (tmp_path / "bad.csv").write_text("name,label\nx.png,circle\n")
    with pytest.raises(AnnotationError, match=r"^bad.csv: missing column\(s\) file, class, x0, y0, x1, y1; need file,class,x0,y0,x1,y1$"):
        read_annotations("csv", tmp_path / "bad.csv", tmp_path)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(AnnotationError, match="not a COCO instances file"):
        read_annotations("coco", tmp_path / "bad.json", tmp_path)
    with pytest.raises(AnnotationError, match="the masks format needs a classes.csv"):
        read_annotations("masks", tmp_path, tmp_path)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cbam_viz", "evaluate", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_cli_errors_are_one_line(tmp_path):
    result = _cli("--images", str(tmp_path))
    assert result.returncode == 2 and result.stderr.strip() == \
        "error: give both --images DIR and --annotations PATH, or neither (then generated images are scored)"
    (tmp_path / "notes.txt").write_text("")
    result = _cli("--images", str(tmp_path), "--annotations", str(tmp_path / "notes.txt"))
    assert result.returncode == 2 and "cannot tell the format" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    (tmp_path / "bad.csv").write_text("file\n")
    result = _cli("--images", str(tmp_path), "--annotations", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and result.stderr.startswith("error: bad.csv: missing column(s)")
    assert len(result.stderr.strip().splitlines()) == 1
