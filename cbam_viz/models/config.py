"""Your own models: a TOML file that registers checkpoints trained on your data and defines sets of them.

    [models.skin-resnet]                 # a model id
    path = "runs/resnet18.pt"            # relative to the TOML file; any format load_weights reads
    depth = 18                           # 18, 34, 50 or 101
    attention = "none"                   # "none", "se" or "cbam"
    options = { width = 64 }             # builder options (CBAM's: reduction, spatial_kernel, ...)
    class_names = ["benign", "malignant"]  # or class_names_file = "classes.txt" (one per line)
    input_size = 224                     # default 224
    resize = 256                         # short side before the centre crop; false: plain square resize
    mean = [0.485, 0.456, 0.406]         # default: ImageNet's
    std = [0.229, 0.224, 0.225]
    title = "ResNet-18 (skin)"           # optional

    [sets.skin]
    models = { baseline = "skin-resnet", cbam = "skin-resnet-cbam" }   # 2-4 models, in display order
    description = "our dermoscopy models"
    replicates = ["skin-seed1", "skin-seed2"]   # optional: sets of the same models trained with other seeds

`read_models_config` returns manifest-shaped entries (kind "user") that `sets.load_set` loads beside the
shipped manifest; every error names the file, the entry and the key.
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from .resnet import DEPTHS, IMAGENET_MEAN, IMAGENET_STD, ModelInfo, build_from_info

ATTENTION = {"none": None, "se": "se", "cbam": "cbam"}
MODEL_KEYS = {"path", "depth", "attention", "options", "class_names", "class_names_file", "input_size", "resize",
              "mean", "std", "title"}


class ModelsConfigError(ValueError):
    """A models file that cannot be used; the message names the file, the entry and the key."""


def read_models_config(path: str | Path) -> dict[str, Any]:
    """``{"models": {id: entry}, "sets": {name: spec}}`` from a models TOML file; raises ModelsConfigError."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ModelsConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ModelsConfigError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(data) - {"models", "sets"}
    if unknown:
        raise ModelsConfigError(f"{path}: unknown section(s) {sorted(unknown)}; expected [models.*] and [sets.*]")
    models = {mid: _model(path, mid, spec) for mid, spec in _table(path, data, "models").items()}
    sets = {name: _set(path, name, spec, models) for name, spec in _table(path, data, "sets").items()}
    if not sets:
        raise ModelsConfigError(f"{path}: defines no [sets.*]: a set names 2-4 of the models")
    return {"models": models, "sets": sets}


def model_info(entry: dict[str, Any]) -> ModelInfo:
    """The architecture and preprocessing of a user entry."""
    info = ModelInfo(depth=entry["depth"], attention=entry["attention"], options=dict(entry["options"]),
                     num_classes=len(entry["class_names"]), class_names=list(entry["class_names"]),
                     input_size=entry["input_size"], resize=entry["resize"], mean=tuple(entry["mean"]),
                     std=tuple(entry["std"]))
    info.name = entry["title"] or info.title
    return info


def _table(path: Path, data: dict[str, Any], key: str) -> dict[str, Any]:
    table = data.get(key, {})
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise ModelsConfigError(f"{path}: [{key}] must hold tables such as [{key}.name]")
    return table


def _model(path: Path, mid: str, spec: dict[str, Any]) -> dict[str, Any]:
    where = f"{path}, model {mid!r}"

    def fail(key: str, problem: str) -> ModelsConfigError:
        return ModelsConfigError(f"{where}, key {key!r}: {problem}")

    unknown = set(spec) - MODEL_KEYS
    if unknown:
        raise fail(sorted(unknown)[0], f"unknown key; known keys: {', '.join(sorted(MODEL_KEYS))}")
    for key in ("path", "depth"):
        if key not in spec:
            raise fail(key, "missing")
    file = (path.parent / str(spec["path"])).expanduser()
    if not file.is_file():
        raise fail("path", f"{file} is not a file")
    if spec["depth"] not in DEPTHS:
        raise fail("depth", f"must be one of {sorted(DEPTHS)}, got {spec['depth']!r}")
    attention = spec.get("attention", "none")
    if attention not in ATTENTION:
        raise fail("attention", f"must be one of {list(ATTENTION)}, got {attention!r}")
    if not isinstance(spec.get("options", {}), dict):
        raise fail("options", "must be a table, e.g. { width = 64 }")
    names = _class_names(path, spec, fail)
    input_size = spec.get("input_size", 224)
    if not isinstance(input_size, int) or isinstance(input_size, bool) or not 16 <= input_size <= 2048:
        raise fail("input_size", f"must be an integer from 16 to 2048, got {input_size!r}")
    resize = spec.get("resize", 256)
    if resize is False:
        resize = None
    elif not isinstance(resize, int) or isinstance(resize, bool) or resize < input_size:
        raise fail("resize", f"must be an integer >= input_size ({input_size}) or false, got {resize!r}")
    norm = {}
    for key, default in (("mean", IMAGENET_MEAN), ("std", IMAGENET_STD)):
        value = spec.get(key, list(default))
        if (not isinstance(value, list) or len(value) != 3 or not all(isinstance(v, (int, float)) for v in value)
                or (key == "std" and not all(v > 0 for v in value))):
            raise fail(key, f"must be three numbers{' > 0' if key == 'std' else ''}, got {value!r}")
        norm[key] = [float(v) for v in value]
    title = spec.get("title", "")
    if not isinstance(title, str):
        raise fail("title", "must be a string")
    entry = {"kind": "user", "title": title, "file": str(file), "depth": spec["depth"],
             "attention": ATTENTION[attention], "options": spec.get("options", {}), "class_names": names,
             "input_size": input_size, "resize": resize, **norm,
             "how_to_get": f"the file named in {path}, model {mid!r}"}
    entry["title"] = title or model_info(entry).title
    try:  # the options must build (unknown option, a CBAM option for SE, ...): say so now, not at load time
        build_from_info(model_info(entry))
    except (TypeError, ValueError) as exc:
        raise fail("options", str(exc)) from None
    return entry


def _class_names(path: Path, spec: dict[str, Any], fail: Any) -> list[str]:
    if ("class_names" in spec) == ("class_names_file" in spec):
        raise fail("class_names", "give exactly one of class_names (a list) and class_names_file")
    if "class_names_file" in spec:
        file = path.parent / str(spec["class_names_file"])
        try:
            names = [line.strip() for line in file.read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise fail("class_names_file", f"cannot read {file}: {exc.strerror}") from None
        key = "class_names_file"
    else:
        names, key = spec["class_names"], "class_names"
    if not isinstance(names, list) or len(names) < 2 or not all(isinstance(n, str) and n for n in names):
        raise fail(key, "needs at least two non-empty class names")
    if len(set(names)) != len(names):
        raise fail(key, "class names must be distinct")
    return names


def _set(path: Path, name: str, spec: dict[str, Any], models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    where = f"{path}, set {name!r}"
    roles = spec.get("models")
    if not isinstance(roles, dict) or not 2 <= len(roles) <= 4:
        raise ModelsConfigError(f"{where}, key 'models': must map 2 to 4 roles to model ids, "
                                "e.g. { baseline = \"a\", cbam = \"b\" }")
    for role, mid in roles.items():
        if mid not in models:
            raise ModelsConfigError(f"{where}, key 'models': role {role!r} names unknown model {mid!r}; "
                                    f"models in this file: {', '.join(models) or 'none'}")
    chosen = [models[mid] for mid in roles.values()]
    for key in ("depth", "class_names", "input_size", "resize", "mean", "std"):
        if any(m[key] != chosen[0][key] for m in chosen):
            raise ModelsConfigError(f"{where}, key 'models': its models differ in {key}; a set's models must share "
                                    "depth (the target layers), classes and preprocessing")
    replicates = spec.get("replicates", [])
    if not isinstance(replicates, list) or not all(isinstance(r, str) for r in replicates):
        raise ModelsConfigError(f"{where}, key 'replicates': must be a list of set names (the same models trained "
                                "with other seeds), e.g. [\"skin-seed1\", \"skin-seed2\"]")
    return {"models": dict(roles), "description": str(spec.get("description", f"your models ({path.name})")),
            **({"replicates": replicates} if replicates else {})}
