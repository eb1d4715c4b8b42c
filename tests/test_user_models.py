"""Your own models (--models FILE): validation that names file, entry and key, and a 2-class CBAM set
used through every feature: the Compare API, the CLI and a user study."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from app_fixtures import serve
from gradio_client import Client, handle_file
from PIL import Image

from cbam_viz.models import build_resnet, save_checkpoint
from cbam_viz.models.config import ModelsConfigError, read_models_config
from cbam_viz.models.sets import load_set
from cbam_viz.service import AppContext
from cbam_viz.ui.compare import OWN, TRUTH

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["benign", "malignant"]


@pytest.fixture(scope="module")
def models_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 2-class models trained "elsewhere": a baseline saved as a plain state dict, a CBAM model in the
    project's format, a class-names file and the TOML that registers them as set "skin"."""
    folder = tmp_path_factory.mktemp("mine")
    torch.manual_seed(0)
    baseline = build_resnet(18, None, num_classes=2, width=8, stem="small").eval()
    torch.save(baseline.state_dict(), folder / "baseline.pth")
    cbam = build_resnet(18, "cbam", num_classes=2, width=8, stem="small").eval()
    cbam.info.class_names, cbam.info.input_size, cbam.info.resize = list(CLASSES), 48, None
    save_checkpoint(cbam, folder / "cbam.pt")
    (folder / "classes.txt").write_text("benign\nmalignant\n")
    common = 'depth = 18\noptions = { width = 8, stem = "small" }\nclass_names_file = "classes.txt"\n' \
             'input_size = 48\nresize = false\nmean = [0.5, 0.5, 0.5]\nstd = [0.25, 0.25, 0.25]\n'
    (folder / "mine.toml").write_text(
        f'[models.skin-base]\npath = "baseline.pth"\nattention = "none"\n{common}\n'
        f'[models.skin-cbam]\npath = "cbam.pt"\nattention = "cbam"\ntitle = "ResNet-18 + CBAM (skin)"\n{common}\n'
        '[sets.skin]\nmodels = { baseline = "skin-base", cbam = "skin-cbam" }\ndescription = "dermoscopy"\n')
    return folder / "mine.toml"


@pytest.fixture(scope="module")
def lesion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("img") / "lesion.png"
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(path)
    return path


def test_the_set_loads_with_its_classes_and_preprocessing(models_file: Path) -> None:
    skin = load_set("skin", device="cpu", user=read_models_config(models_file))
    assert skin.roles == ["baseline", "cbam"] and skin.class_names == CLASSES
    assert skin.info.input_size == 48 and skin.info.resize is None and skin.info.mean == (0.5, 0.5, 0.5)
    assert skin.models["cbam"].info.title == "ResNet-18 + CBAM (skin)"


BAD = {  # TOML body -> the key the message must name
    '[models.a]\npath = "x.pth"\ndepth = 18\nclass_names = ["p", "q"]\n[sets.s]\nmodels = {b = "a", c = "a"}':
        "model 'a', key 'path'",
    '[models.a]\npath = "mine.toml"\ndepth = 19\nclass_names = ["p", "q"]': "model 'a', key 'depth'",
    '[models.a]\npath = "mine.toml"\ndepth = 18\nattention = "bam"\nclass_names = ["p", "q"]': "key 'attention'",
    '[models.a]\npath = "mine.toml"\ndepth = 18': "key 'class_names'",
    '[models.a]\npath = "mine.toml"\ndepth = 18\nclass_names = ["p"]': "key 'class_names'",
    '[models.a]\npath = "mine.toml"\ndepth = 18\nclass_names = ["p", "q"]\nresize = 10': "key 'resize'",
    '[models.a]\npath = "mine.toml"\ndepth = 18\nclass_names = ["p", "q"]\nstd = [1, 0, 1]': "key 'std'",
    '[models.a]\npath = "mine.toml"\ndepth = 18\nclass_names = ["p", "q"]\ncolour = "red"': "key 'colour'",
    '[models.a]\npath = "mine.toml"\ndepth = 18\nclass_names = ["p", "q"]\n[sets.s]\nmodels = {b = "a", c = "z"}':
        "set 's', key 'models': role 'c' names unknown model 'z'",
    '[models.a]\npath = "mine.toml"\ndepth = 18\nclass_names = ["p", "q"]\n'
    '[models.b]\npath = "mine.toml"\ndepth = 18\nclass_names = ["p", "r"]\n[sets.s]\nmodels = {x = "a", y = "b"}':
        "set 's', key 'models': its models differ in class_names",
    '[models.a]\npath = "mine.toml"\ndepth = 18\nclass_names = ["p", "q"]': "defines no [sets.*]",
    'models = 3': "[models] must hold tables",
    '[models.a\n': "not valid TOML",
    '[models.a]\npath = "mine.toml"\ndepth = 18\nclass_names = ["p", "q"]\noptions = { colour = 1 }':
        "model 'a', key 'options'",
    '[models.a]\npath = "mine.toml"\ndepth = 18\nattention = "se"\nclass_names = ["p", "q"]\n'
    'options = { spatial_kernel = 3 }': "model 'a', key 'options'",
    '[models.a]\npath = "mine.toml"\ndepth = 18\nclass_names = ["p", "q"]\n'
    '[models.b]\npath = "mine.toml"\ndepth = 34\nclass_names = ["p", "q"]\n[sets.s]\nmodels = {x = "a", y = "b"}':
        "set 's', key 'models': its models differ in depth",
}


@pytest.mark.parametrize("body", BAD, ids=range(len(BAD)))
def test_errors_name_the_file_the_entry_and_the_key(models_file: Path, body: str) -> None:
    bad = models_file.parent / "bad.toml"
    bad.write_text(body)
    with pytest.raises(ModelsConfigError) as error:
        read_models_config(bad)
    assert str(error.value).startswith(str(bad)) and BAD[body] in str(error.value), str(error.value)


def test_a_user_set_may_not_shadow_a_shipped_one(models_file: Path) -> None:
    user = read_models_config(models_file)
    user["sets"]["demo"] = user["sets"]["skin"]
    with pytest.raises(ModelsConfigError, match="redefines set 'demo'"):
        load_set("skin", device="cpu", user=user)


def test_compare_tab_and_export_with_the_users_models(models_file: Path, lesion: Path, tmp_path: Path) -> None:
    ctx = AppContext(device="cpu", user_models=models_file)
    assert "skin" in ctx.sets and "demo" in ctx.sets
    with serve(ctx) as url:
        client = Client(url, verbose=False, ssl_verify=False, download_files=tmp_path)
        info, layer, target, block, left, right = client.predict("skin", api_name="/select_set")
        assert "dermoscopy" in info and [c[1] for c in target["choices"]] == [TRUTH, OWN, *CLASSES]
        outputs = client.predict(handle_file(str(lesion)), model_set="skin", method="gradcam", layer="layer4.1",
                                 target="malignant", shared=False, block="layer4.1", left="baseline", right="cbam",
                                 api_name="/compare")
        summary, views = outputs[0], outputs[1]
        assert "for class malignant" in summary and "know only the 12 generated shapes" not in summary
        assert len(views) == 2 and outputs[5] and outputs[6]  # CBAM spatial and channel attention panels
        files = client.predict(handle_file(str(lesion)), model_set="skin", method="gradcam", layer="layer4.1",
                               target="malignant", api_name="/export")
        with np.load(next(f for f in files if f.endswith(".npz"))) as arrays:
            assert arrays["baseline/probs"].shape == (2,) and int(arrays["cbam/target"]) == 1


def test_cli_explain_with_the_users_models(models_file: Path, lesion: Path, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "cbam_viz", "explain", str(lesion), "--models", str(models_file),
                             "--set", "skin", "--target", "malignant", "--out", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "explained malignant" in result.stdout and (tmp_path / "lesion_gradcam.png").is_file()


def test_a_study_with_the_users_models(models_file: Path, lesion: Path, tmp_path: Path) -> None:
    from cbam_viz.study import FolderStimuli, StudyConfig, build_runtime, open_store

    folder = tmp_path / "stimuli"
    folder.mkdir()
    rows = ["file,target_class"]
    for i in range(4):
        Image.open(lesion).rotate(90 * i).save(folder / f"l{i}.png")
        rows.append(f"l{i}.png,{CLASSES[i % 2]}")
    (folder / "stimuli.csv").write_text("\n".join(rows) + "\n")
    config = StudyConfig(name="skin-study", pair="skin", stimuli=FolderStimuli(folder, folder / "stimuli.csv"),
                         trials_per_participant=2)
    ctx = AppContext(sets=["skin"], device="cpu", user_models=models_file)
    with open_store(None, tmp_path / "data") as store:
        runtime = build_runtime(ctx, store, config, warm=False)
        view = runtime.session.join(None)
        while view.trial is not None:
            assert view.trial.target_class in CLASSES and len(view.trial.map_a) == len(view.trial.map_b)
            view, _ = runtime.session.vote(view.credential, view.trial.position, "A", 800)
        votes = store.votes("skin-study")
    assert len(votes) == 2 and {v.target_class for v in votes} <= set(CLASSES)
    assert all(v.pred_a in CLASSES and v.pred_b in CLASSES for v in votes)


def test_a_set_without_baseline_and_cbam_roles_cannot_run_a_study(models_file: Path, tmp_path: Path) -> None:
    from cbam_viz.study import ConfigError, DemoStimuli, StudyConfig, build_runtime, open_store

    renamed = models_file.parent / "renamed.toml"
    renamed.write_text(models_file.read_text().replace("baseline = ", "plain = ").replace("[sets.skin]", "[sets.other]"))
    ctx = AppContext(sets=["other"], device="cpu", user_models=renamed)
    config = StudyConfig(name="x", pair="other", stimuli=DemoStimuli(count=4), trials_per_participant=2)
    with open_store(None, tmp_path) as store, pytest.raises(ConfigError, match="has no 'baseline' model"):
        build_runtime(ctx, store, config, warm=False)


def test_a_study_compares_the_two_models_its_config_names(models_file: Path, lesion: Path, tmp_path: Path) -> None:
    """models = ["se", "cbam"] on a three-model set: the maps, predictions and results are SE's and CBAM's."""
    from cbam_viz.study import FolderStimuli, StudyConfig, build_runtime, open_store
    from cbam_viz.study.report import build_report

    torch.manual_seed(1)
    se = build_resnet(18, "se", num_classes=2, width=8, stem="small").eval()
    torch.save(se.state_dict(), models_file.parent / "se.pth")
    three = models_file.parent / "three.toml"
    text = models_file.read_text().replace("[sets.skin]", "[sets.three]").replace(
        'models = { baseline = "skin-base", cbam = "skin-cbam" }',
        'models = { baseline = "skin-base", se = "skin-se", cbam = "skin-cbam" }')
    common = text[text.index("depth = 18"):text.index("\n\n", text.index("depth = 18"))]
    three.write_text(text + f'\n[models.skin-se]\npath = "se.pth"\nattention = "se"\n{common}\n')
    folder = tmp_path / "stimuli"
    folder.mkdir()
    Image.open(lesion).save(folder / "a.png")
    Image.open(lesion).rotate(90).save(folder / "b.png")
    (folder / "stimuli.csv").write_text("file,target_class\na.png,benign\nb.png,malignant\n")
    config = StudyConfig(name="se-vs-cbam", pair="three", models=("se", "cbam"),
                         stimuli=FolderStimuli(folder, folder / "stimuli.csv"), trials_per_participant=2)
    ctx = AppContext(sets=["three"], device="cpu", user_models=three)
    with open_store(None, tmp_path / "data") as store:
        runtime = build_runtime(ctx, store, config, warm=False)
        view = runtime.session.join(None)
        while view.trial is not None:
            view, _ = runtime.session.vote(view.credential, view.trial.position, "A", 800)
        votes, report = store.votes("se-vs-cbam"), build_report(store, "se-vs-cbam")
    for vote in votes:
        image = Image.open(folder / ("a.png" if vote.target_class == "benign" else "b.png"))
        truth = ctx.explain("three", image.convert("RGB"), "gradcam", CLASSES.index(vote.target_class))
        a, b = truth[vote.shown_as_a], truth[vote.shown_as_b]
        assert {vote.shown_as_a, vote.shown_as_b} == {"se", "cbam"}
        assert (vote.pred_a, vote.pred_b) == (CLASSES[a.prediction], CLASSES[b.prediction])
        assert (vote.prob_a, vote.prob_b) == pytest.approx((float(a.probs.max()), float(b.probs.max())))
    assert "Prefers CBAM** (of decisive votes, vs SE)" in report.markdown
    assert report.per_image[0][-1] == "CBAM share" and "SE" in report.per_image[0]
    with pytest.raises(ValueError, match="two to 4 models"):
        StudyConfig(name="x", pair="three", models=("se",))
