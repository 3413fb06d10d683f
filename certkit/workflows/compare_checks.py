"""What ``certkit compare`` checks before it certifies anything, and the finished results it reuses.

A comparison that certifies one method for minutes and then fails on the next one's missing
checkpoint wastes the user's time, so every model entry is resolved first: model registered,
weights found, input spec fitting the data, norm the same as the other methods'. A model whose
results already exist with the same identity (``certkit certify`` wrote them with the same
model, weights, smoother, certifier, N0, N, alpha, seed and data) is not certified again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from certkit import plugins
from certkit.data import select_indices
from certkit.errors import CertkitError
from certkit.models import load_classifier
from certkit.results.reader import read_results
from certkit.results.writer import identity_differences, sidecar_path
from certkit.smoothers import build_smoother, smoother_options
from certkit.workflows.resolve import DatasetChoice, open_dataset, resolve_dataset


@dataclass(frozen=True)
class CheckedModel:
    """A model entry that will certify: what identifies its results."""

    name: str
    checkpoint_sha256: str
    norm: str


def check_model_entries(entries: Iterable[Any], settings: Any, datasets: Mapping[str, Any], checkpoints: Mapping[str, Mapping[float, Path]]) -> tuple[dict[int, CheckedModel], set[int]]:
    """Resolve every model entry (index -> what was found), or raise naming the entry at fault;
    also the image indices the comparison's skip and max select. Weights are loaded once here to
    read their input spec and hash; nothing is written."""
    smoother = build_smoother(settings.smoother, settings.sigma, settings.smoother_options)
    choice = resolve_dataset(settings.data, settings.data_path, settings.split, dict(datasets))
    dataset = open_dataset(choice)
    info = dataset.info
    checked = {}
    for i, entry in enumerate(entries):
        if entry.model is None:
            continue
        try:
            loaded = load_classifier(entry.model, settings.sigma, entry.checkpoint, checkpoints.get(entry.model), noise=settings.smoother)
            loaded.spec.check_data(info.channels, info.image_size, info.num_classes, f"dataset '{choice.name}' ({info.source})")
        except CertkitError as error:
            raise CertkitError(f"compare entry '{entry.text}': {error.what}", error.fix) from None
        checked[i] = CheckedModel(loaded.name, loaded.checkpoint_sha256, smoother.norm)
    return checked, set(select_indices(len(dataset), settings.skip, settings.max))


def expected_identity(model: CheckedModel, settings: Any, datasets: Mapping[str, Any], certifier_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The identity keys a ``certkit certify`` run of this entry with the comparison's settings
    writes into its sidecar (see :func:`certkit.workflows.certify.metadata`)."""
    choice: DatasetChoice = resolve_dataset(settings.data, settings.data_path, settings.split, dict(datasets))
    smoother = build_smoother(settings.smoother, settings.sigma, settings.smoother_options)
    return {
        "kind": "certify",
        "model": model.name,
        "checkpoint_sha256": model.checkpoint_sha256,
        "sigma": settings.sigma,
        "smoother": smoother.name,
        "smoother_options": smoother_options(smoother),
        "certifier": settings.certifier,
        "certifier_options": dict(certifier_options) if certifier_options else None,
        "n0": settings.n0,
        "n": settings.n,
        "alpha": settings.alpha,
        "seed": settings.seed,
        "dataset": {"name": choice.name, "type": choice.type, "split": choice.split, "path": None if choice.path is None else str(choice.path.resolve()), "skip": settings.skip},
        "precision": "fp32",
    }


def find_identical(identity: Mapping[str, Any], folders: Iterable[Path], wanted: set[int], exclude: Path | None = None) -> Path | None:
    """A results file in ``folders`` with this identity whose complete rows cover ``wanted``."""
    for folder in dict.fromkeys(Path(f) for f in folders):
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.tsv")):
            if exclude is not None and path.resolve() == exclude.resolve():
                continue
            try:
                meta = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if not isinstance(meta, dict) or identity_differences(meta, identity):
                continue
            try:
                covered = set(read_results(path).idx.tolist())
            except CertkitError:
                continue
            if wanted <= covered:
                return path
    return None


def certifier_options_for(settings: Any) -> dict[str, Any]:
    """What a certify run of the comparison records as ``certifier_options`` (the radius grid of
    a certifier that stops on it)."""
    certifier = plugins.get("certifiers", settings.certifier).obj()
    return {"radii": list(settings.radii)} if getattr(certifier, "uses_radii", False) else {}
