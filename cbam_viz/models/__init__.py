"""Architectures (baseline and CBAM ResNets), attention recording and weight loading.

Names load on first use (:mod:`cbam_viz.lazy`): where files are (:mod:`.locate`) and what the published
ones are (:mod:`.published`) need no torch, so ``weights list`` answers before torch would load."""
from ..lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["CBAM", "ChannelGate", "SpatialGate"], "attention"),
    **dict.fromkeys(["AttentionRecord", "cbam_blocks", "record_attention"], "record"),
    **dict.fromkeys(["DEPTHS", "IMAGENET_MEAN", "IMAGENET_STD", "ModelInfo", "ResNet", "build_from_info", "build_resnet"],
                    "resnet"),
    **dict.fromkeys(["crop_for_display", "display_crop", "model_transform", "preprocess"], "transforms"),
    **dict.fromkeys(["WeightsError", "load_checkpoint", "load_weights", "save_checkpoint", "sha256"], "weights"),
    "hub_checkpoints": "locate",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
