"""Build the ``fashion-mnist-mini`` dataset shipped in ``certkit/data/embedded/``.

certkit must run offline, so a small real dataset travels inside the package. This script
is how those files were made, so anyone can check or rebuild them:

    python tools/make_embedded_dataset.py /usr/share/datasets/fashion-mnist

Selection (deterministic): for each class, the first 600 images of the train set and the
first 100 images of the t10k set, kept in their original relative order (6000 + 1000
images). Output keeps the original IDX format, gzipped with mtime 0 and no file name in
the header, so the files are byte-reproducible for a given zlib and one reader serves both
the full and the mini dataset. Only the standard library and numpy are needed.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import sys
from pathlib import Path

import numpy as np

TRAIN_PER_CLASS = 600
TEST_PER_CLASS = 100
NUM_CLASSES = 10
SPLITS = {"train": ("train", TRAIN_PER_CLASS), "test": ("t10k", TEST_PER_CLASS)}
IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzipped or not); small on purpose, independent of certkit."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    magic = int.from_bytes(raw[:4], "big")
    ndim = magic & 0xFF
    shape = tuple(int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if magic not in (IMAGES_MAGIC, LABELS_MAGIC) or data.size != int(np.prod(shape)):
        raise SystemExit(f"{path}: not an unsigned-byte IDX file of shape {shape}")
    return data.reshape(shape)


def encode_idx(array: np.ndarray) -> bytes:
    """IDX bytes for a uint8 array: magic, big-endian dimensions, then the data."""
    header = (0x0800 | array.ndim).to_bytes(4, "big")
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def first_per_class(labels: np.ndarray, per_class: int, num_classes: int) -> np.ndarray:
    """Indices of the first ``per_class`` items of each class, in original order."""
    chosen = [np.flatnonzero(labels == c)[:per_class] for c in range(num_classes)]
    for c, idx in enumerate(chosen):
        if len(idx) < per_class:
            raise SystemExit(f"class {c} has only {len(idx)} images, need {per_class}")
    return np.sort(np.concatenate(chosen))


def write_gz(path: Path, payload: bytes) -> None:
    """gzip with mtime 0 and no name in the header so the output is reproducible."""
    path.write_bytes(gzip.compress(payload, compresslevel=9, mtime=0))


def find(source: Path, stem: str) -> Path:
    """The IDX file ``stem`` in ``source``, gzipped or not."""
    for candidate in (source / f"{stem}.gz", source / stem):
        if candidate.is_file():
            return candidate
    raise SystemExit(f"{source}: missing {stem}(.gz)")


def build(
    source: Path,
    out: Path,
    per_class: dict[str, int] | None = None,
    num_classes: int = NUM_CLASSES,
) -> dict[str, np.ndarray]:
    """Write the subset files into ``out``; return the chosen source indices per split."""
    out.mkdir(parents=True, exist_ok=True)
    chosen: dict[str, np.ndarray] = {}
    for split, (prefix, default_count) in SPLITS.items():
        count = (per_class or {}).get(split, default_count)
        images = read_idx(find(source, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(find(source, f"{prefix}-labels-idx1-ubyte"))
        idx = first_per_class(labels, count, num_classes)
        write_gz(out / f"{prefix}-images-idx3-ubyte.gz", encode_idx(images[idx]))
        write_gz(out / f"{prefix}-labels-idx1-ubyte.gz", encode_idx(labels[idx]))
        chosen[split] = idx
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="directory with the 4 Fashion-MNIST IDX files")
    default_out = Path(__file__).resolve().parents[1] / "certkit" / "data" / "embedded"
    parser.add_argument("--out", type=Path, default=default_out)
    args = parser.parse_args(argv)
    chosen = build(args.source, args.out)
    for split, idx in chosen.items():
        print(f"{split}: {len(idx)} images, source indices {idx[0]}..{idx[-1]}")
    for path in sorted(args.out.glob("*.gz")):
        digest = hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()
        print(f"{path.name}: {path.stat().st_size} bytes, content sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
