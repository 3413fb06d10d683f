"""Resolving names from the command line and config into datasets and metadata."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from certkit import plugins
from certkit.data import ImageDataset
from certkit.errors import DataError, PluginError


@dataclass(frozen=True)
class DatasetChoice:
    """A dataset as the user named it, resolved to a registered type, a path and a split."""

    name: str
    type: str
    path: Path | None
    split: str


def resolve_dataset(name: str, path: Path | None, split: str | None, configured: dict[str, Any]) -> DatasetChoice:
    """``name`` is a key of ``datasets`` in the config, a registered dataset, or a directory
    (read as an image folder). ``path``/``split`` from the command line win over the config."""
    registry = plugins.host().registry("datasets")
    entry_config = configured.get(name)
    if entry_config is not None:
        kind = entry_config.type or name
        path = path if path is not None else entry_config.path
        split = split or entry_config.split
    elif name in registry:
        kind = name
    elif Path(name).expanduser().is_dir():
        kind, path = "image-folder", Path(name).expanduser()
    elif _looks_like_path(name):
        folder = Path(name).expanduser()
        what = "is a file, not a directory of class folders" if folder.exists() else "does not exist"
        raise DataError(f"directory {name} {what}.", "Pass a folder of class folders (root/<class>/<image>), or a dataset name: " + ", ".join(sorted(set(registry.names()) | set(configured))) + ".")
    else:
        known = sorted(set(registry.names()) | set(configured))
        raise PluginError(f"unknown dataset '{name}'.", f"Known datasets: {', '.join(known)}; or pass a directory of class folders.")
    entry = registry.get(kind).obj
    if entry.needs_path and path is None:
        raise DataError(f"dataset '{name}' needs a path and none is set.", f"Pass --data-path DIR, or set datasets.{name}.path in certkit.yaml.")
    return DatasetChoice(name, kind, None if path is None else Path(path).expanduser(), split or entry.default_split)


def _looks_like_path(name: str) -> bool:
    """Dataset names never contain a path separator or start with '.' or '~'."""
    return "/" in name or "\\" in name or name.startswith((".", "~"))


def open_dataset(choice: DatasetChoice) -> ImageDataset:
    return plugins.get("datasets", choice.type).obj.factory(choice.path, choice.split)


def versions() -> dict[str, str]:
    """Versions of what shaped a result: Python, the numeric stack, certkit and every plugin."""
    found = {"python": platform.python_version()}
    for dist in ("certkit", "torch", "timm", "numpy", "scipy", "onnxruntime-gpu"):
        try:
            found[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            continue
    for info in plugins.host().plugins():
        if info.source != "builtin":
            found[f"plugin:{info.name}"] = info.version
    return found
