"""``fashion-mnist-mini``: a small real dataset shipped inside the package.

It lets every command run offline and in CI with real images: 600 train and 100 test
images per class of Fashion-MNIST (see ``embedded/NOTICE`` for provenance and licence,
``tools/make_embedded_dataset.py`` for how the files were made).
"""

from __future__ import annotations

from pathlib import Path

from certkit.data.base import ArrayImageDataset
from certkit.data.idx import load_idx_dataset
from certkit.errors import DataError

EMBEDDED_NAME = "fashion-mnist-mini"
#: the directory holding the shipped IDX files (package data, not a Python package)
EMBEDDED_DIR = Path(__file__).resolve().parent / "embedded"


def fashion_mnist_mini(path: Path | None, split: str) -> ArrayImageDataset:
    """Registry factory for the embedded dataset; it reads no user path."""
    if path is not None:
        raise DataError(
            f"dataset {EMBEDDED_NAME} is shipped inside certkit and takes no data path (got {path}).",
            "Drop --data-path, or choose a dataset that reads files, e.g. fashion-mnist.",
        )
    if not (EMBEDDED_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        raise DataError(
            f"the embedded dataset files are missing from {EMBEDDED_DIR}.",
            "Reinstall certkit; its package data (certkit/data/embedded/*) was not installed.",
        )
    return load_idx_dataset(EMBEDDED_DIR, split, EMBEDDED_NAME, source="embedded")
