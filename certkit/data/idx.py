"""Fashion-MNIST in its original IDX files (gzipped or not).

One reader serves the full dataset on disk and the subset shipped in the package, which
is stored in the same format for exactly that reason.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from certkit.data.base import (
    ArrayImageDataset,
    DatasetInfo,
    check_labels,
    path_fix,
    require_dir,
    require_split,
)
from certkit.errors import DataError

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
#: split -> file prefix, as the files are named upstream
FASHION_MNIST_SPLITS: dict[str, str] = {"train": "train", "test": "t10k"}

_UBYTE = 0x08  # the only IDX element type these datasets use


def read_idx(path: Path) -> np.ndarray:
    """Read an unsigned-byte IDX file (``.gz`` or raw) into a uint8 array of its shape.

    Checks the magic number and that the data length matches the header, so a truncated
    download is reported instead of producing wrong images.
    """
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":  # gzip magic; suffixes lie more often than headers
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"cannot read IDX file {path}: {err}.", "Download the file again.") from None
    magic = int.from_bytes(raw[:4], "big")
    ndim = magic & 0xFF
    if len(raw) < 4 or magic >> 8 != _UBYTE or not 1 <= ndim <= 3:
        raise DataError(
            f"{path} is not an unsigned-byte IDX file (magic 0x{raw[:4].hex()}).",
            "Point the data path at the original Fashion-MNIST files.",
        )
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    if len(raw) != header + int(np.prod(shape)):
        raise DataError(
            f"IDX file {path} holds {len(raw) - header} bytes of data, its header says {shape}.",
            "The file is truncated or corrupt; download it again.",
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def find_idx_file(root: Path, stem: str, name: str) -> Path:
    """``root/stem.gz`` or ``root/stem``, or a DataError naming the missing file."""
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    raise DataError(f"missing {stem}.gz (or {stem}) in {root}.", path_fix(name))


def load_idx_dataset(
    root: Path, split: str, name: str, source: str | None = None
) -> ArrayImageDataset:
    """The ``split`` of a Fashion-MNIST-style directory of IDX files as [N, 1, 28, 28] images."""
    prefix = FASHION_MNIST_SPLITS[require_split(split, tuple(FASHION_MNIST_SPLITS), name)]
    images_path = find_idx_file(root, f"{prefix}-images-idx3-ubyte", name)
    labels_path = find_idx_file(root, f"{prefix}-labels-idx1-ubyte", name)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(
            f"{images_path} ({images.shape}) and {labels_path} ({labels.shape}) do not match.",
            "Both files must come from the same split of the same dataset.",
        )
    check_labels(labels, len(FASHION_MNIST_CLASSES), labels_path)
    info = DatasetInfo(
        name=name,
        split=split,
        num_classes=len(FASHION_MNIST_CLASSES),
        class_names=FASHION_MNIST_CLASSES,
        image_size=(images.shape[1], images.shape[2]),
        channels=1,
        source=source if source is not None else str(root),
    )
    return ArrayImageDataset(images[:, None], labels, info)


def fashion_mnist(path: Path | None, split: str) -> ArrayImageDataset:
    """Registry factory for ``fashion-mnist``: the full set from a directory of IDX files.

    Also accepts torchvision's download layout (``<path>/FashionMNIST/raw``).
    """
    root = require_dir(path, "fashion-mnist")
    torchvision_layout = root / "FashionMNIST" / "raw"
    if not any(root.glob("*-idx?-ubyte*")) and torchvision_layout.is_dir():
        root = torchvision_layout
    return load_idx_dataset(root, split, "fashion-mnist")
