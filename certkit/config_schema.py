"""What certkit's settings are: typed dataclasses with the built-in defaults, per-key rules,
and the check of one layer (a YAML file or the CLI flags) against those rules.

The dataclass defaults *are* the built-in defaults (``Settings()``), so the defaults live in
one place; ``certkit.yaml`` at the repository root repeats them for users and a test keeps the
two equal. :mod:`certkit.config` finds and parses files and merges the layers.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from certkit.errors import ConfigError

DEFAULT_RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0)


@dataclass(frozen=True)
class CertifyDefaults:
    """Defaults for ``certkit certify``; N0, N and alpha follow Cohen et al.'s CERTIFY."""

    model: str = "vit-mini"
    sigma: float = 0.25
    data: str = "fashion-mnist-mini"
    split: str | None = None  # None = the dataset's default split
    certifier: str = "cohen"
    smoother: str = "gaussian"
    engine: str = "auto"  # onnx on a CPU (exported once, cached), torch on CUDA: certkit.auto_engine
    n0: int = 100
    n: int = 10_000
    alpha: float = 0.001
    batch: int | None = None  # None = the engine's default: certkit.engines.default_batch_size
    skip: int = 1
    max: int | None = None  # None = every selected image


@dataclass(frozen=True)
class PredictDefaults:
    """Defaults for ``certkit predict`` (Cohen et al.'s PREDICT)."""

    n: int = 1000
    alpha: float = 0.001


@dataclass(frozen=True)
class ReportDefaults:
    """Defaults for ``certkit report``; a tuple so that frozen settings stay immutable."""

    radii: tuple[float, ...] = DEFAULT_RADII


@dataclass(frozen=True)
class DatasetConfig:
    """One entry of ``datasets``: which registered dataset type reads it, and from where."""

    type: str
    path: Path | None = None  # absolute once loaded (relative paths follow the YAML file)
    split: str | None = None


@dataclass(frozen=True)
class ModelConfig:
    """One entry of ``models``: checkpoints per sigma that override a plugin's shipped ones, and
    the input spec (preset or file) of weights that carry none."""

    checkpoints: dict[float, Path] = field(default_factory=dict)
    spec: str | None = None


def _default_datasets() -> dict[str, DatasetConfig]:
    return {
        # No default path: datasets live where each user put them (a path on one machine would
        # be wrong on every other); the error says how to set it.
        "fashion-mnist": DatasetConfig(type="fashion-mnist"),
        "cifar10": DatasetConfig(type="cifar10"),
        "imagenet": DatasetConfig(type="imagenet"),
    }


@dataclass(frozen=True)
class Settings:
    """The effective settings: built-in defaults < ./certkit.yaml < --config FILE < CLI flags."""

    output_dir: Path = Path("results")
    device: str = "auto"
    seed: int = 0
    certify: CertifyDefaults = field(default_factory=CertifyDefaults)
    predict: PredictDefaults = field(default_factory=PredictDefaults)
    report: ReportDefaults = field(default_factory=ReportDefaults)
    datasets: dict[str, DatasetConfig] = field(default_factory=_default_datasets)
    models: dict[str, ModelConfig] = field(default_factory=dict)


# --- per-key rules -------------------------------------------------------------------------

#: "path" is a string (``~`` expanded, relative ones resolved by the loader); "floats" a list.
LeafKind = Literal["int", "float", "str", "path", "floats"]
Check = Callable[[object], "str | None"]  # returns what is wrong, or None


@dataclass(frozen=True)
class Leaf:
    """How to type-check and value-check one setting, and an example to show in error fixes."""

    kind: LeafKind
    nullable: bool = False
    check: Check | None = None
    example: str = ""
    #: For "path": resolve a relative path against the YAML file's folder (False = keep it
    #: relative, so that it follows the working directory at run time).
    relative_to_file: bool = True


def _positive(value: object) -> str | None:
    return None if value > 0 else f"must be > 0, got {value}"  # type: ignore[operator]


def _at_least_one(value: object) -> str | None:
    return None if value >= 1 else f"must be >= 1, got {value}"  # type: ignore[operator]


def _non_negative(value: object) -> str | None:
    return None if value >= 0 else f"must be >= 0, got {value}"  # type: ignore[operator]


def _probability(value: object) -> str | None:
    return None if 0 < value < 1 else f"must be strictly between 0 and 1, got {value}"  # type: ignore[operator]


def _name(value: object) -> str | None:
    return None if str(value).strip() else "must not be empty"


def _radii(value: object) -> str | None:
    bad = [r for r in value if r < 0]  # type: ignore[attr-defined]
    return f"radii must be >= 0, got {bad[0]}" if bad else None


DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


def _device(value: object) -> str | None:
    ok = DEVICE_PATTERN.fullmatch(str(value))
    return None if ok else f"must be auto, cpu, cuda or cuda:N, got {value!r}"


#: Every fixed key. ``datasets`` and ``models`` hold user-chosen names; see DATASET_FIELDS.
SCHEMA: dict[str, Leaf | dict[str, Leaf]] = {
    "output_dir": Leaf("path", example="results", relative_to_file=False),
    "device": Leaf("str", check=_device, example="cuda:0"),
    "seed": Leaf("int", check=_non_negative, example="0"),
    "certify": {
        "model": Leaf("str", check=_name, example="vit-mini"),
        "sigma": Leaf("float", check=_positive, example="0.25"),
        "data": Leaf("str", check=_name, example="fashion-mnist-mini"),
        "split": Leaf("str", nullable=True, example="test"),
        "certifier": Leaf("str", check=_name, example="cohen"),
        "smoother": Leaf("str", check=_name, example="gaussian"),
        "engine": Leaf("str", check=_name, example="auto"),
        "n0": Leaf("int", check=_at_least_one, example="100"),
        "n": Leaf("int", check=_at_least_one, example="10000"),
        "alpha": Leaf("float", check=_probability, example="0.001"),
        "batch": Leaf("int", nullable=True, check=_at_least_one, example="1000"),
        "skip": Leaf("int", check=_at_least_one, example="1"),
        "max": Leaf("int", nullable=True, check=_at_least_one, example="500"),
    },
    "predict": {
        "n": Leaf("int", check=_at_least_one, example="1000"),
        "alpha": Leaf("float", check=_probability, example="0.001"),
    },
    "report": {
        "radii": Leaf("floats", check=_radii, example="[0.0, 0.5, 1.0]"),
    },
    "datasets": {},  # free-form names -> DATASET_FIELDS
    "models": {},  # free-form names -> MODEL_FIELDS
}

#: ``type: null`` (or leaving it out) means "the registered dataset with the entry's own name".
DATASET_FIELDS: dict[str, Leaf] = {
    "type": Leaf("str", nullable=True, check=_name, example="image-folder"),
    "path": Leaf("path", nullable=True, example="~/data/photos"),
    "split": Leaf("str", nullable=True, example="val"),
}
#: ``models.<name>.checkpoints`` maps sigma -> path; every path follows this rule.
CHECKPOINT_PATH = Leaf("path", example="~/checkpoints/vit-b-0.25.pth")
MODEL_SPEC = Leaf("str", nullable=True, check=_name, example="imagenet")
MODEL_FIELDS: dict[str, Leaf] = {"checkpoints": CHECKPOINT_PATH, "spec": MODEL_SPEC}

TYPE_NAMES: dict[LeafKind, str] = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "path": "a path (string)",
    "floats": "a list of numbers",
}


def is_finite_number(value: object) -> bool:
    """True for int/float that are finite; bool is excluded because YAML's true is an int."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --- reading one layer (a YAML file or the CLI flags) against the rules ---------------------

#: ("certify", "sigma"), ("datasets", name, "path"), ("models", name, "checkpoints", 0.25);
#: ("datasets", name) and ("models", name) alone mark that an entry was declared.
Key = tuple[object, ...]
Leaves = dict[Key, tuple[object, str]]  # key -> (typed value, source)


@dataclass
class Node:
    """A YAML (or CLI) value with the place it was written; lists and mappings hold Nodes."""

    value: object
    source: str  # where the value is: "certkit.yaml:12" or "CLI --sigma"
    key_source: str  # where its key is (differs for a block mapping under its key)


def read_layer(root: Node | None, base_dir: Path) -> Leaves:
    """Check one file's (or the CLI's) tree against the schema and flatten it to typed leaves."""
    leaves: Leaves = {}
    if root is not None and root.value is not None and not isinstance(root.value, dict):
        raise ConfigError(
            f"{root.source}: the file must be a mapping of keys (like 'certify:'), got {_describe(root.value)}.",
            "Start from the documented certkit.yaml and keep its layout.",
        )
    for key, node in _mapping(root, "the top level").items():
        spec = _lookup(SCHEMA, key, node, parent=None)
        if key in ("datasets", "models"):
            leaves[(key,)] = (None, node.key_source)  # so that `models: {}` reports its line
            reader = _read_datasets if key == "datasets" else _read_models
            leaves.update(reader(node, base_dir))
        elif isinstance(spec, Leaf):
            leaves[(key,)] = (_convert(spec, node, str(key), base_dir), node.source)
        else:
            for name, child in _mapping(node, str(key)).items():
                leaf = _lookup(spec, name, child, parent=str(key))
                leaves[(key, name)] = (_convert(leaf, child, f"{key}.{name}", base_dir), child.source)
    return leaves


def _read_datasets(node: Node, base_dir: Path) -> Leaves:
    leaves: Leaves = {}
    for name, entry in _mapping(node, "datasets").items():
        _check_name(name, entry, "datasets")
        leaves[("datasets", name)] = (None, entry.key_source)
        for field, child in _mapping(entry, f"datasets.{name}").items():
            leaf = _lookup(DATASET_FIELDS, field, child, parent=f"datasets.{name}")
            dotted = f"datasets.{name}.{field}"
            leaves[("datasets", name, field)] = (_convert(leaf, child, dotted, base_dir), child.source)
    return leaves


def _read_models(node: Node, base_dir: Path) -> Leaves:
    leaves: Leaves = {}
    for name, entry in _mapping(node, "models").items():
        _check_name(name, entry, "models")
        leaves[("models", name)] = (None, entry.key_source)
        for field, child in _mapping(entry, f"models.{name}").items():
            _lookup(MODEL_FIELDS, field, child, parent=f"models.{name}")
            if field == "spec":
                leaves[("models", name, "spec")] = (_convert(MODEL_SPEC, child, f"models.{name}.spec", base_dir), child.source)
                continue
            for raw_sigma, path_node in _mapping(child, f"models.{name}.checkpoints").items():
                sigma = _sigma_key(raw_sigma, path_node, f"models.{name}.checkpoints")
                key = ("models", name, "checkpoints", sigma)
                if key in leaves:
                    raise ConfigError(
                        f"{path_node.key_source}: duplicate key models.{name}.checkpoints.{sigma}.",
                        "Give each sigma one checkpoint.",
                    )
                value = _convert(CHECKPOINT_PATH, path_node, ".".join(map(str, key)), base_dir)
                leaves[key] = (value, path_node.source)
    return leaves


def _mapping(node: Node | None, dotted: str) -> dict:
    """The children of a mapping node; null (e.g. a section with everything commented out) is {}."""
    if node is None or node.value is None:
        return {}
    if not isinstance(node.value, dict):
        raise ConfigError(
            f"{node.source}: wrong type for key {dotted}: expected a mapping of keys, got {_describe(node.value)}.",
            "Indent the keys under it, e.g. 'certify:' then '  sigma: 0.5'.",
        )
    return node.value


def _lookup(spec: Mapping[str, object], key: object, node: Node, parent: str | None) -> object:
    if isinstance(key, str) and key in spec:
        return spec[key]
    dotted = f"{parent}.{key}" if parent else str(key)
    close = difflib.get_close_matches(str(key), list(spec), n=1)
    hint = f"Did you mean {close[0]}? " if close else ""
    under = f" under {parent}" if parent else ""
    raise ConfigError(f"{node.key_source}: unknown key {dotted}.", f"{hint}Allowed keys{under}: {', '.join(spec)}.")


def _check_name(name: object, node: Node, section: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(
            f"{node.key_source}: invalid name {name!r} under key {section}: names must be non-empty strings.",
            "Quote the name if it looks like a number or boolean.",
        )


def _sigma_key(raw: object, node: Node, dotted: str) -> float:
    """Checkpoint keys are sigmas; YAML may give 0.25, 1 or "0.25"."""
    try:
        sigma = float(raw) if not isinstance(raw, bool) else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        sigma = None
    if sigma is None or not is_finite_number(sigma) or sigma <= 0:
        raise ConfigError(
            f"{node.key_source}: key {raw!r} under {dotted} is not a sigma (a number > 0).",
            "Key each checkpoint by its noise level, e.g. '0.25: ~/ckpt/vit-b-0.25.pth'.",
        )
    return sigma


def _convert(leaf: Leaf, node: Node, dotted: str, base_dir: Path) -> object:
    """The typed value of one setting, or ConfigError saying what was expected and what was got."""
    value = node.value
    if value is None and leaf.nullable:
        return None
    if leaf.kind == "floats":
        if not isinstance(value, list):
            raise _wrong_type(leaf, node, dotted)
        element = Leaf("float", example=leaf.example)
        converted: object = tuple(_convert(element, item, dotted, base_dir) for item in value)
    elif leaf.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _wrong_type(leaf, node, dotted)
        converted = value
    elif leaf.kind == "float":
        if not is_finite_number(value):
            raise _wrong_type(leaf, node, dotted)
        converted = float(value)  # type: ignore[arg-type]
    elif leaf.kind == "path":
        if not isinstance(value, (str, os.PathLike)) or not str(value):
            raise _wrong_type(leaf, node, dotted)
        path = Path(value).expanduser()
        converted = base_dir / path if leaf.relative_to_file and not path.is_absolute() else path
    else:
        if not isinstance(value, str):
            raise _wrong_type(leaf, node, dotted)
        converted = value
    problem = leaf.check(converted) if leaf.check else None
    if problem:
        raise ConfigError(f"{node.source}: invalid value for key {dotted}: {problem}.", _example(leaf, dotted))
    return converted


def _wrong_type(leaf: Leaf, node: Node, dotted: str) -> ConfigError:
    expected = TYPE_NAMES[leaf.kind] + (" or null" if leaf.nullable else "")
    fix = _example(leaf, dotted)
    if leaf.kind in ("str", "path"):
        fix += " Quote text that YAML would read as a number or boolean."
    return ConfigError(f"{node.source}: wrong type for key {dotted}: expected {expected}, got {_describe(node.value)}.", fix)


def _example(leaf: Leaf, dotted: str) -> str:
    return f"For example: {dotted.rsplit('.', 1)[-1]}: {leaf.example}." if leaf.example else ""


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    scalar_names = {int: "integer", float: "number", str: "string"}
    if type(value) in scalar_names:
        return f"{scalar_names[type(value)]} {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"{type(value).__name__} {value!s}"
