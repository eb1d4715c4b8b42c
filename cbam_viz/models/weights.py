"""Checkpoint loading and saving. Formats are detected from the file's keys:

1. torchvision ResNet state dicts (``conv1.weight``, ``layer1.0.bn1.*``, ``fc.*``);
2. the CBAM authors' release: ``{"state_dict": ...}`` saved from DataParallel (``module.``
   prefix), CBAM keys ``cbam.ChannelGate.mlp.1.*`` / ``cbam.SpatialGate.spatial.conv.*``;
3. pytorchcv's ResNets (``features.stage1.unit1.body.conv1.conv.*``): ``resnet*``,
   ``seresnet*`` (``...unit1.se.conv1.*``, 1x1 convolutions here loaded as linear layers) and
   ``cbam_resnet*`` (``...unit1.cbam.ch_gate.mlp.fc1.*``);
4. the project's own format (``{"format": "cbam-viz", "info": ..., "state_dict": ...}``),
   which also describes the architecture, classes and preprocessing.

pytorchcv and own-format files declare their attention (none, "se" or "cbam"); loading one into
a model built with another attention is refused with a message naming both.

Any torch serialization loads (the zip format, and the legacy one of torch < 1.6), with or without
``_metadata``; BatchNorm's ``num_batches_tracked`` counters may be absent, as in files saved before
torch 0.4.1. Files are read with ``weights_only=True``: a checkpoint cannot run code.
"""
from __future__ import annotations

import hashlib
import pickle
import re
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from ..fileio import atomic_write
from .resnet import ATTENTIONS, ModelInfo, ResNet, build_from_info

FORMAT = "cbam-viz"
FORMAT_VERSION = 1
# Buffers that files saved before torch 0.4.1 lack (torchvision's resnet50-0676ba61.pth, the CBAM
# authors' checkpoint); BatchNorm starts them at 0, as torch's own loading does.
_COUNTER = ".num_batches_tracked"

_AUTHORS_RULES = [
    (r"^module\.", ""),
    (r"\.cbam\.ChannelGate\.mlp\.1\.", ".cbam.channel.fc1."),
    (r"\.cbam\.ChannelGate\.mlp\.3\.", ".cbam.channel.fc2."),
    (r"\.cbam\.SpatialGate\.spatial\.(conv|bn)\.", r".cbam.spatial.\1."),
]
_PYTORCHCV_RULES = [
    (r"^features\.init_block\.conv\.conv\.", "conv1."),
    (r"^features\.init_block\.conv\.bn\.", "bn1."),
    (r"^features\.stage(\d)\.unit(\d+)\.", lambda m: f"layer{m[1]}.{int(m[2]) - 1}."),
    (r"\.body\.conv(\d)\.conv\.", r".conv\1."),
    (r"\.body\.conv(\d)\.bn\.", r".bn\1."),
    (r"\.identity_conv\.conv\.", ".downsample.0."),
    (r"\.identity_conv\.bn\.", ".downsample.1."),
    (r"\.cbam\.ch_gate\.mlp\.", ".cbam.channel."),
    (r"\.se\.conv(\d)\.", r".cbam.channel.fc\1."),
    (r"\.cbam\.sp_gate\.conv\.(conv|bn)\.", r".cbam.spatial.\1."),
    (r"^output\.", "fc."),
]
_PYTORCHCV_ATTENTION = re.compile(r"^features\.stage\d+\.unit\d+\.(se|cbam)\.")


class WeightsError(ValueError):
    """A checkpoint that cannot be loaded; the message is one line naming the file."""


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read(path: Path) -> Any:
    if not path.is_file():
        raise WeightsError(f"{path}: file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e):
            raise WeightsError(f"{path}: contains Python objects beyond tensors; refusing to load it (it could run code)") from None
        reason = "unreadable pickle"
    except Exception:  # torch raises many types (EOFError, KeyError, RuntimeError, ...) on garbage
        reason = "truncated or corrupt" if path.stat().st_size else "empty"
    raise WeightsError(f"{path}: not a PyTorch checkpoint ({reason})")


def _rename(keys: dict[str, Any], rules: list) -> dict[str, Any]:
    out = {}
    for key, value in keys.items():
        for pattern, repl in rules:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


class _Contents(NamedTuple):
    state: dict[str, torch.Tensor]  # in this project's key names
    info: ModelInfo | None  # own format only
    layout: str  # "cbam-viz", "pytorchcv" or "state dict" (torchvision, the CBAM authors')
    attention: str | None  # what the file declares; None for "state dict", which declares nothing


def _from_pytorchcv(obj: dict[str, torch.Tensor]) -> _Contents:
    found = sorted({m[1] for key in obj if (m := _PYTORCHCV_ATTENTION.match(key))})
    state = _rename(obj, _PYTORCHCV_RULES)
    # SE's 1x1 convolutions (out, in, 1, 1) are this project's linear layers (out, in).
    state = {k: v.flatten(1) if ".cbam.channel.fc" in k and v.ndim == 4 and v.shape[2:] == (1, 1) else v
             for k, v in state.items()}
    return _Contents(state, None, "pytorchcv", found[0] if found else None)


def _contents(obj: Any, path: Path) -> _Contents:
    """The file's state dict in this project's key names, and what the file says about itself."""
    info = None
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        info = ModelInfo.from_dict(obj["info"])
        obj = obj["state_dict"]
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: not a model state dict (expected a mapping of parameter names to tensors)")
    if any(k.startswith("features.") for k in obj):
        return _from_pytorchcv(obj)
    state = _rename(obj, _AUTHORS_RULES)
    return _Contents(state, info, FORMAT, info.attention) if info else _Contents(state, None, "state dict", None)


def _architecture(attention: str | None) -> str:
    return f"ResNet + {ATTENTIONS.get(attention, attention)}" if attention else "baseline ResNet"


def _check_attention(model: nn.Module, contents: _Contents, path: Path) -> None:
    info = getattr(model, "info", None)
    if contents.layout == "state dict" or not isinstance(info, ModelInfo) or info.attention == contents.attention:
        return
    raise WeightsError(f"{path}: holds {_architecture(contents.attention)} weights ({contents.layout} layout) but the model "
                       f"is {info.title}; build it with attention={contents.attention!r}")


def _first(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (", ..." if len(items) > n else "")


def _with_counters(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` plus a zero ``num_batches_tracked`` for every BatchNorm of ``model`` the file has none for."""
    absent = {k: torch.zeros_like(v) for k, v in model.state_dict().items() if k.endswith(_COUNTER) and k not in state}
    return {**state, **absent}


def _check_fit(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith(_COUNTER)]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {list(state[k].shape)} vs {list(v.shape)}" for k, v in expected.items()
              if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        title = model.info.title if isinstance(getattr(model, "info", None), ModelInfo) else type(model).__name__
        parts = [f"{len(missing)} missing ({_first(missing)})" if missing else "",
                 f"{len(unexpected)} unexpected ({_first(unexpected)})" if unexpected else "",
                 f"{len(shapes)} shape mismatches (file vs model: {_first(shapes, 2)})" if shapes else ""]
        raise WeightsError(f"{path}: does not fit {title}: " + "; ".join(p for p in parts if p))


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load any supported checkpoint into ``model`` strictly; returns ``model``.

    Raises :class:`WeightsError` with a one-line message on anything that does not fit.
    Where the downsampling stride sits is not in any file: pytorchcv's ``resnet50`` and
    ``seresnet50`` need ``stride_in_1x1=True``, its ``resnet50b`` / ``seresnet50b`` the default.
    """
    path = Path(path)
    contents = _contents(_read(path), path)
    _check_attention(model, contents, path)
    _check_fit(model, contents.state, path)
    model.load_state_dict(_with_counters(model, contents.state))
    return model


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> ResNet:
    """Build and load a model from a file in the project's own format, in eval mode."""
    path = Path(path)
    state, info, _, _ = _contents(_read(path), path)
    if info is None:
        raise WeightsError(f"{path}: not a cbam-viz checkpoint (it holds weights only; build the model and use load_weights)")
    model = build_from_info(info)
    _check_fit(model, state, path)
    model.load_state_dict(_with_counters(model, state))
    return model.to(device).eval()


def save_checkpoint(model: ResNet, path: str | Path, **extra: Any) -> Path:
    """Write ``model`` with its :class:`ModelInfo` (and JSON-like ``extra``) in the project's format."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    checkpoint = {"format": FORMAT, "version": FORMAT_VERSION, "info": model.info.to_dict(), "state_dict": state, **extra}
    return atomic_write(path, lambda f: torch.save(checkpoint, f))

