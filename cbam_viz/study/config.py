"""Study configuration: a small TOML file parsed into a validated `StudyConfig`.

Example::

    name = "pilot"
    pair = "imagenet"        # the model set
    models = ["baseline", "se", "cbam"]  # 2-4 models of the set (default: ["baseline", "cbam"])
    trials_per_participant = 20
    repeat_trial = true
    display = "threshold"
    threshold = 0.6
    consent = "..."          # Markdown that must be accepted before the first trial ("" = none)
    practice_trials = 2      # shown first, never stored as votes
    catch_trials = 2         # attention checks built from ground truth
    min_response_ms = 800    # faster votes are flagged
    max_study_minutes = 30   # no votes after this long since joining (0 = no limit)

    [stimuli]
    kind = "folder"          # or "demo" (default) with seed/count
    folder = "images"        # relative to the TOML file
    csv = "images/labels.csv"  # columns file,target_class[,x0,y0,x1,y1]; default <folder>/stimuli.csv

    [recruitment]            # links from a crowdsourcing platform
    params = ["PROLIFIC_PID", "STUDY_ID", "SESSION_ID"]  # read from the page URL, stored with the participant
    participant_param = "PROLIFIC_PID"  # identifies a returning participant (default: the first of params)
    completion_code = "C0DE1234"
    completion_url = "https://app.prolific.com/submissions/complete?cc={code}"
    redirect = true          # send the participant there at the end
"""
from __future__ import annotations

import csv
import re
import string
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULT_ANSWERS = ("A", "B", "same", "neither")
BOX_COLUMNS = ("x0", "y0", "x1", "y1")  # optional CSV columns: the target's box in image pixels
MAX_MODELS = 4
MAX_EXTRA_TRIALS = 10  # practice and catch trials each
_PARAM_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
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
    """One image participants judge. `index` is the demo sample index, `path` a folder image, `box`
    the target's box (x0, y0, x1, y1) in a folder image's pixels when the CSV gives one."""

    id: str
    target_class: str | None = None
    path: Path | None = None
    index: int | None = None
    box: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class Recruitment:
    """How participants arrive from a crowdsourcing platform and leave it.

    ``params``: query parameters of the study link stored with the participant (e.g. PROLIFIC_PID,
    STUDY_ID, SESSION_ID); ``participant_param`` (default: the first) identifies a returning
    participant. At the end, ``completion_code`` is shown and ``completion_url`` linked (with
    ``{code}`` and any of ``params`` as placeholders); ``redirect`` sends the participant there."""

    params: tuple[str, ...] = ()
    participant_param: str = ""
    completion_code: str = ""
    completion_url: str = ""
    redirect: bool = False

    @property
    def key_param(self) -> str:
        """The parameter that identifies a participant ("" without recruitment parameters)."""
        return self.participant_param or (self.params[0] if self.params else "")


@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines a study; see the module docstring for the TOML layout."""

    name: str
    pair: str
    models: tuple[str, ...] = ("baseline", "cbam")  # 2-4 roles of the set
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
    consent: str = ""
    instructions: str = ""
    practice_trials: int = 0
    catch_trials: int = 0
    min_response_ms: int = 0
    max_study_minutes: float = 0
    recruitment: Recruitment = field(default_factory=Recruitment)

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
        values["recruitment"] = _parse_recruitment(values.get("recruitment", {}))
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
        data["recruitment"] = {**data["recruitment"], "params": list(self.recruitment.params)}
        return data

    def names(self, titles: Mapping[str, str] | None = None) -> dict[str, str]:
        """How each compared model reads for people: "Baseline", "SE", "CBAM" for those roles, else the
        model's title in the set (`titles`: role -> title, e.g. `StudyRuntime.titles`), else the role."""
        from ..models.sets import ROLE_TITLES

        titles = titles or {}
        return {role: ROLE_TITLES.get(role) or titles.get(role) or role for role in self.models}

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
        stimuli.append(Stimulus(id=name, target_class=target, path=image, box=_box(row, f"{spec.csv}:{line}")))
    ids = [s.id for s in stimuli]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{spec.csv}: duplicate file names")
    return stimuli


def _box(row: Mapping[str, str | None], where: str) -> tuple[int, int, int, int] | None:
    """The row's target box from the optional x0,y0,x1,y1 columns (all empty: no box)."""
    cells = [(row.get(c) or "").strip() for c in BOX_COLUMNS]
    if not any(cells):
        return None
    try:
        x0, y0, x1, y1 = (int(c) for c in cells)
    except ValueError:
        raise ConfigError(f"{where}: x0,y0,x1,y1 must be four integers (pixels), got {cells}") from None
    if not (0 <= x0 < x1 and 0 <= y0 < y1):
        raise ConfigError(f"{where}: the box needs 0 <= x0 < x1 and 0 <= y0 < y1, got {cells}")
    return x0, y0, x1, y1


def _parse_recruitment(raw: Any) -> Recruitment:
    raw = dict(_require("recruitment", raw, dict, "a table"))
    known = {f.name for f in fields(Recruitment)}
    if set(raw) - known:
        raise ConfigError(f"recruitment: unknown key(s) {sorted(set(raw) - known)}; allowed: {sorted(known)}")
    if "params" in raw:
        raw["params"] = tuple(_require("recruitment.params", raw["params"], list, "a list of parameter names"))
    return Recruitment(**raw)


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
    if {"object", "background"} & set(cfg.models):
        raise ConfigError("models: 'object' and 'background' name a catch trial's maps, not models")
    if not 2 <= len(cfg.models) <= MAX_MODELS:
        raise ConfigError(f"models must name two to {MAX_MODELS} models of the set, e.g. [\"baseline\", \"se\", "
                          f"\"cbam\"], got {list(cfg.models)}")
    for key in ("consent", "instructions"):
        _require(key, getattr(cfg, key), str, "a string (Markdown)")
    for key in ("practice_trials", "catch_trials"):
        if not 0 <= _require(key, getattr(cfg, key), int, "an integer") <= MAX_EXTRA_TRIALS:
            raise ConfigError(f"{key} must be between 0 and {MAX_EXTRA_TRIALS}, got {getattr(cfg, key)}")
    if _require("min_response_ms", cfg.min_response_ms, int, "an integer (milliseconds)") < 0:
        raise ConfigError(f"min_response_ms must not be negative, got {cfg.min_response_ms}")
    if _require("max_study_minutes", cfg.max_study_minutes, (int, float), "a number (0 = no limit)") < 0:
        raise ConfigError(f"max_study_minutes must not be negative, got {cfg.max_study_minutes}")
    _validate_recruitment(cfg.recruitment)
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


def _validate_recruitment(rec: Recruitment) -> None:
    if not isinstance(rec, Recruitment):
        raise ConfigError("recruitment must be a table")
    for name in rec.params:
        if not isinstance(name, str) or not _PARAM_PATTERN.fullmatch(name):
            raise ConfigError(f"recruitment.params: {name!r} is not a query parameter name (letters, digits, _)")
    if len(set(rec.params)) != len(rec.params):
        raise ConfigError("recruitment.params contains duplicates")
    for key in ("participant_param", "completion_code", "completion_url"):
        _require(f"recruitment.{key}", getattr(rec, key), str, "a string")
    _require("recruitment.redirect", rec.redirect, bool, "true or false")
    if rec.participant_param and rec.participant_param not in rec.params:
        raise ConfigError(f"recruitment.participant_param {rec.participant_param!r} must be one of params {list(rec.params)}")
    if rec.completion_url:
        if not rec.completion_url.startswith(("https://", "http://")):
            raise ConfigError(f"recruitment.completion_url must start with https:// or http://, got {rec.completion_url!r}")
        try:
            placeholders = {name for _, name, _, _ in string.Formatter().parse(rec.completion_url) if name is not None}
        except ValueError as exc:
            raise ConfigError(f"recruitment.completion_url: {exc}") from None
        if placeholders - {"code", *rec.params}:
            raise ConfigError(f"recruitment.completion_url may use {{code}} and the params {list(rec.params)} "
                              f"as placeholders, found {sorted(placeholders)}")
    if rec.redirect and not rec.completion_url:
        raise ConfigError("recruitment.redirect needs a completion_url")
