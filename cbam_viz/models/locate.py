"""Where model files are: the manifest folder (``models/``), the weights folder, the folders that
``weights fetch --dir`` registered and the torch hub cache. Imports no torch, so that ``weights list``
answers at once."""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

MODELS_DIR = Path(os.environ.get("CBAM_VIZ_MODELS", Path(__file__).resolve().parents[2] / "models"))
LOCATIONS_FILE = "locations.json"


def weights_dir() -> Path:
    """Where fetched weights go and are looked for: ``$CBAM_VIZ_WEIGHTS`` or ``~/.cache/cbam-viz/weights``."""
    return Path(os.environ.get("CBAM_VIZ_WEIGHTS") or Path.home() / ".cache" / "cbam-viz" / "weights").expanduser()


def hub_dir() -> Path:
    """``torch.hub.get_dir()`` without importing torch (by its rules: ``$TORCH_HOME/hub``, ``$TORCH_HOME``
    defaulting to ``$XDG_CACHE_HOME/torch``, that to ``~/.cache/torch``); ``torch.hub.set_dir`` is not seen."""
    torch_home = os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch")))
    return Path(os.path.join(torch_home, "hub"))


def hub_checkpoints() -> Path:
    """The torch hub cache's checkpoint folder, where ``torch.hub`` (and torchvision) keep downloads."""
    return hub_dir() / "checkpoints"


def read_manifest(models_dir: Path = MODELS_DIR) -> dict[str, Any]:
    """The content of ``models_dir/manifest.json``."""
    return json.loads((models_dir / "manifest.json").read_text())


def registered_dirs() -> list[Path]:
    """Folders that ``weights fetch --dir`` registered in ``weights_dir()/locations.json``."""
    path = weights_dir() / LOCATIONS_FILE
    try:
        return [Path(d) for d in json.loads(path.read_text())["dirs"]]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as e:
        warnings.warn(f"ignoring {path}: {e}", stacklevel=2)
        return []


def external_path(entry: dict[str, Any], models_dir: Path) -> Path | None:
    """The file of an external manifest entry, or None: where the app and CLI look, in order."""
    explicit = [os.environ.get(entry["env"], ""), entry.get("path") or ""]
    found = next((Path(c).expanduser() for c in explicit if c and Path(c).expanduser().is_file()), None)
    folders = [models_dir, weights_dir(), *registered_dirs(), *([hub_checkpoints()] if entry.get("torch_hub_cache") else [])]
    # The first pattern (the preferred file) wherever it is, before the next pattern anywhere.
    matches = (p for pattern in entry["files"] for folder in folders for p in sorted(folder.glob(pattern)) if p.is_file())
    return found or next(matches, None)
