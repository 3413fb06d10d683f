"""Datasets: the shipped subset, each file format, the subset rule, and every user error."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from certkit.data import BUILTIN_DATASETS, DatasetEntry, DatasetInfo, ImageDataset, select_indices
from certkit.data.cifar10 import RestrictedUnpickler
from certkit.data.embedded import EMBEDDED_DIR
from certkit.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


def load(name: str, path: Path | None, split: str) -> ImageDataset:
    return BUILTIN_DATASETS[name].factory(path, split)


def _tool():
    """tools/make_embedded_dataset.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("make_embedded_dataset", ROOT / "tools" / "make_embedded_dataset.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


tool = _tool()


# --- registry ---------------------------------------------------------------------------


def test_builtin_registry_names_and_flags():
    assert set(BUILTIN_DATASETS) == {"fashion-mnist-mini", "fashion-mnist", "cifar10", "image-folder", "imagenet"}
    assert all(isinstance(e, DatasetEntry) for e in BUILTIN_DATASETS.values())
    assert [n for n, e in BUILTIN_DATASETS.items() if not e.needs_path] == ["fashion-mnist-mini"]
    assert BUILTIN_DATASETS["imagenet"].default_split == "val"
    assert BUILTIN_DATASETS["fashion-mnist-mini"].default_split == "test"


# --- embedded fashion-mnist-mini ---------------------------------------------------------

# sha256 of the decompressed shipped files, as printed by tools/make_embedded_dataset.py
SHIPPED_CONTENT_SHA256 = {
    "t10k-images-idx3-ubyte.gz": "7cee33c3c6414b1b86c25e665a6c4f41584269de3b7cc9768b1d351922845eef",
    "t10k-labels-idx1-ubyte.gz": "3128d790775889812b73c4f13923559c8b9e281d112c6ea7862acf60a206a909",
    "train-images-idx3-ubyte.gz": "cf313073c7eb485392848071d5c433571d7166043e971e3345b095cc30518084",
    "train-labels-idx1-ubyte.gz": "097b93fbcf9bd5bc648b1a457ddc55c9e4ab49afb33f9ecae8ce068399a75e3a",
}


def test_shipped_files_are_the_recorded_ones():
    for filename, digest in SHIPPED_CONTENT_SHA256.items():
        content = gzip.decompress((EMBEDDED_DIR / filename).read_bytes())
        assert hashlib.sha256(content).hexdigest() == digest, filename
    notice = (EMBEDDED_DIR / "NOTICE").read_text()
    assert "Zalando SE" in notice and "Permission is hereby granted" in notice
    total = sum(p.stat().st_size for p in EMBEDDED_DIR.iterdir())
    assert total < 3.5e6


def test_embedded_test_split():
    ds = load("fashion-mnist-mini", None, "test")
    assert len(ds) == 1000
    assert ds.info == DatasetInfo(
        name="fashion-mnist-mini",
        split="test",
        num_classes=10,
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        image_size=(28, 28),
        channels=1,
        source="embedded",
    )  # fmt: skip
    labels = [ds[i][1] for i in range(len(ds))]
    assert np.bincount(labels).tolist() == [100] * 10
    image, label = ds[0]
    assert image.dtype == torch.float32 and image.shape == (1, 28, 28)
    assert 0.0 <= image.min() and image.max() <= 1.0 and image.max() > 0.5
    # t10k image 0 is an ankle boot (label 9) whose pixels sum to 33456 in the original file
    assert label == 9 and isinstance(label, int)
    assert round(float(image.sum()) * 255) == 33456


def test_embedded_train_split():
    ds = load("fashion-mnist-mini", None, "train")
    assert len(ds) == 6000
    assert np.bincount(ds.labels).tolist() == [600] * 10
    image, label = ds[5999]
    assert image.shape == (1, 28, 28) and 0 <= label < 10


def test_embedded_refuses_path_and_unknown_split(tmp_path):
    with pytest.raises(DataError, match="takes no data path"):
        load("fashion-mnist-mini", tmp_path, "test")
    with pytest.raises(DataError, match="Known splits: train, test"):
        load("fashion-mnist-mini", None, "val")


# --- tools/make_embedded_dataset.py ------------------------------------------------------


def _write_idx_dir(root: Path, images: dict[str, np.ndarray], labels: dict[str, np.ndarray], gz: bool = True):
    root.mkdir(parents=True, exist_ok=True)
    for prefix in images:
        for kind, array in (("images-idx3", images[prefix]), ("labels-idx1", labels[prefix])):
            payload = tool.encode_idx(array)
            name = f"{prefix}-{kind}-ubyte"
            if gz:
                (root / f"{name}.gz").write_bytes(gzip.compress(payload))
            else:
                (root / name).write_bytes(payload)
    return root


def _fake_fmnist(root: Path, n: int = 30, gz: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) * 7 % 10).astype(np.uint8)
    _write_idx_dir(root, {"train": images, "t10k": images[:20]}, {"train": labels, "t10k": labels[:20]}, gz)
    return images, labels


def test_first_per_class_keeps_original_order():
    labels = np.array([3, 1, 3, 0, 1, 1, 0, 3, 2, 2])
    assert tool.first_per_class(labels, 2, 4).tolist() == [0, 1, 2, 3, 4, 6, 8, 9]


def test_tool_builds_reproducible_files(tmp_path):
    images, labels = _fake_fmnist(tmp_path / "src")
    chosen = tool.build(tmp_path / "src", tmp_path / "a", per_class={"train": 2, "test": 1})
    tool.build(tmp_path / "src", tmp_path / "b", per_class={"train": 2, "test": 1})
    for f in (tmp_path / "a").iterdir():
        assert f.read_bytes() == (tmp_path / "b" / f.name).read_bytes()
    ds = load("fashion-mnist", tmp_path / "a", "train")
    assert len(ds) == 20
    assert ds[0][1] == labels[chosen["train"][0]]
    assert torch.equal(ds[3][0][0], torch.from_numpy(images[chosen["train"][3]]).float() / 255)


# --- fashion-mnist (IDX) -----------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_reads_gz_and_raw(tmp_path, gz):
    images, labels = _fake_fmnist(tmp_path, gz=gz)
    ds = load("fashion-mnist", tmp_path, "train")
    assert len(ds) == 30 and ds.info.source == str(tmp_path) and ds.info.channels == 1
    image, label = ds[4]
    assert label == labels[4]
    assert torch.equal(image, torch.from_numpy(images[4]).float().div(255)[None])
    assert len(load("fashion-mnist", tmp_path, "test")) == 20


def test_fashion_mnist_missing_file_is_named(tmp_path):
    _fake_fmnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte") as err:
        load("fashion-mnist", tmp_path, "test")
    assert str(tmp_path) in str(err.value)


def test_idx_wrong_magic_and_truncated(tmp_path):
    _fake_fmnist(tmp_path)
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\x00\x00\x0d\x03" + bytes(100)))
    with pytest.raises(DataError, match="not an unsigned-byte IDX file") as err:
        load("fashion-mnist", tmp_path, "train")
    assert str(bad) in str(err.value)
    bad.write_bytes(gzip.compress(tool.encode_idx(np.zeros((30, 28, 28), np.uint8))[:-5]))
    with pytest.raises(DataError, match="truncated") as err:
        load("fashion-mnist", tmp_path, "train")
    assert str(bad) in str(err.value)
    bad.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DataError, match="cannot read IDX file"):
        load("fashion-mnist", tmp_path, "train")


def test_idx_label_out_of_range(tmp_path):
    images = np.zeros((2, 28, 28), np.uint8)
    _write_idx_dir(tmp_path, {"t10k": images}, {"t10k": np.array([1, 10], np.uint8)})
    with pytest.raises(DataError, match=r"0\.\.9"):
        load("fashion-mnist", tmp_path, "test")


@pytest.mark.parametrize("name", ["fashion-mnist", "cifar10", "image-folder", "imagenet"])
def test_path_errors(tmp_path, name):
    missing = tmp_path / "nope"
    with pytest.raises(DataError) as err:
        load(name, missing, BUILTIN_DATASETS[name].default_split)
    assert str(err.value) == (
        f"data path {missing} does not exist. Set datasets.{name}.path in certkit.yaml or pass --data-path."
    )
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(DataError, match="is a file, not a directory") as err:
        load(name, a_file, BUILTIN_DATASETS[name].default_split)
    assert str(a_file) in str(err.value)
    with pytest.raises(DataError, match="needs a data path"):
        load(name, None, BUILTIN_DATASETS[name].default_split)


# --- select_indices ----------------------------------------------------------------------


def test_select_indices():
    assert select_indices(5) == [0, 1, 2, 3, 4]
    assert select_indices(10, skip=3) == [0, 3, 6, 9]
    assert select_indices(10, skip=3, max_items=2) == [0, 3]
    assert select_indices(10, max_items=100) == list(range(10))
    assert select_indices(50000, skip=50) == list(range(0, 50000, 50))
    assert select_indices(0, skip=2) == []
    assert select_indices(10, skip=np.int64(4), max_items=np.int32(2)) == [0, 4]  # from numpy/config
    for bad in ({"skip": 0}, {"skip": -1}, {"max_items": 0}, {"skip": 1.5}, {"skip": True}, {"max_items": "3"}):
        with pytest.raises(DataError):
            select_indices(10, **bad)


# --- cifar10 -----------------------------------------------------------------------------

class _Py2Pickler(pickle._Pickler):
    """Writes what Python 2 wrote for the original CIFAR files: str opcodes for byte strings,
    numpy's pre-2.0 module name for ``_reconstruct``."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj: bytes) -> None:
        self.write(pickle.BINSTRING + len(obj).to_bytes(4, "little") + obj)
        self.memoize(obj)

    def save_str(self, obj: str) -> None:
        self.save_bytes(obj.encode("latin1"))

    def save_global(self, obj, name=None) -> None:
        module = "numpy.core.multiarray" if obj.__name__ == "_reconstruct" else obj.__module__
        self.write(pickle.GLOBAL + f"{module}\n{obj.__name__}\n".encode())
        self.memoize(obj)

    dispatch[bytes], dispatch[str] = save_bytes, save_str
    dispatch[type] = dispatch[type(len)] = save_global


def _dumps(obj: object, protocol: int | str) -> bytes:
    if protocol == "py2":
        buffer = io.BytesIO()
        _Py2Pickler(buffer, protocol=2).dump(obj)
        return buffer.getvalue()
    return pickle.dumps(obj, protocol=protocol)


CIFAR_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]


def _fake_cifar(root: Path, per_batch: int = 3, protocol: int | str = "py2") -> Path:
    """A cifar-10-batches-py directory with a few random images per batch."""
    batches = root / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for k, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        batch = {
            b"batch_label": name.encode(),
            b"labels": [(k + i) % 10 for i in range(per_batch)],
            b"data": rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8),
            b"filenames": [f"{i}.png".encode() for i in range(per_batch)],
        }
        (batches / name).write_bytes(_dumps(batch, protocol))
    meta = {b"label_names": CIFAR_NAMES, b"num_vis": 3072, b"num_cases_per_batch": per_batch}
    (batches / "batches.meta").write_bytes(_dumps(meta, protocol))
    return batches


@pytest.mark.parametrize("protocol", ["py2", 2, 4, 5])
def test_cifar10_reads_batches(tmp_path, protocol):
    batches = _fake_cifar(tmp_path, protocol=protocol)
    test = load("cifar10", tmp_path, "test")  # the parent directory is accepted
    assert len(test) == 3 and test.info.source == str(batches)
    assert test.info.class_names[0] == "airplane" and test.info.image_size == (32, 32)
    raw = pickle.loads((batches / "test_batch").read_bytes(), encoding="bytes")
    image, label = test[1]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert label == raw[b"labels"][1]
    # CIFAR rows are 1024 red, then 1024 green, then 1024 blue values, row-major
    assert round(float(image[1, 2, 5]) * 255) == raw[b"data"][1][1024 + 2 * 32 + 5]
    train = load("cifar10", batches, "train")  # so is the batches directory itself
    assert len(train) == 15 and [train[i][1] for i in (0, 3, 14)] == [0, 1, 6]


def test_cifar10_missing_file_and_split(tmp_path):
    batches = _fake_cifar(tmp_path)
    (batches / "data_batch_4").unlink()
    with pytest.raises(DataError, match="data_batch_4") as err:
        load("cifar10", tmp_path, "train")
    assert str(batches) in str(err.value)
    with pytest.raises(DataError, match="Known splits: train, test"):
        load("cifar10", tmp_path, "val")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="batches.meta"):
        load("cifar10", empty, "test")


class _Payload:
    """Unpickling this runs code that creates ``marker``: what a hostile batch file does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def test_cifar10_refuses_malicious_pickle(tmp_path):
    batches = _fake_cifar(tmp_path / "data")
    # the payload is real: plain pickle runs it
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(_Payload(proof)))
    assert proof.exists()
    marker = tmp_path / "pwned"
    evil = {b"data": _Payload(marker), b"labels": [0]}
    (batches / "test_batch").write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(DataError, match=r"refused global (__builtin__|builtins)\.exec") as err:
        load("cifar10", batches, "test")
    assert str(batches / "test_batch") in str(err.value)
    assert not marker.exists()


def test_restricted_unpickler_refuses_os_system(tmp_path):
    import os

    marker = tmp_path / "touched"

    class Shell:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with pytest.raises(pickle.UnpicklingError, match="refused global"):
        RestrictedUnpickler(io.BytesIO(pickle.dumps(Shell())), encoding="bytes").load()
    assert not marker.exists()


def test_cifar10_wrong_content(tmp_path):
    batches = _fake_cifar(tmp_path)
    (batches / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DataError, match=r"uint8 array \[N, 3072\]"):
        load("cifar10", tmp_path, "test")
    (batches / "test_batch").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match="cannot read CIFAR-10 batch"):
        load("cifar10", tmp_path, "test")


# --- image-folder ------------------------------------------------------------------------


def _png(path: Path, size: tuple[int, int] = (6, 4), value: int = 0, mode: str = "RGB") -> np.ndarray:
    """Write a (W, H) = ``size`` image whose pixels encode ``value``; return its RGB array."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    pixels = (np.arange(h * w * 3).reshape(h, w, 3) + value) % 256
    image = Image.fromarray(pixels.astype(np.uint8), "RGB").convert(mode)
    image.save(path)
    return np.array(image.convert("RGB"))


def test_image_folder_reads_classes_sorted(tmp_path):
    expected = _png(tmp_path / "cat" / "b.png", value=7)
    _png(tmp_path / "cat" / "a.png", value=3)
    _png(tmp_path / "ant" / "x.PNG", mode="L")  # grayscale becomes RGB
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    ds = load("image-folder", tmp_path, "test")
    assert ds.info.class_names == ("ant", "cat") and ds.info.num_classes == 2
    assert ds.info.image_size == (4, 6) and ds.info.channels == 3 and len(ds) == 3
    image, label = ds[2]  # cat/b.png: classes sorted, then files sorted
    assert label == 1 and image.shape == (3, 4, 6)
    assert torch.equal(image, torch.from_numpy(expected).permute(2, 0, 1).float() / 255)
    gray, label = ds[0]
    assert label == 0 and torch.equal(gray[0], gray[1])


def test_image_folder_uses_split_subdir(tmp_path):
    _png(tmp_path / "train" / "a" / "1.png")
    _png(tmp_path / "test" / "a" / "1.png")
    _png(tmp_path / "test" / "b" / "1.png")
    ds = load("image-folder", tmp_path, "test")
    assert ds.info.source == str(tmp_path / "test") and ds.info.class_names == ("a", "b")
    with pytest.raises(DataError, match="split 'val' not found") as err:
        load("image-folder", tmp_path, "val")
    assert "test, train" in str(err.value)


def test_image_folder_size_mismatch_names_file(tmp_path):
    _png(tmp_path / "a" / "1.png", size=(6, 4))
    odd = tmp_path / "b" / "2.png"
    _png(odd, size=(5, 4))
    ds = load("image-folder", tmp_path, "test")
    ds[0]
    with pytest.raises(DataError, match="all images must share one size") as err:
        ds[1]
    assert str(odd) in str(err.value)


def test_image_folder_corrupt_image_names_file(tmp_path):
    _png(tmp_path / "a" / "1.png")
    corrupt = tmp_path / "a" / "2.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    ds = load("image-folder", tmp_path, "test")
    with pytest.raises(DataError, match="cannot read image") as err:
        ds[1]
    assert str(corrupt) in str(err.value)


def test_image_folder_layout_errors(tmp_path):
    with pytest.raises(DataError, match="no class subdirectories") as err:
        load("image-folder", tmp_path, "test")
    assert str(tmp_path) in str(err.value) and "root/<class>/<image>.png" in str(err.value)
    _png(tmp_path / "flat.png")
    with pytest.raises(DataError, match="images lie directly in"):
        load("image-folder", tmp_path, "test")
    (tmp_path / "a").mkdir()
    with pytest.raises(DataError, match="no images found") as err:
        load("image-folder", tmp_path, "test")
    assert str(tmp_path) in str(err.value)


# --- imagenet ----------------------------------------------------------------------------


def test_imagenet_resize_and_center_crop(tmp_path):
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, size=(300, 400, 3), dtype=np.uint8)  # H=300, W=400
    Image.fromarray(pixels).save(_mk(tmp_path / "val" / "n01440764") / "a.png")
    Image.fromarray(pixels[:, ::-1].copy()).save(_mk(tmp_path / "val" / "n01443537") / "b.JPEG", quality=95)
    ds = load("imagenet", tmp_path, "val")
    assert ds.info.image_size == (224, 224) and ds.info.class_names == ("n01440764", "n01443537")
    image, label = ds[0]
    assert image.shape == (3, 224, 224) and image.dtype == torch.float32 and label == 0
    # shorter side to 256 with bicubic filtering (DMAE's eval transform), then the central 224x224
    resized = np.asarray(Image.fromarray(pixels).resize((341, 256), Image.BICUBIC))
    top, left = 16, round((341 - 224) / 2)  # torchvision rounds half to even: 58
    crop = resized[top : top + 224, left : left + 224]
    assert torch.equal(image, torch.from_numpy(crop.copy()).permute(2, 0, 1).float() / 255)
    assert ds[1][0].shape == (3, 224, 224) and ds[1][1] == 1
    direct = load("imagenet", tmp_path / "val", "val")  # path at the split directory itself
    assert len(direct) == 2


def test_imagenet_flat_val_explains_layout(tmp_path):
    _png(tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(DataError, match="images lie directly in") as err:
        load("imagenet", tmp_path, "val")
    assert str(tmp_path / "val") in str(err.value) and "wnid" in str(err.value)


def _mk(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
