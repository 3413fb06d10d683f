"""The training view of a dataset: raw images through a random transform, reproducibly.

Every item's random augmentation is drawn from RNGs seeded by ``(seed, epoch, index)``, so the
crops a run sees depend on neither the number of loader workers nor on whether the workers are
persistent, and a resumed run sees what the uninterrupted one would have. The epoch travels with
each index (:class:`EpochSampler` yields ``(epoch, index)`` pairs): a persistent worker keeps
its own copy of the dataset and would never see a ``set_epoch`` on it.

Images come from the dataset's :meth:`pil_image` at their stored resolution: the image-folder
train split is never resized or centre-cropped before the training transform.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import random
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, DistributedSampler, Sampler, get_worker_info

from certkit.data.base import ImageDataset
from certkit.errors import DataError


def item_seed(seed: int, epoch: int, index: int) -> int:
    digest = hashlib.blake2b(f"augment/{seed}/{epoch}/{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed the global RNGs timm's and torchvision's transforms draw from (``random``, numpy,
    torch's CPU generator). In the training process itself (no worker), torch's CPU state is
    restored afterwards, so augmenting an item does not move the stream dropout draws from;
    ``random`` and numpy are left seeded (nothing else in training draws from them: the mixup
    of :class:`certkit.objectives.NoisyCrossEntropy` reseeds numpy from its own generator).
    Saving and restoring numpy's state would cost more than the crop itself on small images."""
    in_main = get_worker_info() is None
    saved = torch.random.get_rng_state() if in_main else None
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.default_generator.manual_seed(seed)  # torch.manual_seed would also seed every GPU (slow)
    try:
        yield
    finally:
        if saved is not None:
            torch.random.set_rng_state(saved)


def pil_image(dataset: ImageDataset, index: int) -> tuple[Image.Image, int]:
    """Item ``index`` as a PIL image at its stored resolution, and its label."""
    own = getattr(dataset, "pil_image", None)
    if own is not None:
        return own(index)
    from torchvision.transforms.functional import to_pil_image

    image, label = dataset[index]  # a plugin's dataset: float [C, H, W] in [0, 1]
    return to_pil_image((image * 255).round().to(torch.uint8)), label


def labels_of(dataset: ImageDataset) -> Sequence[int]:
    own = getattr(dataset, "labels_list", None)
    return own() if own is not None else [int(dataset[i][1]) for i in range(len(dataset))]


def label_fraction_indices(labels: Sequence[int], fraction: float) -> list[int]:
    """A class-balanced subset for label-scarce training: in every class, the first
    ``ceil(fraction * class size)`` images in dataset order (deterministic, no seed)."""
    if not 0 < fraction <= 1:
        raise DataError(f"label fraction must be in (0, 1], got {fraction}.", "Pass e.g. --label-fraction 0.1 for 10% of the labels.")
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(index)
    chosen = [i for members in by_class.values() for i in members[: math.ceil(fraction * len(members))]]
    return sorted(chosen)


class TrainingImages(Dataset):
    """``dataset[(epoch, i)]`` -> (uint8 ``[C, H, W]``, label): item ``indices[i]`` of
    ``source`` through ``transform`` with RNGs seeded by ``(seed, epoch, indices[i])``."""

    def __init__(self, source: ImageDataset, transform: Callable[[Image.Image], torch.Tensor], seed: int, indices: Sequence[int] | None = None) -> None:
        self.source, self.transform, self.seed = source, transform, seed
        self.indices = list(range(len(source))) if indices is None else list(indices)
        self.info = source.info

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: tuple[int, int] | int) -> tuple[torch.Tensor, int]:
        epoch, position = key if isinstance(key, tuple) else (0, key)
        index = self.indices[position]
        image, label = pil_image(self.source, index)
        with seeded(item_seed(self.seed, epoch, index)):
            return self.transform(image), label


class EpochSampler(Sampler[tuple[int, int]]):
    """A DistributedSampler whose indices carry their epoch: ``(epoch, index)``."""

    def __init__(self, inner: DistributedSampler) -> None:
        self.inner, self.epoch = inner, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.inner.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.epoch, index) for index in self.inner)

    def __len__(self) -> int:
        return len(self.inner)


class PlainItems(Dataset):
    """Adapts a dataset indexed by plain integers to ``(epoch, index)`` keys."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]):
        return self.dataset[key[1]]


def check_images(source: ImageDataset, indices: Sequence[int]) -> None:
    """Read the header of every training image that lives in a file, so an unreadable one is
    named before a run directory is written rather than in the middle of an epoch (a file whose
    pixels are corrupt past a valid header is still named when it is decoded)."""
    header_check = getattr(source, "check_header", None)
    if header_check is None:
        return
    for index in indices:
        header_check(index)
