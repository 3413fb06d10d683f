"""Training and evaluation image transforms, built from timm's data utilities.

The training transform is DMAE's (and MAE's, DeiT's): timm's ``create_transform`` train
pipeline, i.e. ``RandomResizedCropAndInterpolation`` on the full-resolution image with the
recipe's scale range, a horizontal flip and RandAugment by timm's config string. As in the
reference (quanlin-wu/dmae ``util/datasets.py``), timm's final stage is left out: no
normalization (the model normalizes) and no random erasing (the reference builds the transform
with ``separate=True`` and drops the stage that holds it). Colour jitter is off, as the
reference's ``--color_jitter None`` leaves it.

Transforms take PIL images and return ``uint8`` tensors ``[C, H, W]``: a quarter of the bytes
of float32 through the loader's worker queues and pinned memory; the trainer divides by 255 on
the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from PIL import Image

from certkit.errors import CertkitError, DataError

#: PIL modes for the channel counts certkit can convert between (L <-> RGB).
MODES = {1: "L", 3: "RGB"}
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
#: timm's evaluation crop for 224-pixel models: Resize(224 / 0.875 = 256) + CenterCrop(224).
EVAL_CROP_PCT = 0.875


@dataclass(frozen=True)
class TrainAugmentation:
    """What the training transform does; every field is a recipe setting.

    ``crop_scale``: area range of RandomResizedCrop (None: no random crop; an image of another
    size than the model's is resized and centre-cropped instead). ``crop_ratio``: its aspect
    ratio range. ``hflip``: flip probability. ``rand_augment``: timm config string such as
    ``rand-m9-mstd0.5-inc1`` (None: off). ``interpolation``: ``bicubic`` in DMAE's recipes.
    """

    crop_scale: tuple[float, float] | None = None
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.0
    rand_augment: str | None = None
    interpolation: str = "bicubic"

    def __post_init__(self) -> None:
        if self.crop_scale is not None:
            low, high = self.crop_scale
            if not 0 < low <= high <= 1:
                raise CertkitError(f"crop scale must satisfy 0 < low <= high <= 1, got {low}, {high}.", "Pass e.g. --crop-scale 0.08,1.")
        if not 0 <= self.hflip <= 1:
            raise CertkitError(f"hflip must be a probability in [0, 1], got {self.hflip}.", "Pass e.g. --hflip 0.5.")
        if self.interpolation not in INTERPOLATIONS:
            raise CertkitError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got '{self.interpolation}'.", "Pass e.g. --interpolation bicubic.")
        if self.rand_augment is not None and not self.rand_augment.startswith("rand"):
            raise CertkitError(f"rand augment '{self.rand_augment}' is not a timm RandAugment config string.", "Pass e.g. --rand-augment rand-m9-mstd0.5-inc1, or none.")

    @property
    def is_identity(self) -> bool:
        return self.crop_scale is None and self.hflip == 0 and self.rand_augment is None


def convert_mode(image: Image.Image, channels: int, source: object) -> Image.Image:
    """``image`` in the mode of ``channels`` (1 = L, 3 = RGB); palette, alpha and 16-bit images
    are converted too. Refuses channel counts PIL has no mode for."""
    mode = MODES.get(channels)
    if mode is None:
        raise DataError(f"the model expects {channels}-channel images; certkit reads image files as 1 (L) or 3 (RGB) channels.", f"Use a model for 1- or 3-channel input, or a dataset type that yields {channels} channels ({source}).")
    return image if image.mode == mode else image.convert(mode)


def train_transform(augmentation: TrainAugmentation, image_size: tuple[int, int], channels: int, mean: tuple[float, ...]) -> Callable[[Image.Image], torch.Tensor]:
    """PIL image (any size, any of L/RGB/...) -> uint8 ``[channels, H, W]`` at ``image_size``."""
    from timm.data import create_transform
    from timm.data.auto_augment import rand_augment_transform
    from timm.data.transforms import MaybePILToTensor, str_to_pil_interp
    from torchvision import transforms

    if augmentation.rand_augment:
        _use_posterize_shim()
    if augmentation.crop_scale is not None:
        # timm's train pipeline: RandomResizedCropAndInterpolation, flip, RandAugment, and (with
        # normalize=False) a uint8 tensor at the end; no colour jitter, no random erasing.
        pipeline = create_transform(
            input_size=(channels, *image_size), is_training=True, scale=augmentation.crop_scale, ratio=augmentation.crop_ratio,
            hflip=augmentation.hflip, color_jitter=None, auto_augment=augmentation.rand_augment, interpolation=augmentation.interpolation,
            mean=_fill_mean(mean), re_prob=0.0, normalize=False,
        )
        steps = [pipeline]
    else:
        steps = [_FitTo(image_size, augmentation.interpolation)]
        if augmentation.hflip > 0:
            steps.append(transforms.RandomHorizontalFlip(augmentation.hflip))
        if augmentation.rand_augment:
            params = dict(translate_const=int(min(image_size) * 0.45), img_mean=tuple(round(255 * m) for m in _fill_mean(mean)), interpolation=str_to_pil_interp(augmentation.interpolation))
            steps.append(rand_augment_transform(augmentation.rand_augment, params))
        steps.append(MaybePILToTensor())
    return _InMode(channels, transforms.Compose(steps))


def eval_transform(image_size: tuple[int, int], channels: int, interpolation: str = "bicubic", crop_pct: float = EVAL_CROP_PCT) -> Callable[[Image.Image], torch.Tensor]:
    """Resize the shorter side to ``size / crop_pct`` and centre-crop ``image_size``: DMAE's
    Resize(256, bicubic) + CenterCrop(224) for 224-pixel models."""
    from timm.data.transforms import MaybePILToTensor, str_to_pil_interp
    from torchvision import transforms

    resize = tuple(int(side / crop_pct) for side in image_size)
    shorter = resize[0] if image_size[0] == image_size[1] else resize
    steps = [transforms.Resize(shorter, interpolation=str_to_pil_interp(interpolation)), transforms.CenterCrop(image_size), MaybePILToTensor()]
    return _InMode(channels, transforms.Compose(steps))


def _posterize_any_bits(img: Image.Image, bits_to_keep: int, **_: object) -> Image.Image:
    """timm's posterize, also for 0 bits (every pixel black). timm's ``inc1`` RandAugment asks
    for 0 bits at magnitude 10 (reached often with ``mstd0.5``); Pillow >= 11 refuses 0 where
    the Pillow of the reference (timm 0.5.4) returned the black image."""
    from PIL import ImageOps

    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return img.point(lambda _: 0)
    return ImageOps.posterize(img, bits_to_keep)


def _use_posterize_shim() -> None:
    from timm.data import auto_augment

    for name in ("Posterize", "PosterizeIncreasing", "PosterizeOriginal"):
        if name in auto_augment.NAME_TO_OP:
            auto_augment.NAME_TO_OP[name] = _posterize_any_bits


def _fill_mean(mean: tuple[float, ...]) -> tuple[float, ...]:
    """RandAugment fills with the dataset mean; timm wants three values (it works on RGB fill
    colours), so a grey image's single mean is repeated."""
    return tuple(mean) * 3 if len(mean) == 1 else tuple(mean)


class _InMode:
    """Converts to the model's channel count first, so every later step sees one mode."""

    def __init__(self, channels: int, inner: Callable) -> None:
        self.channels, self.inner = channels, inner

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.inner(convert_mode(image, self.channels, "training transform"))

    def __repr__(self) -> str:
        return f"InMode({MODES.get(self.channels)}, {self.inner!r})"


class _FitTo:
    """Without a random crop: an image already at the model's size passes untouched; another
    size is resized (shorter side) and centre-cropped, so mixed sizes still batch."""

    def __init__(self, image_size: tuple[int, int], interpolation: str) -> None:
        from timm.data.transforms import str_to_pil_interp

        self.image_size, self.interpolation = tuple(image_size), str_to_pil_interp(interpolation)

    def __call__(self, image: Image.Image) -> Image.Image:
        from torchvision.transforms import functional

        if (image.height, image.width) == self.image_size:
            return image
        image = functional.resize(image, min(self.image_size), interpolation=self.interpolation)
        return functional.center_crop(image, list(self.image_size))

    def __repr__(self) -> str:
        return f"FitTo({self.image_size})"
