"""Model input geometry: elongated images are cut to what Resize + CenterCrop keep before resizing."""
from __future__ import annotations

import numpy as np
from PIL import Image
from torchvision import transforms as T
from torchvision import tv_tensors

from cbam_viz.models import model_transform
from cbam_viz.models.resnet import ModelInfo
from cbam_viz.models.transforms import CentreToAspect, annotation_geometry, crop_for_display

INFO = ModelInfo(depth=50, input_size=224, resize=256)


def _banner(width: int = 3000, height: int = 40) -> Image.Image:
    """Horizontal and vertical gradients: any shift of the kept centre changes the pixels."""
    x = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], -1).astype(np.uint8))


def test_a_banner_gives_the_plain_pipelines_input_from_a_bounded_resize() -> None:
    banner = _banner()
    plain = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(INFO.mean, INFO.std)])(banner)
    ours = model_transform(INFO)(banner)
    assert ours.shape == plain.shape == (3, 224, 224)
    assert float((ours - plain).abs().max()) < 0.15  # the same centre, up to a fraction of a pixel of placement
    assert CentreToAspect()(banner).size == (160, 40)  # resized to 1024x256 instead of 19200x256
    assert crop_for_display(banner, INFO).size == (224, 224)


def test_ordinary_images_are_untouched_and_annotations_follow() -> None:
    photo = _banner(640, 480)
    assert CentreToAspect()(photo) is photo
    plain = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(INFO.mean, INFO.std)])(photo)
    assert np.array_equal(model_transform(INFO)(photo).numpy(), plain.numpy())
    mask = tv_tensors.Mask(np.ones((40, 3000), np.uint8)[None])
    image, mask = annotation_geometry(INFO)(tv_tensors.Image(np.array(_banner()).transpose(2, 0, 1).copy()), mask)
    assert image.shape[-2:] == mask.shape[-2:] == (224, 224)
