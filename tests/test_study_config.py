"""Study TOML loading and validation."""
from __future__ import annotations

from pathlib import Path

import pytest

from cbam_viz.study import ConfigError, DemoStimuli, FolderStimuli, StudyConfig, load_config, load_stimuli


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_minimal_file_gets_the_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, 'name = "pilot"\npair = "resnet50"\n'))
    assert config == StudyConfig(name="pilot", pair="resnet50")
    assert (config.method, config.trials_per_participant) == ("gradcam", 20)
    assert config.answers == ("A", "B", "same", "neither")
    assert (config.display, config.threshold) == ("overlay", 0.6)
    assert not config.repeat_trial and not config.collect_expertise
    assert config.stimuli == DemoStimuli()
    assert config.question_for("tabby cat") == "Which map better covers the tabby cat?"


def test_folder_stimuli_resolve_against_the_file(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for name in ("cat.png", "dog.png"):
        (images / name).write_bytes(b"")
    (images / "labels.csv").write_text("file,target_class\ncat.png,tabby\ndog.png,beagle\n", encoding="utf-8")
    config = load_config(write(tmp_path, """
name = "folder-study"
pair = "resnet50"
method = "gradcam++"
trials_per_participant = 2
display = "threshold"
threshold = 0.5
repeat_trial = true
collect_expertise = true
expertise_options = ["none", "expert"]
answers = ["A", "B", "same"]
[stimuli]
kind = "folder"
folder = "images"
csv = "images/labels.csv"
"""))
    assert config.stimuli == FolderStimuli(folder=images.resolve(), csv=(images / "labels.csv").resolve())
    assert [(s.id, s.target_class, s.path) for s in load_stimuli(config)] == [
        ("cat.png", "tabby", images.resolve() / "cat.png"), ("dog.png", "beagle", images.resolve() / "dog.png")]
    assert StudyConfig.from_dict(config.to_dict()) == config


def test_demo_stimuli_ids() -> None:
    config = StudyConfig(name="d", pair="p", stimuli=DemoStimuli(seed=7, count=3), trials_per_participant=3)
    assert [(s.id, s.index) for s in load_stimuli(config)] == [("demo:7:0", 0), ("demo:7:1", 1), ("demo:7:2", 2)]


@pytest.mark.parametrize(
    "extra, message",
    [
        ("colour = 1", "unknown key"),
        ("display = 'heatmap'", "display must be one of"),
        ("threshold = 1.5", "threshold must lie"),
        ("threshold = true", "threshold must be a number"),
        ("trials_per_participant = '20'", "trials_per_participant must be an integer"),
        ("trials_per_participant = 0", "at least 1"),
        ("trials_per_participant = 41", "exceeds stimuli.count"),
        ("trials_per_participant = 1\nrepeat_trial = true", "repeat_trial needs"),
        ("repeat_trial = 'yes'", "repeat_trial must be true or false"),
        ("answers = ['A', 'same']", "must include"),
        ("answers = ['A', 'B', 'A']", "duplicates"),
        ("answers = 'A,B'", "answers must be a list"),
        ("question = 'Which is better for {label}?'", "placeholder"),
        ("expertise_options = []", "expertise_options"),
        ("method = ''", "method must not be empty"),
        ("[stimuli]\nkind = 'video'", "stimuli.kind"),
        ("[stimuli]\ncount = 0", "stimuli.count"),
        ("[stimuli]\nseeds = 1", "unknown key"),
        ("[stimuli]\nkind = 'folder'", "'folder' \\(required\\)"),
    ],
)
def test_invalid_settings_are_named(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, f'name = "x"\npair = "resnet50"\n{extra}\n'))


def test_missing_keys_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing required key\(s\) \['pair'\]"):
        load_config(write(tmp_path, 'name = "x"\n'))
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(write(tmp_path, "name = \n"))


@pytest.mark.parametrize(
    "csv_text, message",
    [
        ("file,label\ncat.png,tabby\n", "header"),
        ("file,target_class\nmissing.png,tabby\n", "image not found"),
        ("file,target_class\ncat.png,\n", "empty"),
        ("file,target_class\ncat.png,tabby\ncat.png,tabby\n", "duplicate"),
    ],
)
def test_bad_stimulus_csv(tmp_path: Path, csv_text: str, message: str) -> None:
    (tmp_path / "cat.png").write_bytes(b"")
    (tmp_path / "stimuli.csv").write_text(csv_text, encoding="utf-8")
    config = StudyConfig(name="x", pair="p", stimuli=FolderStimuli(folder=tmp_path, csv=tmp_path / "stimuli.csv"))
    with pytest.raises(ConfigError, match=message):
        load_stimuli(config)
