"""The training data pipeline (timm transforms on full-resolution images, per-item seeding,
workers) and the data items of issue 14 (channel conversion, spec fitted to a folder, paths)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from typer.testing import CliRunner

from certkit.cli.main import build_app
from certkit.data import with_channels
from certkit.data.base import luminance
from certkit.data.folders import image_folder
from certkit.data.training import TrainingImages, label_fraction_indices
from certkit.data.transforms import TrainAugmentation, _posterize_any_bits, train_transform
from certkit.errors import DataError
from certkit.training.distributed import DistContext
from certkit.training.settings import TrainSettings
from certkit.training.trainer import _loader
from tests_support import snapshot

W, H = 500, 375
MEAN = (0.485, 0.456, 0.406)


def invoke(*args: str):
    return CliRunner().invoke(build_app(), list(args), env={"COLUMNS": "200"})


def coordinate_image() -> Image.Image:
    """R encodes x, G encodes y (0..255 across the image), so a crop shows where it came from."""
    x = np.linspace(0, 255, W)[None, :].repeat(H, 0)
    y = np.linspace(0, 255, H)[:, None].repeat(W, 1)
    return Image.fromarray(np.stack([x, y, np.zeros_like(x)], -1).round().astype(np.uint8), "RGB")


def crop_area_fraction(crop: torch.Tensor) -> float:
    """Area of the source box a 224x224 crop of :func:`coordinate_image` came from, over W x H."""
    red, green = crop[0].float(), crop[1].float()
    width = (red[:, -8:].mean() - red[:, :8].mean()).abs() / 255 * W * 224 / 216  # edge strips are 8 px in from the borders
    height = (green[-8:, :].mean() - green[:8, :].mean()).abs() / 255 * H * 224 / 216
    return float(width * height) / (W * H)


def _timm_rrc_fractions(scale: tuple[float, float]) -> np.ndarray:
    import random

    from timm.data.transforms import RandomResizedCropAndInterpolation

    crop, image, state = RandomResizedCropAndInterpolation(224, scale=scale), Image.new("RGB", (W, H)), random.getstate()
    random.seed(12345)
    try:
        boxes = [crop.get_params(image, crop.scale, crop.ratio) for _ in range(20_000)]
    finally:
        random.setstate(state)
    return np.array([h * w / (W * H) for _, _, h, w in boxes])


class OneImage:
    """A minimal dataset: the same full-resolution PIL image at every index."""

    info = None

    def __init__(self, image: Image.Image, count: int) -> None:
        self.image, self.count = image, count

    def __len__(self) -> int:
        return self.count

    def pil_image(self, i: int):
        return self.image, 0


def test_training_crops_span_the_recipe_scale_range_and_change_every_epoch():
    scale = (0.08, 1.0)  # dmae-finetune-vit-b's crop_scale (timm's default)
    transform = train_transform(TrainAugmentation(crop_scale=scale, hflip=0.5), (224, 224), 3, MEAN)
    data = TrainingImages(OneImage(coordinate_image(), 400), transform, seed=0)
    crops = [data[(0, i)][0] for i in range(400)]
    assert all(c.shape == (3, 224, 224) and c.dtype == torch.uint8 for c in crops)
    fractions = np.array([crop_area_fraction(c) for c in crops])
    assert fractions.min() > scale[0] * 0.9 and fractions.max() < scale[1] * 1.02  # inside the range
    assert fractions.min() < 0.12 and fractions.max() > 0.85  # and spanning it
    # The distribution of RandomResizedCrop's boxes on a 500x375 image (timm's own sampler, run
    # 20,000 times): an image resized or centre-cropped first would give other fractions.
    reference = _timm_rrc_fractions(scale)
    for q in (0.1, 0.5, 0.9):
        assert abs(np.quantile(fractions, q) - np.quantile(reference, q)) < 0.06, q
    # Deterministic per (seed, epoch, index), different from one epoch to the next.
    assert torch.equal(data[(0, 5)][0], crops[5])
    assert sum(not torch.equal(data[(1, i)][0], crops[i]) for i in range(20)) == 20


def test_rand_augment_runs_with_any_magnitude_and_posterize_zero_bits_is_black():
    image = coordinate_image()
    assert np.asarray(_posterize_any_bits(image, 0)).max() == 0  # what the reference's Pillow returned
    transform = train_transform(TrainAugmentation(crop_scale=(0.08, 1.0), hflip=0.5, rand_augment="rand-m10-n4-inc1"), (224, 224), 3, MEAN)
    data = TrainingImages(OneImage(image, 60), transform, seed=1)
    assert all(data[(0, i)][0].shape == (3, 224, 224) for i in range(60))


def test_loader_batches_do_not_depend_on_the_number_of_workers(tmp_path):
    folder = tmp_path / "train"
    rng = np.random.default_rng(0)
    for i in range(24):  # mixed sizes: the train split is cropped, never required to share one size
        size = (40 + 8 * (i % 3), 30 + 4 * (i % 2))
        (folder / f"c{i % 3}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"c{i % 3}" / f"{i}.png")
    source = image_folder(tmp_path, "train")
    transform = train_transform(TrainAugmentation(crop_scale=(0.2, 1.0), hflip=0.5), (32, 32), 3, MEAN)
    batches = {}
    for workers in (0, 1):
        settings = TrainSettings(out_dir=tmp_path / "unused", epochs=1, batch_size=8, num_workers=workers, seed=3)
        loader, sampler = _loader(TrainingImages(source, transform, seed=3), settings, DistContext(), torch.device("cpu"))
        sampler.set_epoch(1)
        batches[workers] = [images for images, _ in loader]
    assert len(batches[0]) == 3 and all(b.shape == (8, 3, 32, 32) for b in batches[0])
    for a, b in zip(batches[0], batches[1]):
        assert torch.equal(a, b)


def test_label_fraction_is_class_balanced():
    labels = [0] * 50 + [1] * 30 + [2] * 20
    chosen = label_fraction_indices(labels, 0.1)
    assert [labels[i] for i in chosen] == [0] * 5 + [1] * 3 + [2] * 2
    assert chosen[:5] == list(range(5))  # the first images of each class, in dataset order
    with pytest.raises(DataError, match="label fraction must be in"):
        label_fraction_indices(labels, 0)


# --- issue 14: channels, folders, paths --------------------------------------------------


def _folder(root, mode: str, size=(28, 28), classes=2, per_class=3):
    rng = np.random.default_rng(1)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels, "RGB").convert(mode).save(root / f"class{c}" / f"{i}.png")
    return root


def test_greyscale_pngs_certify_with_the_one_channel_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _folder(tmp_path / "grey", "L")
    result = invoke("certify", "--data", "grey", "--n", "100", "--max", "2", "--out", "g.tsv")
    assert result.exit_code == 0, result.output
    assert "certified 2 images" in result.output


def test_rgb_is_converted_to_grey_as_pil_does_and_other_counts_are_refused(tmp_path):
    _folder(tmp_path / "rgb", "RGB")
    rgb = image_folder(tmp_path / "rgb", "test")
    grey = with_channels(rgb, 1)
    image, _ = grey[0]
    expected = np.asarray(Image.open(rgb.samples[0][0]).convert("L"), dtype=np.float32) / 255
    assert image.shape == (1, 28, 28) and torch.equal(image[0], torch.from_numpy(expected))
    assert torch.equal(luminance(rgb[0][0]), image)  # the tensor path (for in-memory datasets) agrees to the bit
    with pytest.raises(DataError, match="expects 2-channel images"):
        with_channels(rgb, 2)


def test_training_on_a_folder_fits_size_channels_and_classes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _folder(tmp_path / "pics", "RGB", size=(20, 20), classes=3, per_class=6)
    result = invoke("finetune", "--data", "pics", "--sigma", "0.25", "--model", "vit-mini", "--epochs", "1", "--batch", "6", "--eval-every", "0", "--out-dir", "run")
    assert result.exit_code == 0, result.output
    with safe_open("run/weights.safetensors", "pt") as handle:
        spec = json.loads(handle.metadata()["input_spec"])
    assert (spec["image_size"], spec["channels"], spec["num_classes"], spec["class_names"]) == ([20, 20], 3, 3, ["class0", "class1", "class2"])
    # A preset still wins over the folder (the gaussian plugin's -M spec=cifar10: 32 px, 10 classes).
    preset = invoke("finetune", "--data", "pics", "--sigma", "0.25", "--model", "cnn-mini", "-M", "spec=cifar10", "--epochs", "1", "--batch", "6", "--eval-every", "0", "--drop-path", "0", "--print-config")
    assert preset.exit_code == 0 and "3x32x32, 10 classes" in preset.output


def test_unreadable_training_image_is_named_and_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _folder(tmp_path / "pics", "RGB")
    (tmp_path / "pics/class1/broken.png").write_bytes(b"not a png at all")
    before = snapshot(tmp_path)
    result = invoke("finetune", "--data", "pics", "--sigma", "0.25", "--epochs", "1", "--batch", "2", "--out-dir", "run")
    assert result.exit_code == 2 and "cannot read image" in result.stderr and "broken.png" in result.stderr
    assert snapshot(tmp_path) == before and not (tmp_path / "run").exists()


def test_paths_that_do_not_exist_and_the_default_fashion_mnist_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing = invoke("certify", "--data", "./nodir")
    assert missing.exit_code == 2 and "directory ./nodir does not exist" in missing.stderr
    unset = invoke("certify", "--data", "fashion-mnist")  # no machine's path as a default
    assert unset.exit_code == 2 and "needs a path and none is set" in unset.stderr and "datasets.fashion-mnist.path" in unset.stderr
    negative = invoke("finetune", "--sigma", "0.25", "--workers", "-1")
    assert negative.exit_code == 2 and "--workers must be >= 0, got -1" in negative.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_validation_subset_avoids_the_images_a_skip_run_certifies():
    from certkit.data import select_indices
    from certkit.training.evaluation import subset_indices

    assert set(subset_indices(1000, 200)).isdisjoint(select_indices(1000, 5))  # the miniature's --skip 5
    assert set(subset_indices(50_000, 1000)).isdisjoint(select_indices(50_000, 50))  # DMAE's every 50th ImageNet image
    assert len(subset_indices(1000, 200)) == 200 and len(subset_indices(30, 200)) == 30
