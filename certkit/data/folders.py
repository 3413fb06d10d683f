"""Image folders: ``root/<class>/<image>`` (optionally under ``root/<split>/``), and ImageNet.

Classes are the sorted subdirectory names, as in torchvision's ImageFolder, so label
indices agree with models trained on it. Images are found directly inside each class
directory (not recursively): a stray ``train/`` and ``val/`` then reads as a split layout
instead of as two classes. Images are read lazily; a corrupt one is reported by name when
it is read.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image

from certkit.data.base import DatasetInfo, ImageDataset, path_fix, require_dir
from certkit.data.transforms import MODES
from certkit.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
Transform = Callable[[Image.Image], torch.Tensor]


def _subdirs(path: Path) -> list[Path]:
    """Visible subdirectories, sorted (hidden ones such as .ipynb_checkpoints are not classes)."""
    with os.scandir(path) as entries:
        return sorted(Path(e.path) for e in entries if e.is_dir() and not e.name.startswith("."))


def _is_image(entry: os.DirEntry[str]) -> bool:
    return entry.is_file() and not entry.name.startswith(".") and entry.name.lower().endswith(IMAGE_EXTENSIONS)


def _images(path: Path) -> list[Path]:
    with os.scandir(path) as entries:
        return sorted(Path(e.path) for e in entries if _is_image(e))


def _has_images(path: Path) -> bool:
    with os.scandir(path) as entries:
        return any(_is_image(e) for e in entries)


#: PIL modes read as one channel; everything else (RGB, RGBA, P, CMYK, ...) is read as three.
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F", "La")


def open_image(path: Path, mode: str = "RGB") -> Image.Image:
    """The decoded image at ``path`` in ``mode`` ("L" or "RGB"), or a DataError naming the file."""
    try:
        with Image.open(path) as image:
            return image.convert(mode)  # convert() decodes, so truncation shows up here
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot read image {path}: {err}.", "Remove or replace the file.") from None


def channels_of(path: Path) -> int:
    """1 for a greyscale file, 3 otherwise, from the header."""
    try:
        with Image.open(path) as image:
            return 1 if image.mode in GREY_MODES else 3
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot read image {path}: {err}.", "Remove or replace the file.") from None


def image_size_of(path: Path) -> tuple[int, int]:
    """(H, W) of the image at ``path`` from its header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot read image {path}: {err}.", "Remove or replace the file.") from None
    return height, width


def split_root(root: Path, split: str, layout: str) -> Path:
    """``root/<split>`` if it exists; else ``root`` when it holds class folders directly."""
    if (root / split).is_dir():
        return root / split
    subdirs = _subdirs(root)
    # root/<other split>/<class>/...: subdirectories hold folders, not images
    split_dirs = [d.name for d in subdirs if _subdirs(d) and not _has_images(d)]
    if split_dirs and len(split_dirs) == len(subdirs):
        raise DataError(
            f"split {split!r} not found in {root} (it has {', '.join(split_dirs)}).",
            f"Choose one of: {', '.join(split_dirs)}; expected layout {layout}.",
        )
    return root


class ImageFolderDataset(ImageDataset):
    """Images under ``root/<class>/``; labels are indices into the sorted class names.

    Without a ``transform`` images keep their size, which must be the same for all of
    them (a model takes one input size); the first image sets it. Images are read with
    ``channels`` channels (default 3: greyscale files are converted to RGB); certify and
    training read them in the model's channel count (:meth:`with_channels`), and training on
    a folder fits a model to its first image's (:meth:`native_channels`). Training reads them through :meth:`pil_image`, at their own size
    whatever ``transform`` does (the training transform crops them).
    """

    def __init__(
        self,
        path: Path | None,
        split: str,
        name: str,
        layout: str,
        transform: Transform | None = None,
        output_size: tuple[int, int] | None = None,
        fix: str | None = None,
        channels: int | None = None,
    ) -> None:
        root = split_root(require_dir(path, name), split, layout)
        fix = fix or f"Expected layout {layout}. {path_fix(name)}"
        class_dirs = _subdirs(root)
        if not class_dirs:
            found = "images lie directly in" if _has_images(root) else "no class subdirectories in"
            raise DataError(f"{found} {root}.", fix)
        self.samples = [(p, label) for label, d in enumerate(class_dirs) for p in _images(d)]
        if not self.samples:
            raise DataError(f"no images found under {root} (extensions {', '.join(IMAGE_EXTENSIONS)}).", fix)
        self.transform = transform
        if output_size is None:
            output_size = image_size_of(self.samples[0][0])
        self.info = DatasetInfo(
            name=name,
            split=split,
            num_classes=len(class_dirs),
            class_names=tuple(d.name for d in class_dirs),
            image_size=output_size,
            channels=3 if channels is None else channels,
            source=str(root),
        )

    @property
    def mode(self) -> str:
        return MODES[self.info.channels]

    def with_channels(self, channels: int) -> ImageFolderDataset:
        """The same folder read as ``channels`` channels (L <-> RGB, converted by PIL)."""
        if channels not in MODES:
            raise DataError(
                f"the model expects {channels}-channel images; image files are read as 1 (L) or 3 (RGB) channels ({self.info.source}).",
                "Use a model for 1- or 3-channel input.",
            )
        converted = copy.copy(self)
        converted.info = replace(self.info, channels=channels)
        return converted

    def native_channels(self) -> int:
        """1 when the first image is greyscale, else 3."""
        return channels_of(self.samples[0][0])

    def pil_image(self, i: int) -> tuple[Image.Image, int]:
        """Item ``i`` decoded at its own size, in this dataset's mode (for training transforms)."""
        path, label = self.samples[i]
        return open_image(path, self.mode), label

    def labels_list(self) -> list[int]:
        return [label for _, label in self.samples]

    def check_header(self, i: int) -> None:
        """Refuse (naming the file) an image whose header PIL cannot read."""
        image_size_of(self.samples[i][0])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        image = open_image(path, self.mode)
        if self.transform is not None:
            return self.transform(image), label
        if (image.height, image.width) != self.info.image_size:
            first = self.samples[0][0]
            raise DataError(
                f"image {path} is {image.height}x{image.width} (HxW) but {first} is "
                f"{self.info.image_size[0]}x{self.info.image_size[1]}; all images must share one size.",
                "Resize the images to one size, or use the imagenet dataset, which resizes and crops.",
            )
        from torchvision.transforms.functional import pil_to_tensor  # here: torchvision takes ~1.5 s to import

        return pil_to_tensor(image).to(torch.float32).div(255), label


def image_folder(path: Path | None, split: str) -> ImageFolderDataset:
    """Registry factory for ``image-folder``: images as they are, no resizing."""
    layout = "root/<class>/<image>.png or root/<split>/<class>/<image>.png"
    return ImageFolderDataset(path, split, "image-folder", layout)


def imagenet_transform() -> Transform:
    """ImageNet evaluation preprocessing of DMAE (``util/datasets.py``: Resize(int(224 / 0.875)
    = 256, bicubic), central 224x224 crop) as a [0, 1] tensor; normalization is the model's job.
    Built on use: importing torchvision (with torch._dynamo) takes ~1.5 s that `certkit certify`
    on other data should not wait for."""
    from torchvision import transforms

    return transforms.Compose(
        [transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC), transforms.CenterCrop(224), transforms.ToTensor()]
    )


def imagenet(path: Path | None, split: str) -> ImageFolderDataset:
    """Registry factory for ``imagenet``: ``path/<split>/<wnid>/*.JPEG`` or ``path`` = the split dir."""
    layout = "root/<split>/<wnid>/<image>.JPEG"
    fix = (
        f"Expected layout {layout}; sort the flat validation set into wnid folders "
        f"(e.g. with valprep.sh). {path_fix('imagenet')}"
    )
    return ImageFolderDataset(
        path, split, "imagenet", layout, imagenet_transform(), output_size=(224, 224), fix=fix, channels=3
    )
