"""``python -m cbam_viz`` end to end, in subprocesses, on the shipped demo pair."""
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cbam_viz.data import CLASSES, render_sample

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cbam_viz", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def test_explain_writes_figure_and_arrays(tmp_path):
    sample = render_sample(seed=9, index=4)
    sample.image.save(tmp_path / "star.png")
    result = run("explain", str(tmp_path / "star.png"), "--target", sample.class_name, "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    figure = Image.open(tmp_path / "out" / "star_gradcam.png")
    assert figure.width > 600 and figure.height > 300
    arrays = np.load(tmp_path / "out" / "star_gradcam.npz")
    assert arrays["baseline/cam"].shape == arrays["se/cam"].shape == arrays["cbam/cam"].shape == (96, 96)
    assert int(arrays["baseline/target"]) == int(arrays["se/target"]) == int(arrays["cbam/target"]) == CLASSES.index(sample.class_name)
    assert len([k for k in arrays.files if k.startswith("cbam/spatial_attention/")]) == 8
    assert len([k for k in arrays.files if k.startswith("se/channel_attention/")]) == 8
    assert not any(k.startswith(("baseline/spatial_attention/", "se/spatial_attention/")) for k in arrays.files)
    assert f"explained {sample.class_name}" in result.stdout


def test_explain_with_checkpoint_files_and_method(tmp_path):
    sample = render_sample(seed=9, index=5)
    sample.image.save(tmp_path / "x.jpg")
    models = ROOT / "models"
    result = run("explain", str(tmp_path / "x.jpg"), "--baseline", str(models / "demo-baseline.pt"),
                 "--cbam", str(models / "demo-cbam.pt"), "--method", "layercam", "--layer", "layer3.1", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "x_layercam.png").is_file()


def test_bad_inputs_exit_2_with_one_line(tmp_path):
    (tmp_path / "fake.png").write_text("not an image")
    good = tmp_path / "good.png"
    render_sample(0, 0).image.save(good)
    cases = [
        (["explain", str(tmp_path / "fake.png"), "--out", str(tmp_path)], "fake.png: not an image file"),
        (["explain", str(tmp_path / "missing.png"), "--out", str(tmp_path)], "missing.png: file not found"),
        (["explain", str(good), "--method", "magic", "--out", str(tmp_path)], "unknown method 'magic'"),
        (["explain", str(good), "--target", "unicorn", "--out", str(tmp_path)], "unknown target class 'unicorn'"),
        (["explain", str(good), "--layer", "layer9.9", "--out", str(tmp_path)], "unknown layer 'layer9.9'; choose from layer1.0"),
        (["explain", str(good), "--baseline", str(good), "--out", str(tmp_path)], "give both --baseline and --cbam"),
        (["explain", str(good), "--baseline", str(good), "--cbam", str(good), "--out", str(tmp_path)], "good.png: not a PyTorch checkpoint"),
    ]
    for args, message in cases:
        result = run(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("error: ") and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_missing_imagenet_weights_name_the_file(tmp_path, monkeypatch):
    good = tmp_path / "good.png"
    render_sample(0, 0).image.save(good)
    result = run("explain", str(good), "--set", "imagenet", "--out", str(tmp_path),
                 env={"TORCH_HOME": str(tmp_path / "torch"), "CBAM_VIZ_RESNET50": "", "CBAM_VIZ_RESNET50_CBAM": ""})
    assert result.returncode == 2
    assert "resnet50-11ad3fa6.pth" in result.stderr and "CBAM_VIZ_RESNET50" in result.stderr


def test_samples_command(tmp_path):
    result = run("samples", "--out", str(tmp_path / "s"), "-n", "3", "--seed", "4")
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "s").glob("*_mask.png"))) == 3
    assert (tmp_path / "s" / "labels.csv").read_text().count("\n") == 4


def test_samples_default_is_the_shipped_demo_generator():
    """`samples` without --difficulty draws what the shipped demo models were trained and evaluated on."""
    from cbam_viz.cli import build_parser

    manifest = json.loads((ROOT / "models" / "manifest.json").read_text())
    generators = {entry["generator"] for name, entry in manifest["models"].items() if name.startswith("demo")}
    assert generators == {build_parser().parse_args(["samples", "--out", "x"]).difficulty}


HEAVY = ("torch", "torchvision", "pytorchcv", "pytorch_grad_cam", "gradio", "sqlalchemy", "matplotlib", "cv2", "scipy")
PROBE = ("import sys\nfrom cbam_viz.cli import main\ntry:\n    status = main(sys.argv[1:])\nexcept SystemExit as e:\n"
         "    status = e.code\nprint('status', status, 'heavy', *sorted(m for m in {heavy} if m in sys.modules))\n")


def loaded_modules(*args: str, env: dict | None = None) -> tuple[str, list[str]]:
    """The command's exit status and the heavy modules it imported, in a fresh interpreter."""
    result = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, env={**os.environ, **(env or {})})
    words = result.stdout.strip().splitlines()[-1].split()
    return words[1], words[3:]


def test_argument_and_file_errors_answer_before_torch_loads(tmp_path):
    """--help, a bad option and a missing input file (explain, figure, evaluate --images) import neither torch
    nor any other heavy library (benchmarks/bench_cli_startup.py times them)."""
    missing, photo = str(tmp_path / "cheetah.jpg"), str(tmp_path / "photo.png")
    Image.new("RGB", (64, 48), (200, 120, 40)).save(photo)
    cases = [
        (["--help"], "0"),
        (["explain", missing, "--out", str(tmp_path)], "2"),
        (["explain", photo, "--method", "magic", "--out", str(tmp_path)], "2"),
        (["figure", missing, "--out", str(tmp_path / "fig.pdf")], "2"),
        (["figure", missing, "--out", str(tmp_path / "fig.jpg")], "2"),
        (["evaluate", "--images", str(tmp_path / "photos"), "--annotations", str(tmp_path / "boxes.csv")], "2"),
        (["evaluate", "--methods", "magic"], "2"),
    ]
    for args, status in cases:
        assert loaded_modules(*args) == (status, []), args


def test_weights_list_answers_before_torch_loads(tmp_path):
    """``weights list`` (files found, published sources) and its errors and help import none of the heavy libraries."""
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / "resnet50-11ad3fa6.pth").touch()  # found in the hub cache: described by the published-file table
    env = {"TORCH_HOME": str(tmp_path / "torch"), "CBAM_VIZ_WEIGHTS": str(tmp_path / "weights")}
    for args, status in [(["weights", "list"], "0"), (["weights", "list", "demo"], "2"), (["weights", "--help"], "0"),
                         (["weights", "list", "--help"], "0")]:
        assert loaded_modules(*args, env=env) == (status, []), args
    listing = run("weights", "list", env=env).stdout
    assert f"now: {hub / 'resnet50-11ad3fa6.pth'}" in listing and "top-1 80.858%" in listing


def test_a_missing_image_folder_is_named(tmp_path):
    result = run("evaluate", "--images", str(tmp_path / "photos"), "--annotations", str(tmp_path / "boxes.csv"))
    assert result.returncode == 2 and result.stderr.strip() == f"error: {tmp_path / 'photos'}: no such folder"


def test_the_method_names_checked_before_loading_are_the_engines():
    from cbam_viz.explain import METHOD_NAMES, METHODS

    assert list(METHOD_NAMES) == list(METHODS)


def test_the_generator_names_offered_before_loading_are_the_presets():
    from cbam_viz.cli import GENERATORS
    from cbam_viz.data import DIFFICULTIES

    assert GENERATORS == list(DIFFICULTIES)


def test_the_shipped_training_commands_name_the_recipes_the_models_were_trained_with():
    """Pasted, each manifest's training command trains what shipped: its recipe equals the one in the file."""
    import shlex
    from dataclasses import asdict

    import torch

    from cbam_viz import CLI
    from cbam_viz.cli import build_parser, train_recipe
    from cbam_viz.models.sets import MODELS_DIR, read_manifest
    from cbam_viz.training import Recipe

    shipped = {k: e for k, e in read_manifest(MODELS_DIR)["models"].items() if e.get("training_command")}
    assert shipped
    for name, entry in shipped.items():
        command = entry["training_command"]
        assert command.startswith(f"{CLI} train ") and command in entry["how_to_get"], name
        assert "--resume" not in shlex.split(command), name  # pasted on a clone with the models, it would train nothing
        args = build_parser().parse_args(shlex.split(command)[len(shlex.split(CLI)):])
        named = asdict(train_recipe(args))
        stored = torch.load(MODELS_DIR / entry["file"], weights_only=True)["metrics"]["recipe"]
        stored = {**asdict(Recipe(schedule=entry.get("schedule", "onecycle"), init=entry.get("init", "torchvision"))), **stored}  # older files: fewer fields
        assert args.seed <= stored["seed"] < args.seed + args.seeds, name
        assert {k: v for k, v in named.items() if k != "seed"} == {k: v for k, v in stored.items() if k != "seed"}, name


def test_the_recorded_training_command_retrains_from_scratch():
    from cbam_viz import CLI
    from cbam_viz.cli import build_parser
    from cbam_viz.training import retrain_command

    argv = ["train", "--out-dir", "models", "--resume", "--state-dir", "/tmp/s", "--seeds", "3", "--state-dir=/x", "--lr", "0.1"]
    assert retrain_command(argv) == f"{CLI} train --out-dir models --seeds 3 --lr 0.1"
    with pytest.raises(SystemExit):  # no abbreviations that the recorded command would keep
        build_parser().parse_args(["train", "--resum"])


def test_train_records_the_command_as_typed_and_a_library_call_none(tmp_path, monkeypatch):
    """The manifest's training_command is the CLI's own argv (less --resume and --state-dir), whatever
    process runs it (here pytest); a library call records none."""
    from cbam_viz import CLI
    from cbam_viz.cli import main
    from cbam_viz.models.sets import read_manifest
    from cbam_viz.training import Recipe, register_set, train_set

    monkeypatch.setenv("CBAM_VIZ_TRAIN_STATE", str(tmp_path / "state"))
    tiny = ["--train-size", "32", "--val-size", "16", "--size", "32", "--width", "4", "--epochs", "1", "--batch-size", "16",
            "--schedule", "onecycle", "--difficulty", "easy", "--roles", "baseline", "--curves", str(tmp_path / "c.csv")]
    argv = ["train", "--out-dir", str(tmp_path / "cli"), *tiny]
    assert main([*argv, "--resume", "--state-dir", str(tmp_path / "s")]) == 0
    entry = read_manifest(tmp_path / "cli")["models"]["demo-baseline"]
    assert entry["training_command"] == f"{CLI} " + shlex.join(argv)
    assert entry["how_to_get"].endswith("; retrain with: " + entry["training_command"])
    recipe = Recipe(train_size=32, val_size=16, test_size=16, size=32, width=4, epochs=1, batch_size=16,
                    schedule="onecycle", difficulty="easy")
    results = train_set(recipe, tmp_path / "lib", roles=("baseline",))
    entry = read_manifest(register_set(results, tmp_path / "lib").parent)["models"]["demo-baseline"]
    assert entry["training_command"] == "" and entry["how_to_get"] == "it ships with the project"


def test_train_refuses_a_recipe_out_of_range_with_a_clear_message(tmp_path, capsys):
    from cbam_viz.cli import main

    for flags, message in [(["--patience", "0"], "patience must be at least 1"), (["--epochs", "0"], "epochs must be at least 1"),
                           (["--lr-drops", "-1"], "lr_drops must be at least 0"),
                           (["--batch-size", "64", "--train-size", "32"], "batch_size must be between 1 and train_size")]:
        assert main(["train", "--out-dir", str(tmp_path), "--state-dir", str(tmp_path), *flags]) == 2, flags
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, flags


def test_every_cli_command_in_the_readme_parses():
    """Each `bash run.sh cli ...` line of the README's shell blocks, pasted, is accepted by the CLI's parser."""
    import re
    import shlex

    from cbam_viz.cli import build_parser

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    commands = [m.group(1) for block in re.findall(r"```bash\n(.*?)```", readme, re.S)
                for line in block.replace("\\\n", " ").splitlines() if not line.lstrip().startswith("#")
                for m in [re.search(r"(?:^|\s)bash run\.sh cli (.*)", line)] if m]
    assert len(commands) >= 20
    parser = build_parser()
    for command in commands:
        try:
            parser.parse_args(shlex.split(command, comments=True))
        except SystemExit:
            pytest.fail(f"the README's `bash run.sh cli {command}` does not parse")
