"""Datasets by name: image folders (ImageNet layout), CIFAR-10, Fashion-MNIST, and a small
Fashion-MNIST subset shipped in the package so that everything runs offline.

Every dataset returns float32 [C, H, W] images in [0, 1], unnormalized, and int labels.
``BUILTIN_DATASETS`` is what the core's builtin plugin registers.
"""

from __future__ import annotations

from certkit.data.base import DatasetEntry, DatasetInfo, ImageDataset, with_channels
from certkit.data.cifar10 import cifar10
from certkit.data.embedded import EMBEDDED_NAME, fashion_mnist_mini
from certkit.data.folders import image_folder, imagenet
from certkit.data.idx import fashion_mnist
from certkit.data.subset import select_indices

BUILTIN_DATASETS: dict[str, DatasetEntry] = {
    EMBEDDED_NAME: DatasetEntry(
        factory=fashion_mnist_mini,
        needs_path=False,
        description="Fashion-MNIST subset shipped with certkit: 600/100 images per class (train/test), 1x28x28",
        default_split="test",
    ),
    "fashion-mnist": DatasetEntry(
        factory=fashion_mnist,
        needs_path=True,
        description="Fashion-MNIST from a directory of its 4 IDX files (.gz or raw), 1x28x28",
        default_split="test",
    ),
    "cifar10": DatasetEntry(
        factory=cifar10,
        needs_path=True,
        description="CIFAR-10 python batches (cifar-10-batches-py or its parent), 3x32x32",
        default_split="test",
    ),
    "image-folder": DatasetEntry(
        factory=image_folder,
        needs_path=True,
        description="images in root/<class>/ (optionally root/<split>/<class>/), read as they are (greyscale or RGB); training crops them, certification needs one size",
        default_split="test",
        lazy=True,
    ),
    "imagenet": DatasetEntry(
        factory=imagenet,
        needs_path=True,
        description="ImageNet folders root/<split>/<wnid>/*.JPEG, Resize(256, bicubic) + CenterCrop(224); training crops the full-resolution train images",
        default_split="val",
        lazy=True,
    ),
}

__all__ = [
    "BUILTIN_DATASETS",
    "DatasetEntry",
    "DatasetInfo",
    "ImageDataset",
    "select_indices",
    "with_channels",
]
