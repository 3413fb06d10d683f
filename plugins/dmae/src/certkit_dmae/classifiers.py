"""ViT base classifiers as DMAE fine-tunes them: global average pool of patch tokens ->
LayerNorm (``fc_norm``) -> Linear head, on timm's ``VisionTransformer`` so state-dict keys
match timm's and the released DMAE fine-tuned checkpoints."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn
from torch.nn import functional as F
from timm.models.vision_transformer import VisionTransformer

from certkit import CertkitError, InputSpec, Normalize

IMAGENET_SPEC = InputSpec(
    image_size=(224, 224), channels=3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), num_classes=1000
)
FASHION_MNIST_SPEC = InputSpec(
    image_size=(28, 28),
    channels=1,
    mean=(0.2860,),
    std=(0.3530,),
    num_classes=10,
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
)


CIFAR10_SPEC = InputSpec(
    image_size=(32, 32),
    channels=3,
    # ImageNet statistics, not CIFAR-10's: the DMAE transfer fine-tunes an ImageNet-pretrained
    # encoder, and the reference's models_vit.py normalizes with them.
    mean=IMAGENET_SPEC.mean,
    std=IMAGENET_SPEC.std,
    num_classes=10,
    class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
)

#: ``-M spec=NAME`` presets; a checkpoint's own spec always wins.
SPECS = {"imagenet": IMAGENET_SPEC, "fashion-mnist": FASHION_MNIST_SPEC, "cifar10": CIFAR10_SPEC}


def resolve_spec(spec: InputSpec | str | None, default: InputSpec) -> InputSpec:
    """An InputSpec, a preset name of :data:`SPECS`, or None for ``default``."""
    if spec is None:
        return default
    if isinstance(spec, InputSpec):
        return spec
    if spec not in SPECS:
        raise CertkitError(f"unknown input spec preset '{spec}'.", f"Known presets: {', '.join(SPECS)}.")
    return SPECS[spec]


class ViTClassifier(VisionTransformer):
    """A timm ViT that takes [0,1] images: normalization is its first step.

    ``Normalize`` keeps its statistics out of the state dict, so keys stay timm's.
    ``linear_probe`` puts a BatchNorm without affine before the head, as MAE's linear probing.
    ``resize_to``: upsample the (noisy) input to this square size (bicubic) before everything
    else, as DMAE's CIFAR-10 transfer does (32 -> 224 after the noise), so noise and certified
    radii stay in the data's own pixel space.
    """

    def __init__(self, spec: InputSpec, linear_probe: bool = False, resize_to: int | None = None, **vit_kwargs) -> None:
        super().__init__(
            img_size=(resize_to, resize_to) if resize_to else spec.image_size,
            in_chans=spec.channels,
            num_classes=spec.num_classes,
            global_pool="avg",
            fc_norm=True,
            **vit_kwargs,
        )
        self.input_spec = spec
        self.resize_to = resize_to
        self.normalize = Normalize(spec.mean, spec.std)
        if linear_probe:
            self.head = nn.Sequential(nn.BatchNorm1d(self.embed_dim, affine=False, eps=1e-6), self.head)
        # Layer-wise lr decay (MAE util/lr_decay.py): embeddings are layer 0, block i is i + 1,
        # everything after the blocks (fc_norm, head) is the top layer.
        self.num_lr_layers = len(self.blocks) + 1

    def lr_layer_id(self, name: str) -> int:
        if name in ("cls_token", "pos_embed") or name.startswith("patch_embed"):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return self.num_lr_layers

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.resize_to:
            images = F.interpolate(images, size=(self.resize_to, self.resize_to), mode="bicubic", align_corners=False)  # [B, C, r, r]
        return super().forward(self.normalize(images))


def _build(default_spec: InputSpec, spec: InputSpec | str | None, defaults: dict, overrides: dict) -> ViTClassifier:
    return ViTClassifier(resolve_spec(spec, default_spec), **{**defaults, **overrides})


def vit_mini(spec: InputSpec | str | None = None, **overrides) -> ViTClassifier:
    """ViT for 28 px inputs that trains and certifies on a 2-core CPU: patch 4 (49 tokens), dim 64, 4 blocks."""
    return _build(FASHION_MNIST_SPEC, spec, dict(patch_size=4, embed_dim=64, depth=4, num_heads=4), overrides)


def vit_base(spec: InputSpec | str | None = None, **overrides) -> ViTClassifier:
    """ViT-B/16 at 224 px as in the DMAE paper (87M parameters)."""
    return _build(IMAGENET_SPEC, spec, dict(patch_size=16, embed_dim=768, depth=12, num_heads=12), overrides)


def vit_large(spec: InputSpec | str | None = None, **overrides) -> ViTClassifier:
    """ViT-L/16 at 224 px as in the DMAE paper (304M parameters)."""
    return _build(IMAGENET_SPEC, spec, dict(patch_size=16, embed_dim=1024, depth=24, num_heads=16), overrides)


def with_sigma(spec: InputSpec, sigma: float) -> InputSpec:
    return replace(spec, sigma=sigma)
