"""CIFAR-10 from its standard python batches (``cifar-10-batches-py``).

The batches are pickles, and a plain ``pickle.load`` of a file from the internet can run
any code. They are read with an unpickler that can build numpy arrays and nothing else.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

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

NAME = "cifar10"
BATCHES_DIR = "cifar-10-batches-py"
SPLIT_FILES: dict[str, tuple[str, ...]] = {
    "train": tuple(f"data_batch_{k}" for k in range(1, 6)),
    "test": ("test_batch",),
}
META_FILE = "batches.meta"


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The globals a pickled uint8 array needs, under the names numpy 1 and 2 write."""
    try:
        from numpy._core import multiarray, numeric  # numpy >= 2 (numpy.core is a shim there)
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    import _codecs

    return {
        # ndarray.__reduce__ (protocols 0-4), as in the original CIFAR files
        ("numpy.core.multiarray", "_reconstruct"): multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): multiarray._reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # ndarray.__reduce_ex__(5): the array's bytes wrapped in place
        ("numpy.core.numeric", "_frombuffer"): numeric._frombuffer,
        ("numpy._core.numeric", "_frombuffer"): numeric._frombuffer,
        # how Python 3 writes bytes at protocol < 3; torch's weights_only loader allows it too
        ("_codecs", "encode"): _codecs.encode,
    }


_ALLOWED_GLOBALS = _numpy_globals()


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle named a global outside the allow-list (possibly an attempt to run code)."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays, dicts, lists and scalars, and nothing else.

    Every global a pickle names goes through ``find_class`` (extension codes too), so
    refusing all but a few numpy constructors there means a malicious file can neither
    import a module nor call ``os.system``, ``eval`` or the like.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedGlobal(f"refused global {module}.{name}") from None


def load_pickle(path: Path) -> Any:
    """Unpickle a CIFAR batch file safely (``encoding='bytes'``, as the files need)."""
    try:
        with path.open("rb") as f:
            return RestrictedUnpickler(f, encoding="bytes").load()
    except RefusedGlobal as err:
        raise DataError(
            f"{path} is not a plain CIFAR-10 batch ({err}); refusing to load it.",
            "Use the original cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html.",
        ) from None
    except Exception as err:  # truncated or garbage files raise many different types
        raise DataError(
            f"cannot read CIFAR-10 batch {path}: {type(err).__name__}: {err}.",
            "The file is corrupt; download cifar-10-python.tar.gz again.",
        ) from None


def _field(batch: Any, key: bytes, path: Path) -> Any:
    if not isinstance(batch, dict) or key not in batch:
        raise DataError(f"{path} has no {key.decode()!r} entry.", "The file is not a CIFAR-10 batch.")
    return batch[key]


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N, 3, 32, 32] and labels int64 [N] of one batch file."""
    batch = load_pickle(path)
    data, labels = _field(batch, b"data", path), _field(batch, b"labels", path)
    not_cifar = "The file is not a CIFAR-10 batch."
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: 'data' must be a uint8 array [N, 3072].", not_cifar)
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise DataError(f"{path}: 'labels' must be a list of integers.", not_cifar) from None
    if labels.shape != (len(data),):
        raise DataError(f"{path}: {labels.size} labels for {len(data)} images.", "The file is corrupt.")
    return data.reshape(-1, 3, 32, 32), labels


def find_batches_dir(path: Path) -> Path:
    """``path`` itself or its ``cifar-10-batches-py`` subdirectory, whichever holds the batches."""
    if (path / BATCHES_DIR).is_dir() and not (path / META_FILE).exists():
        return path / BATCHES_DIR
    return path


def _require_file(root: Path, filename: str) -> Path:
    if not (root / filename).is_file():
        raise DataError(
            f"missing CIFAR-10 file {filename} in {root}; expected the cifar-10-batches-py directory.",
            path_fix(NAME),
        )
    return root / filename


def cifar10(path: Path | None, split: str) -> ArrayImageDataset:
    """Registry factory for ``cifar10``: 3x32x32 images, splits train (50k) and test (10k)."""
    root = find_batches_dir(require_dir(path, NAME))
    filenames = SPLIT_FILES[require_split(split, tuple(SPLIT_FILES), NAME)]
    files = [_require_file(root, f) for f in (META_FILE, *filenames)]
    names = _field(load_pickle(files[0]), b"label_names", files[0])
    class_names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    batches = [read_batch(f) for f in files[1:]]
    images = np.concatenate([b[0] for b in batches]) if len(batches) > 1 else batches[0][0]
    labels = np.concatenate([b[1] for b in batches])
    check_labels(labels, len(class_names), root)
    info = DatasetInfo(
        name=NAME,
        split=split,
        num_classes=len(class_names),
        class_names=class_names,
        image_size=(32, 32),
        channels=3,
        source=str(root),
    )
    return ArrayImageDataset(images, labels, info)
