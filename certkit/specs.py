"""Input-spec presets for weights that do not carry their own (a foreign state dict), chosen with
``--spec NAME`` or ``models.<name>.spec`` in certkit.yaml. A file path (``.json`` or ``.yaml``
holding the fields of :class:`certkit.InputSpec`) describes anything else."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from certkit.errors import ConfigError
from certkit.interfaces import InputSpec

PRESETS: dict[str, InputSpec] = {
    # torchvision's and timm's ImageNet statistics; 224 px, 1000 classes.
    "imagenet": InputSpec(image_size=(224, 224), channels=3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), num_classes=1000),
    # The usual CIFAR-10 statistics (Cohen et al.'s code and most CIFAR training scripts).
    "cifar10": InputSpec(
        image_size=(32, 32), channels=3, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), num_classes=10,
        class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    ),
    # 1x28x28 grey images, 10 classes, MNIST's statistics (torchvision's examples use them).
    "mnist-like": InputSpec(image_size=(28, 28), channels=1, mean=(0.1307,), std=(0.3081,), num_classes=10),
    # The shipped Fashion-MNIST subset's statistics.
    "fashion-mnist": InputSpec(
        image_size=(28, 28), channels=1, mean=(0.2860,), std=(0.3530,), num_classes=10,
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
}

_FIX = f"Use a preset ({', '.join(PRESETS)}) or a .json/.yaml file with image_size, channels, mean, std and num_classes."


def resolve_input_spec(value: str | InputSpec | None) -> InputSpec | None:
    """A preset name, a spec file, an InputSpec, or None."""
    if value is None or isinstance(value, InputSpec):
        return value
    if value in PRESETS:
        return PRESETS[value]
    path = Path(value).expanduser()
    if path.suffix.lower() not in (".json", ".yaml", ".yml"):
        raise ConfigError(f"unknown input spec '{value}'.", _FIX)
    if not path.is_file():
        raise ConfigError(f"input spec file {path} does not exist.", _FIX)
    try:
        data = json.loads(path.read_text()) if path.suffix.lower() == ".json" else yaml.safe_load(path.read_text())
        return InputSpec.from_dict(data)
    except (ValueError, KeyError, TypeError, AttributeError, yaml.YAMLError) as exc:
        raise ConfigError(f"input spec file {path} is not a valid input spec ({type(exc).__name__}: {exc}).", _FIX) from None
