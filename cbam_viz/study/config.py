"""Study configuration: a small TOML file parsed into a validated `StudyConfig`.

Example::

    name = "pilot"
    pair = "imagenet"        # the model set
    models = ["se", "cbam"]  # the two models of the set compared (default: ["baseline", "cbam"])
    trials_per_participant = 20
    repeat_trial = true
    display = "threshold"
    threshold = 0.6

    [stimuli]
    kind = "folder"          # or "demo" (default) with seed/count
    folder = "images"        # relative to the TOML file
    csv = "images/labels.csv"  # columns file,target_class; default <folder>/stimuli.csv
"""
from __future__ import annotations

import csv
import string
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULT_ANSWERS = ("A", "B", "same", "neither")
DECISIVE_ANSWERS = ("A", "B")
DISPLAY_MODES = ("overlay", "threshold")


class ConfigError(ValueError):
    """The study configuration is invalid; the message names the offending key."""


@dataclass(frozen=True)
class DemoStimuli:
    """A fixed sample of the generated demo dataset: `count` images drawn with `seed`."""

    seed: int = 0
    count: int = 40
    kind: str = field(default="demo", init=False)


@dataclass(frozen=True)
class FolderStimuli:
    """Images in `folder`, listed with their target class in a CSV (`file,target_class`)."""

    folder: Path
    csv: Path
    kind: str = field(default="folder", init=False)


@dataclass(frozen=True)
class Stimulus:
    """One image participants judge. `index` is the demo sample index, `path` a folder image."""

    id: str
    target_class: str | None = None
    path: Path | None = None
    index: int | None = None


@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines a study; see the module docstring for the TOML layout."""

    name: str
    pair: str
    models: tuple[str, str] = ("baseline", "cbam")  # stored as the "baseline" and "cbam" slots, in this order
    method: str = "gradcam"
    stimuli: DemoStimuli | FolderStimuli = field(default_factory=DemoStimuli)
    trials_per_participant: int = 20
    question: str = "Which map better covers the {target}?"
    answers: tuple[str, ...] = DEFAULT_ANSWERS
    display: str = "overlay"
    threshold: float = 0.6
    repeat_trial: bool = False
    collect_expertise: bool = False
    expertise_options: tuple[str, ...] = ("layperson", "some ML experience", "ML/vision expert")

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base_dir: str | Path = ".") -> StudyConfig:
        """Build from parsed TOML/JSON; stimulus paths resolve (absolute) against `base_dir`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown key(s) {unknown}; allowed: {sorted(known)}")
        missing = [key for key in ("name", "pair") if key not in data]
        if missing:
            raise ConfigError(f"missing required key(s) {missing}")
        values = dict(data)
        values["stimuli"] = _parse_stimuli(values.get("stimuli", {}), Path(base_dir))
        for key in ("models", "answers", "expertise_options"):
            if key in values:
                values[key] = tuple(_require(key, values[key], list, "a list of strings"))
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict that `from_dict` turns back into an equal config."""
        data = asdict(self)
        data["stimuli"] = {k: str(v) if isinstance(v, Path) else v for k, v in data["stimuli"].items()}
        data["models"] = list(self.models)
        data["answers"] = list(self.answers)
        data["expertise_options"] = list(self.expertise_options)
        return data

    def names(self) -> dict[str, str]:
        """What each storage slot stands for, for people: "baseline" is the first of ``models``, "cbam" the
        second ({"baseline": "SE", "cbam": "CBAM"} for ``models = ["se", "cbam"]``)."""
        from ..models.sets import role_title

        return {slot: role_title(role) for slot, role in zip(("baseline", "cbam"), self.models)}

    def question_for(self, target: str) -> str:
        """The question text for one trial."""
        return self.question.format(target=target)


def load_config(path: str | Path) -> StudyConfig:
    """Read and validate a study TOML file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    try:
        return StudyConfig.from_dict(data, base_dir=path.parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def load_stimuli(config: StudyConfig) -> list[Stimulus]:
    """The study's stimulus list: demo sample indices, or the folder CSV rows (files must exist)."""
    spec = config.stimuli
    if isinstance(spec, DemoStimuli):
        return [Stimulus(id=f"demo:{spec.seed}:{i}", index=i) for i in range(spec.count)]
    try:
        with spec.csv.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not {"file", "target_class"} <= set(reader.fieldnames or ()):
                raise ConfigError(f"{spec.csv}: needs the header 'file,target_class'")
            rows = list(reader)
    except OSError as exc:
        raise ConfigError(f"cannot read stimuli CSV: {exc}") from exc
    stimuli = []
    for line, row in enumerate(rows, start=2):
        name, target = (row["file"] or "").strip(), (row["target_class"] or "").strip()
        if not name or not target:
            raise ConfigError(f"{spec.csv}:{line}: empty file or target_class")
        image = spec.folder / name
        if not image.is_file():
            raise ConfigError(f"{spec.csv}:{line}: image not found: {image}")
        stimuli.append(Stimulus(id=name, target_class=target, path=image))
    ids = [s.id for s in stimuli]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{spec.csv}: duplicate file names")
    return stimuli


def _parse_stimuli(raw: Any, base_dir: Path) -> DemoStimuli | FolderStimuli:
    raw = dict(_require("stimuli", raw, dict, "a table"))
    kind = raw.pop("kind", "demo")
    if kind == "demo":
        allowed = {"seed", "count"}
        if set(raw) - allowed:
            raise ConfigError(f"stimuli: unknown key(s) {sorted(set(raw) - allowed)} for kind 'demo'")
        return DemoStimuli(**raw)
    if kind == "folder":
        if set(raw) - {"folder", "csv"} or "folder" not in raw:
            raise ConfigError("stimuli: kind 'folder' takes 'folder' (required) and 'csv'")
        folder = (base_dir / _require("stimuli.folder", raw["folder"], str, "a path")).resolve()
        csv_path = (base_dir / raw["csv"]).resolve() if "csv" in raw else folder / "stimuli.csv"
        return FolderStimuli(folder=folder, csv=csv_path)
    raise ConfigError(f"stimuli.kind must be 'demo' or 'folder', got {kind!r}")


def _require(key: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise ConfigError(f"{key} must be {what}, got {value!r}")
    return value


def _validate(cfg: StudyConfig) -> None:
    for key in ("name", "pair", "method", "question", "display"):
        if not _require(key, getattr(cfg, key), str, "a string").strip():
            raise ConfigError(f"{key} must not be empty")
    if isinstance(cfg.stimuli, DemoStimuli):
        _require("stimuli.seed", cfg.stimuli.seed, int, "an integer")
        if _require("stimuli.count", cfg.stimuli.count, int, "an integer") < 1:
            raise ConfigError("stimuli.count must be at least 1")
    elif not isinstance(cfg.stimuli, FolderStimuli):
        raise ConfigError("stimuli must be a DemoStimuli or FolderStimuli")
    trials = _require("trials_per_participant", cfg.trials_per_participant, int, "an integer")
    if trials < 1:
        raise ConfigError("trials_per_participant must be at least 1")
    if isinstance(cfg.stimuli, DemoStimuli) and trials > cfg.stimuli.count:
        raise ConfigError(f"trials_per_participant ({trials}) exceeds stimuli.count ({cfg.stimuli.count})")
    if _require("repeat_trial", cfg.repeat_trial, bool, "true or false") and trials < 2:
        raise ConfigError("repeat_trial needs trials_per_participant >= 2")
    _require("collect_expertise", cfg.collect_expertise, bool, "true or false")
    placeholders = {name for _, name, _, _ in string.Formatter().parse(cfg.question) if name is not None}
    if placeholders - {"target"}:
        raise ConfigError(f"question may only use the placeholder {{target}}, found {sorted(placeholders)}")
    _validate_options("models", cfg.models)
    if len(cfg.models) != 2:
        raise ConfigError(f"models must name two models of the set, e.g. [\"se\", \"cbam\"], got {list(cfg.models)}")
    _validate_options("answers", cfg.answers)
    if not set(DECISIVE_ANSWERS) <= set(cfg.answers):
        raise ConfigError(f"answers must include {list(DECISIVE_ANSWERS)}")
    _validate_options("expertise_options", cfg.expertise_options)
    if cfg.display not in DISPLAY_MODES:
        raise ConfigError(f"display must be one of {list(DISPLAY_MODES)}, got {cfg.display!r}")
    if not 0.0 < _require("threshold", cfg.threshold, (int, float), "a number") < 1.0:
        raise ConfigError(f"threshold must lie strictly between 0 and 1, got {cfg.threshold!r}")


def _validate_options(key: str, options: tuple[str, ...]) -> None:
    if not options or not all(isinstance(o, str) and o.strip() for o in options):
        raise ConfigError(f"{key} must be a non-empty list of non-empty strings")
    if len(set(options)) != len(options):
        raise ConfigError(f"{key} contains duplicates")
