"""Architectures (baseline and CBAM ResNets), attention recording and weight loading."""
from .attention import CBAM, ChannelGate, SpatialGate
from .record import AttentionRecord, cbam_blocks, record_attention
from .resnet import DEPTHS, IMAGENET_MEAN, IMAGENET_STD, ModelInfo, ResNet, build_from_info, build_resnet
from .transforms import crop_for_display, display_crop, model_transform, preprocess
from .weights import (
    WeightsError,
    hub_checkpoints,
    load_checkpoint,
    load_weights,
    save_checkpoint,
    sha256,
)

__all__ = [
    "CBAM", "ChannelGate", "SpatialGate", "AttentionRecord", "cbam_blocks", "record_attention",
    "DEPTHS", "IMAGENET_MEAN", "IMAGENET_STD", "ModelInfo", "ResNet", "build_from_info", "build_resnet",
    "crop_for_display", "display_crop", "model_transform", "preprocess",
    "WeightsError", "hub_checkpoints", "load_checkpoint", "load_weights", "save_checkpoint", "sha256",
]
