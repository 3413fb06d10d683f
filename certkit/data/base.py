"""What every dataset looks like to the rest of certkit, and the checks they share.

Datasets return images in [0, 1] pixel space, unnormalized: noise is added in that space
and normalization is the model's first step (see DESIGN.md), so a dataset never
normalizes. Path and split checks live here so every format words its errors the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from certkit.errors import DataError


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset to check that the two fit."""

    name: str  # registry name, e.g. "fashion-mnist-mini"
    split: str  # "train" | "test" | "val" ...
    num_classes: int
    class_names: tuple[str, ...]
    image_size: tuple[int, int]  # (H, W) of the tensors __getitem__ returns
    channels: int
    source: str  # the path read, or "embedded"


class ImageDataset(Dataset[tuple[torch.Tensor, int]], ABC):
    """A labelled image dataset: float32 [C, H, W] images in [0, 1] and int labels."""

    info: DatasetInfo

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]: ...

    def __repr__(self) -> str:
        i = self.info
        return f"{type(self).__name__}({i.name!r}, split={i.split!r}, n={len(self)}, source={i.source!r})"


@dataclass(frozen=True)
class DatasetEntry:
    """What a plugin registers under a dataset name."""

    factory: Callable[[Path | None, str], ImageDataset]  # (path, split) -> dataset
    needs_path: bool  # False only for datasets shipped inside a package
    description: str
    default_split: str  # split used by certification, e.g. "test" or "val"
    lazy: bool = False  # reads files per image (training then uses loader worker processes)


class ArrayImageDataset(ImageDataset):
    """Images already in memory as uint8 [N, C, H, W]; shared by the IDX and CIFAR readers."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, info: DatasetInfo) -> None:
        self.images = images
        self.labels = labels
        self.info = info

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        # Same arithmetic as torchvision's ToTensor, so file formats agree to the bit.
        image = torch.tensor(self.images[i], dtype=torch.float32).div_(255)
        return image, int(self.labels[i])

    def pil_image(self, i: int) -> tuple[Image.Image, int]:
        """Item ``i`` as a PIL image (L or RGB), for training transforms."""
        pixels = self.images[i]
        image = Image.fromarray(pixels[0], "L") if pixels.shape[0] == 1 else Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0)), "RGB")
        return image, int(self.labels[i])

    def labels_list(self) -> list[int]:
        return self.labels.tolist()


def luminance(rgb: torch.Tensor) -> torch.Tensor:
    """[..., 3, H, W] in [0, 1] (multiples of 1/255) -> [..., 1, H, W]: PIL's "L" conversion
    (ITU-R 601-2 luma in 16-bit fixed point), so a folder read as L and a tensor converted here
    agree to the bit."""
    r, g, b = (rgb * 255).round().to(torch.int64).unbind(-3)
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).unsqueeze(-3).to(torch.float32).div_(255)


class ChannelConverted(ImageDataset):
    """Another dataset's images with 1 channel repeated to 3 (L -> RGB) or 3 reduced to 1 by
    luminance (RGB -> L)."""

    def __init__(self, dataset: ImageDataset, channels: int) -> None:
        self.dataset, self.channels = dataset, channels
        self.info = replace(dataset.info, channels=channels)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image, label = self.dataset[i]
        return (image.expand(3, *image.shape[1:]).clone() if self.channels == 3 else luminance(image)), label


def with_channels(dataset: ImageDataset, channels: int) -> ImageDataset:
    """``dataset`` read with ``channels`` channels (the model's): L <-> RGB are converted
    explicitly; any other pair cannot be and is refused."""
    have = dataset.info.channels
    if have == channels:
        return dataset
    own = getattr(dataset, "with_channels", None)
    if own is not None:
        return own(channels)
    if {have, channels} == {1, 3}:
        return ChannelConverted(dataset, channels)
    raise DataError(
        f"dataset '{dataset.info.name}' ({dataset.info.source}) has {have}-channel images and the model expects {channels}; only 1 <-> 3 channels can be converted.",
        "Use a model trained for this data, or data with the model's channel count.",
    )


def path_fix(name: str) -> str:
    """The standard advice for a wrong data path of dataset ``name``."""
    return f"Set datasets.{name}.path in certkit.yaml or pass --data-path."


def require_dir(path: Path | str | None, name: str) -> Path:
    """``path`` as an existing directory, or a DataError that says how to point at one."""
    if path is None:
        raise DataError(f"dataset {name} needs a data path.", path_fix(name))
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"data path {path} does not exist.", path_fix(name))
    if not path.is_dir():
        raise DataError(f"data path {path} is a file, not a directory.", path_fix(name))
    return path


def require_split(split: str, known: Sequence[str], name: str) -> str:
    """``split`` if ``name`` has it, else a DataError listing the splits it has."""
    if split not in known:
        raise DataError(
            f"unknown split {split!r} for dataset {name}.", f"Known splits: {', '.join(known)}."
        )
    return split


def check_labels(labels: np.ndarray, num_classes: int, source: Path | str) -> None:
    """Refuse label values outside [0, num_classes): they would index past the class list."""
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"labels in {source} must lie in 0..{num_classes - 1}, found {labels.min()}..{labels.max()}.",
            "Check that the file is not corrupt or from another dataset.",
        )
