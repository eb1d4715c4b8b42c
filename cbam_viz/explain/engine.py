"""One-pass explanations: prediction, CBAM attention and a CAM from a single forward per model.

The CAM arithmetic is the grad-cam library's own (``get_cam_image``, then ReLU and
``scale_cam_image`` exactly as its ``compute_cam_per_layer`` does). What differs is how the
activations and gradients are obtained: the forward pass runs without autograd until a forward
hook on the target layer swaps its output for a detached leaf tensor and switches autograd on, so
only the layers after the target layer are recorded, and the gradient of the class score is taken
with respect to that leaf alone (``torch.autograd.grad``: no parameter gradient is computed or stored).

Thread safety: `explain` and `explain_batch` may be called from several threads on the same models.
Nothing per call is stored on the models: no parameter flag or train/eval mode is changed (a model
in train mode is explained through an eval-mode copy), grad mode is thread-local, and the hooks a
call registers act only on forward passes of the thread that registered them. Concurrent calls
give exactly the results of the same calls made one after another.

Geometry: every map is on the first model's crop (the reference; what displays show). A model whose
resize or crop differs (torchvision's V2 baseline resizes to 232, SE and CBAM to 256) still gets its own
input, and its maps are then placed onto the reference's crop (:mod:`.placement`; 0 where it saw nothing).
"""
from __future__ import annotations

import copy
import numbers
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
import tqdm
from PIL import Image
from pytorch_grad_cam import (
    EigenCAM,
    EigenGradCAM,
    GradCAM,
    GradCAMElementWise,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from ..models import ModelInfo, preprocess, record_attention
from ..models.transforms import crop_box
from .methods import GRADIENT_FREE
from .placement import place_map

METHODS: dict[str, type[BaseCAM]] = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "xgradcam": XGradCAM,
    "layercam": LayerCAM,
    "hirescam": HiResCAM,
    "gradcamelementwise": GradCAMElementWise,
    "eigengradcam": EigenGradCAM,
    "eigencam": EigenCAM,
    "scorecam": ScoreCAM,
}
SCORECAM_BATCH = 16  # the grad-cam library's batch of masked images; fewer when memory is short


class Cancelled(RuntimeError):
    """The caller's ``should_stop`` said stop (its client has gone); raised before the next batch."""

    def __init__(self) -> None:
        super().__init__("explanation cancelled")


def free_memory(device: torch.device | str) -> int:
    """Bytes available for new tensors on ``device``: the GPU's free memory, else the system's MemAvailable."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return 2**31


def scorecam_batch(x: torch.Tensor, free: int, share: int = 8) -> int:
    """Masked images per Score-CAM forward pass: at most :data:`SCORECAM_BATCH`, within 1/``share`` of ``free``
    bytes, counting about 20 input-sized tensors alive per image during a ResNet forward pass."""
    per_image = 20 * x[0].numel() * x.element_size()
    return int(max(1, min(SCORECAM_BATCH, free // share // per_image)))


class _BoundedScoreCAM(ScoreCAM):
    """The grad-cam library's Score-CAM weights with the same arithmetic (per-channel bilinear upsampling,
    min-max normalization, masking, softmax over the target scores), one batch of channels at a time: the
    library masks every channel at once (C x 3 x H x W floats: 1.2 GB for layer4 of a ResNet-50 at 224 px).
    ``should_stop`` is polled before every batch."""

    batch_size = SCORECAM_BATCH
    should_stop: Callable[[], bool] | None = None

    def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads):  # noqa: ANN001, ANN201
        with torch.no_grad():
            upsample = torch.nn.UpsamplingBilinear2d(size=input_tensor.shape[-2:])
            acts = torch.from_numpy(activations).to(self.device)
            scores: list[float] = []
            for target, image, act in zip(targets, input_tensor, acts):
                for i in tqdm.tqdm(range(0, act.size(0), self.batch_size)):
                    if self.should_stop is not None and self.should_stop():
                        raise Cancelled()
                    up = upsample(act[None, i:i + self.batch_size])[0]
                    flat = up.view(up.size(0), -1)
                    maxs, mins = flat.max(dim=-1)[0][:, None, None], flat.min(dim=-1)[0][:, None, None]
                    up = (up - mins) / (maxs - mins + 1e-8)
                    scores.extend(target(o).cpu().item() for o in self.model(image[None] * up[:, None]))
            weights = torch.Tensor(scores).view(activations.shape[0], activations.shape[1])
            return torch.nn.Softmax(dim=-1)(weights).numpy()


@dataclass
class Explanation:
    """What one model says about one image. The maps cover the reference model's crop (see the module's
    docstring), at the sizes below; for a tensor input, the tensor."""

    cam: np.ndarray  # (H, W) in [0, 1] at the reference's input size
    raw_cam: np.ndarray  # (h, w) at the target layer's size, after ReLU, before normalization
    probs: np.ndarray  # (num_classes,)
    target: int  # the class explained
    method: str
    target_layer: str
    blocks: list[str] = field(default_factory=list)  # CBAM block names, network order
    channel_attention: list[np.ndarray] = field(default_factory=list)  # one (C,) per block
    spatial_attention: list[np.ndarray] = field(default_factory=list)  # one (h, w) per block

    @property
    def prediction(self) -> int:
        return int(self.probs.argmax())

    def top_k(self, k: int = 5) -> list[tuple[int, float]]:
        order = np.argsort(-self.probs)[:k]
        return [(int(i), float(self.probs[i])) for i in order]


def default_target_layer(model: nn.Module) -> str:
    """The last block of ``layer4``."""
    return f"layer4.{len(model.layer4) - 1}"


def target_layers(model: nn.Module) -> list[str]:
    """Names selectable as target layer: every residual block, in network order."""
    names = []
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        names += [f"{stage}.{i}" for i in range(len(getattr(model, stage)))]
    return names


def check_target_layer(models: Mapping[str, nn.Module], layer: str) -> None:
    """ValueError naming the choices unless ``layer`` is a residual block of every model."""
    for model in models.values():
        names = target_layers(model)
        if layer not in names:
            raise ValueError(f"unknown layer {layer!r}; choose from {', '.join(names)}")


def _eval_model(model: nn.Module) -> nn.Module:
    """``model`` itself when every module is in eval mode, else an eval-mode copy (the caller's
    model, which other threads may be using, is never switched)."""
    if not any(m.training for m in model.modules()):
        return model
    return copy.deepcopy(model).eval()


@contextmanager
def _leaf_at(layer: nn.Module, grad: bool) -> Iterator[list[torch.Tensor]]:
    """Replace ``layer``'s output by a detached leaf (requiring grad when ``grad``; autograd is
    switched on from there for the rest of this thread's forward pass); yields a list that receives
    the leaf. The hook ignores forward passes of other threads."""
    captured: list[torch.Tensor] = []
    owner = threading.get_ident()

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        if threading.get_ident() != owner or captured:
            return None
        leaf = output.detach().requires_grad_(grad)
        torch.set_grad_enabled(grad)  # thread-local; the caller's no_grad block restores it
        captured.append(leaf)
        return leaf

    handle = layer.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def _cam_method(name: str, model: nn.Module, layer: nn.Module, x: torch.Tensor,
                should_stop: Callable[[], bool] | None = None) -> BaseCAM:
    """The grad-cam library's method object, with the hooks its constructor adds released (Score-CAM: the
    batched equivalent, its batch sized by free memory for input ``x``)."""
    if name not in METHODS:
        raise ValueError(f"unknown CAM method {name!r}; choose from {sorted(METHODS)}")
    method = (_BoundedScoreCAM if name == "scorecam" else METHODS[name])(model=model, target_layers=[layer])
    method.activations_and_grads.release()
    if name == "scorecam":
        method.batch_size = scorecam_batch(x, free_memory(x.device))
        method.should_stop = should_stop
    return method


def _explain_model(model: nn.Module, x: torch.Tensor, targets: Sequence[int] | None, method: str, layer_name: str,
                   should_stop: Callable[[], bool] | None = None) -> list[Explanation]:
    if should_stop is not None and should_stop():
        raise Cancelled()
    model = _eval_model(model)
    layer = model.get_submodule(layer_name)
    device = next(model.parameters()).device
    x = x.to(device)
    gradient = method not in GRADIENT_FREE
    with torch.inference_mode(False):  # a caller inside torch.inference_mode() still gets its gradient
        with torch.no_grad(), _leaf_at(layer, gradient) as captured, record_attention(model) as record:
            logits = model(x)
        if not captured:
            raise ValueError(f"target layer {layer_name!r} was not used by the forward pass")
        activations = captured[0]
        chosen = logits.argmax(dim=1) if targets is None else torch.as_tensor(list(targets), device=device)
        grads = None
        if gradient:
            score = logits.gather(1, chosen[:, None]).sum()
            grads = torch.autograd.grad(score, activations)[0].cpu().numpy()
    probs = torch.softmax(logits.detach().float(), dim=1).cpu().numpy()
    cam_targets = [ClassifierOutputTarget(int(t)) for t in chosen]
    cam_method = _cam_method(method, model, layer, x, should_stop)
    with torch.no_grad():
        raw = cam_method.get_cam_image(x, layer, cam_targets, activations.detach().cpu().numpy(), grads, False)
    raw = np.maximum(raw, 0)
    cams = scale_cam_image(raw, (x.shape[-1], x.shape[-2]))
    channel = [c.float().cpu().numpy() for c in record.channel]
    spatial = [s.float().cpu().numpy() for s in record.spatial]
    return [
        Explanation(
            cam=cams[i], raw_cam=raw[i].astype(np.float32), probs=probs[i], target=int(chosen[i]), method=method,
            target_layer=layer_name, blocks=list(record.blocks),
            channel_attention=[c[i] for c in channel], spatial_attention=[s[i] for s in spatial],
        )
        for i in range(x.shape[0])
    ]


def as_batch(model: nn.Module, images: Sequence[Image.Image] | torch.Tensor) -> torch.Tensor:
    """The normalized Nx3xHxW input for ``model``: PIL images go through its own transform."""
    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected an Nx3xHxW tensor, got shape {tuple(images.shape)}")
        return images
    return torch.cat([preprocess(image, model.info) for image in images])


def _preprocessing(model: nn.Module) -> tuple:
    """What decides a model's input tensor for a PIL image: size, resize, mean and std."""
    info = model.info
    return info.input_size, info.resize, tuple(info.mean), tuple(info.std)


def _on_crop(result: Explanation, size: tuple[int, int], info: ModelInfo, reference: ModelInfo) -> Explanation:
    """``result`` (maps over ``info``'s crop of a ``size`` image) with every map placed onto ``reference``'s crop."""
    box, onto = crop_box(size, info), crop_box(size, reference)
    return replace(result, cam=place_map(result.cam, box, onto, (reference.input_size,) * 2),
                   raw_cam=place_map(result.raw_cam, box, onto),
                   spatial_attention=[place_map(s, box, onto) for s in result.spatial_attention])


def _class_index(target: object) -> int:
    """A class index from any integer type (int, NumPy, 0-d tensor); a clear error otherwise."""
    if isinstance(target, (torch.Tensor, np.ndarray)) and target.ndim == 0 and target.dtype not in (torch.bool, bool):
        target = target.item()
    if isinstance(target, bool) or not isinstance(target, numbers.Integral):
        raise ValueError(f"target class must be an integer index, got {target!r}")
    return int(target)


def explain_batch(
    models: Mapping[str, nn.Module],
    images: Sequence[Image.Image] | torch.Tensor,
    targets: int | Sequence[int] | None = None,
    method: str = "gradcam",
    target_layer: str | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, list[Explanation]]:
    """Explain N images with every model: one forward pass per model for gradient methods.

    ``targets``: None explains each model's own top-1 class; an int (or one int per image)
    explains that class with every model. ``target_layer`` is a module name such as
    "layer4.2"; by default the last block of layer4. PIL images go through each model's own transform;
    the maps of a model that crops differently from the first are placed onto the first one's crop.
    ``should_stop`` is polled before each model and each Score-CAM batch; when it returns True,
    :class:`Cancelled` is raised.
    """
    n = images.shape[0] if isinstance(images, torch.Tensor) else len(images)
    if targets is not None and (getattr(targets, "ndim", None) == 0 or not isinstance(targets, Iterable)):
        targets = [targets] * n  # one class for every image
    if targets is not None:
        targets = [_class_index(t) for t in targets]
        if len(targets) != n:
            raise ValueError(f"got {len(targets)} targets for {n} images")
    out, batches = {}, {}
    reference = next((m.info for m in models.values()), None)
    for label, model in models.items():
        layer = target_layer or default_target_layer(model)
        if targets is not None and not all(0 <= t < model.fc.out_features for t in targets):
            raise ValueError(f"target class out of range for {label} ({model.fc.out_features} classes)")
        key = _preprocessing(model) if not isinstance(images, torch.Tensor) else None
        if key not in batches:  # models with the same preprocessing share one input
            batches[key] = as_batch(model, images)
        out[label] = _explain_model(model, batches[key], targets, method, layer, should_stop)
        if key is not None and (model.info.input_size, model.info.resize) != (reference.input_size, reference.resize):
            out[label] = [_on_crop(r, image.size, model.info, reference) for r, image in zip(out[label], images)]
    return out


def explain(
    models: Mapping[str, nn.Module],
    image: Image.Image | torch.Tensor,
    target: int | None = None,
    method: str = "gradcam",
    target_layer: str | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Explanation]:
    """Explain one image (a PIL image or a normalized 1x3xHxW tensor) with every model (``should_stop``: see
    :func:`explain_batch`)."""
    images = image if isinstance(image, torch.Tensor) else [image]
    if isinstance(image, torch.Tensor) and image.shape[0] != 1:
        raise ValueError("explain takes one image; use explain_batch for several")
    results = explain_batch(models, images, target, method, target_layer, should_stop)
    return {label: result[0] for label, result in results.items()}


def to_arrays(results: Mapping[str, Explanation]) -> dict[str, np.ndarray]:
    """Flat name -> array mapping of every result, for ``np.savez``."""
    arrays: dict[str, np.ndarray] = {}
    for label, r in results.items():
        arrays.update({f"{label}/cam": r.cam, f"{label}/raw_cam": r.raw_cam, f"{label}/probs": r.probs,
                       f"{label}/target": np.array(r.target)})
        for name, c, s in zip(r.blocks, r.channel_attention, r.spatial_attention or [None] * len(r.blocks)):
            arrays[f"{label}/channel_attention/{name}"] = c
            if s is not None:
                arrays[f"{label}/spatial_attention/{name}"] = s
    return arrays
