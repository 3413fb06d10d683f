"""Small convolutional base classifiers for 28-32 px images, trained from scratch on noisy images.

Both take [0, 1] images (``certkit.Normalize`` is their first layer), carry their
``input_spec``, and build their first convolution and head from it, so one name serves
Fashion-MNIST (1x28x28) and CIFAR-10 (3x32x32). ``drop_path_rate`` is stochastic depth on the
residual branches (what ``certkit finetune --drop-path`` sets).
"""

from __future__ import annotations

import torch
from timm.layers import DropPath
from torch import nn

from certkit import CertkitError, InputSpec, Normalize

FASHION_MNIST = InputSpec(
    image_size=(28, 28),
    channels=1,
    mean=(0.2860,),
    std=(0.3530,),
    num_classes=10,
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
)
CIFAR10 = InputSpec(
    image_size=(32, 32),
    channels=3,
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
    num_classes=10,
    class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
)
IMAGENET = InputSpec(image_size=(224, 224), channels=3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), num_classes=1000)

#: ``-M spec=NAME`` presets of ``certkit finetune``; a checkpoint's own spec always wins.
SPECS = {"fashion-mnist": FASHION_MNIST, "cifar10": CIFAR10, "imagenet": IMAGENET}


def resolve_spec(spec: InputSpec | str | None, default: InputSpec = FASHION_MNIST) -> InputSpec:
    """An InputSpec, a preset name from :data:`SPECS`, or None for ``default``."""
    if spec is None:
        return default
    if isinstance(spec, InputSpec):
        return spec
    if spec not in SPECS:
        raise CertkitError(f"unknown input spec preset '{spec}'.", f"Known presets: {', '.join(SPECS)}.")
    return SPECS[spec]


def _conv_bn_relu(inputs: int, outputs: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU(inplace=True))


class ResidualBlock(nn.Module):
    """x + DropPath(conv-bn-relu-conv-bn(x)), then ReLU; same channels and size."""

    def __init__(self, channels: int, drop_path: float) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels),
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.drop_path(self.branch(x)))


class CNNMini(nn.Module):
    """A few conv layers: a stem at full resolution, then two stride-2 stages, each one conv
    plus one residual block, global average pool, linear head (a ResNet-9-style CNN in miniature)."""

    def __init__(self, spec: InputSpec, width: int = 32, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.input_spec = spec
        self.normalize = Normalize(spec.mean, spec.std)
        self.stem = _conv_bn_relu(spec.channels, width)
        self.stage1 = nn.Sequential(_conv_bn_relu(width, 2 * width, stride=2), ResidualBlock(2 * width, drop_path_rate))
        self.stage2 = nn.Sequential(_conv_bn_relu(2 * width, 4 * width, stride=2), ResidualBlock(4 * width, drop_path_rate))
        self.head = nn.Linear(4 * width, spec.num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.normalize(images))  # [B, w, H, W]
        x = self.stage1(x)  # [B, 2w, H/2, W/2]
        x = self.stage2(x)  # [B, 4w, H/4, W/4]
        return self.head(x.mean(dim=(2, 3)))  # [B, K]


class PreActBlock(nn.Module):
    """Pre-activation basic block (He et al. 2016, "Identity Mappings"): BN-ReLU-conv twice;
    a 1x1 projection shortcut from the pre-activated input when the shape changes."""

    def __init__(self, inputs: int, outputs: int, stride: int, drop_path: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inputs)
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(inputs, outputs, 1, stride, bias=False) if stride != 1 or inputs != outputs else None
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = torch.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(activated)
        branch = self.conv2(torch.relu(self.bn2(self.conv1(activated))))
        return skip + self.drop_path(branch)


class PreActResNet(nn.Module):
    """The CIFAR ResNet layout of Cohen et al.'s ``cifar_resnet20/110``, pre-activation: a 3x3
    stem, three stages of (depth - 2) / 6 blocks at 16, 32, 64 channels (times ``width``),
    strides 1, 2, 2, then BN-ReLU, global average pool and a linear head."""

    def __init__(self, spec: InputSpec, depth: int = 20, width: int = 1, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise CertkitError(f"resnet-mini depth must be 6n + 2 (8, 14, 20, 32, 56, 110, ...), got {depth}.", "Pass e.g. -M depth=20.")
        blocks = (depth - 2) // 6
        channels = [16 * width, 32 * width, 64 * width]
        self.input_spec = spec
        self.normalize = Normalize(spec.mean, spec.std)
        self.stem = nn.Conv2d(spec.channels, channels[0], 3, 1, 1, bias=False)
        rates = torch.linspace(0, drop_path_rate, 3 * blocks).tolist()  # deeper blocks drop more, as timm
        layers, inputs = [], channels[0]
        for stage, outputs in enumerate(channels):
            for i in range(blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(PreActBlock(inputs, outputs, stride, rates[stage * blocks + i]))
                inputs = outputs
        self.blocks = nn.Sequential(*layers)
        self.norm = nn.BatchNorm2d(inputs)
        self.head = nn.Linear(inputs, spec.num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.normalize(images))  # [B, 16w, H, W]
        x = self.blocks(x)  # [B, 64w, H/4, W/4]
        x = torch.relu(self.norm(x))
        return self.head(x.mean(dim=(2, 3)))  # [B, K]


def cnn_mini(spec: InputSpec | str | None = None, **options) -> CNNMini:
    """cnn-mini: 0.46M parameters at width 32; the fastest model here to train and certify on a CPU."""
    return CNNMini(resolve_spec(spec), **options)


def resnet_mini(spec: InputSpec | str | None = None, **options) -> PreActResNet:
    """resnet-mini: pre-activation ResNet-20 (0.27M parameters; -M depth=110 is Cohen's CIFAR model)."""
    return PreActResNet(resolve_spec(spec), **options)
