"""``certkit compare``: several methods on identical images, noise, budget and seed.

Each entry is a results file or a model. Models are certified with the comparison's settings
into ``<out_dir>/<label>.tsv`` (resumed, or reused when complete); results files must have been
made with the same settings, which their metadata sidecars say. The comparison's settings are
the command line's where given, else the first results file's, else the config's.

Entry syntax, ``[LABEL:]SOURCE``:
- ``path/to/results.tsv``: an existing results file (certkit's, or Cohen et al.'s format);
- ``path/to/weights.safetensors``: an existing weights file that names its model;
- ``MODEL`` or ``MODEL=CHECKPOINT``: a registered model, with its shipped or configured
  checkpoint for sigma, or the given one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from certkit import plugins
from certkit.checkpoints import read_weights
from certkit.config_schema import DEFAULT_RADII
from certkit.errors import CertkitError, ResultsError
from certkit.fileio import safe_name
from certkit.results.reader import ResultsFile, read_results
from certkit.smoothers import build_smoother
from certkit.workflows.certify import CertifyJob, Progress, run_certify
from certkit.workflows.compare_checks import certifier_options_for, check_model_entries, expected_identity, find_identical

RESULTS_SUFFIX = ".tsv"
_SYNTAX = "Entries are RESULTS.tsv, WEIGHTS-FILE, MODEL or MODEL=CHECKPOINT, each optionally prefixed by LABEL:."

#: settings a results file must share with the comparison, as (metadata key, shown name)
COMPARED_SETTINGS = (
    ("sigma", "sigma"), ("n0", "N0"), ("n", "N"), ("alpha", "alpha"), ("seed", "seed"), ("certifier", "certifier"), ("smoother", "smoother"),
    ("smoother_options", "smoother options"), ("norm", "norm"), ("data", "data"), ("split", "split"), ("skip", "skip"),
)


@dataclass(frozen=True)
class Entry:
    """One method to compare: a results file, or a model (and maybe its checkpoint)."""

    text: str
    label: str | None = None
    results: Path | None = None
    model: str | None = None
    checkpoint: Path | None = None


def parse_entry(text: str) -> Entry:
    """``[LABEL:]SOURCE`` (see the module docstring); existing files are recognised first."""
    if not text.strip():
        raise CertkitError("an empty compare entry.", _SYNTAX)
    label, source = None, text
    head, sep, tail = text.partition(":")
    if sep and head and not Path(text).exists() and not any(c in head for c in "/=\\") and tail:
        label, source = head, tail
    path = Path(source).expanduser()
    if path.suffix == RESULTS_SUFFIX:
        if not path.is_file():
            raise ResultsError(f"results file {path} does not exist.", "Check the path; pass a model entry to certify it instead.")
        return Entry(text, label, results=path)
    if path.is_file():
        model = read_weights(path).model_name
        if model is None:
            raise CertkitError(f"{path} does not say which model it holds.", f"Pass MODEL={path}.")
        return Entry(text, label, model=model, checkpoint=path)
    model, sep, checkpoint = source.partition("=")
    if not model or (sep and not checkpoint):
        raise CertkitError(f"cannot read compare entry '{text}'.", _SYNTAX)
    plugins.get("models", model)  # an unknown name fails here, with the known ones listed
    return Entry(text, label, model=model, checkpoint=Path(checkpoint).expanduser() if checkpoint else None)


@dataclass(frozen=True)
class CompareSettings:
    """The settings every method is certified or checked with."""

    sigma: float
    n0: int
    n: int
    alpha: float
    seed: int
    data: str
    split: str | None  # None = the dataset's default split
    skip: int
    max: int | None
    certifier: str = "cohen"
    smoother: str = "gaussian"
    data_path: Path | None = None
    radii: tuple[float, ...] = DEFAULT_RADII  # the grid a grid-aware certifier (sequential) stops on
    smoother_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def norm(self) -> str:
        return build_smoother(self.smoother, self.sigma, self.smoother_options).norm

    def describe(self) -> str:
        images = f"every {self.skip}th image" if self.skip > 1 else "every image"
        limit = f", at most {self.max}" if self.max is not None else ""
        smoother = "" if self.smoother == "gaussian" and not self.smoother_options else f"{self.smoother} {self.norm} smoothing, "
        options = "".join(f" {k}={v}" for k, v in sorted(self.smoother_options.items()))
        return (f"{smoother}{options.strip() + ', ' if options else ''}σ={self.sigma:g}, N0={self.n0}, N={self.n}, α={self.alpha:g}, seed {self.seed}, {self.data}"
                f"{'/' + self.split if self.split else ''}, {images}{limit}, {self.certifier} certifier")


def settings_from(first_file: ResultsFile | None, given: Mapping[str, Any], config: Mapping[str, Any]) -> CompareSettings:
    """Each setting from ``given`` (command line) when not None, else from the first results
    file's metadata, else from ``config``."""
    meta = _settings_of(first_file) if first_file is not None else {}
    value = {}
    for key in (*(k for k, _ in COMPARED_SETTINGS if k != "norm"), "max", "data_path"):
        if given.get(key) is not None:
            value[key] = given[key]
        elif key in meta and (meta[key] is not None or key == "max"):  # a file's max None means "all images"
            value[key] = meta[key]
        else:
            value[key] = config.get(key)
    path = value["data_path"] if given.get("data") is None or given.get("data_path") is not None else None  # a file's path belongs to its dataset
    return CompareSettings(
        sigma=float(value["sigma"]), n0=int(value["n0"]), n=int(value["n"]), alpha=float(value["alpha"]), seed=int(value["seed"]),
        data=str(value["data"]), split=value["split"], skip=int(value["skip"]), max=value["max"], certifier=str(value["certifier"]),
        smoother=str(value["smoother"]), data_path=None if path is None else Path(path), radii=tuple(config.get("radii", DEFAULT_RADII)),
        smoother_options=dict(value["smoother_options"] or {}),
    )


def _settings_of(result: ResultsFile) -> dict[str, Any]:
    """The comparable settings recorded in a results file's sidecar ({} without one)."""
    meta = result.metadata
    if not meta:
        return {}
    dataset = meta.get("dataset") if isinstance(meta.get("dataset"), dict) else {}
    found = {key: meta.get(key) for key in ("sigma", "n0", "n", "alpha", "seed", "certifier", "smoother")}
    # keys older files lack: their radii are L2 and their smoother had no options
    found.update(norm=meta.get("norm", "l2"), smoother_options=meta.get("smoother_options") or {})
    found.update(data=dataset.get("name"), split=dataset.get("split"), skip=dataset.get("skip"), data_path=dataset.get("path"))
    if "max" in meta:
        found["max"] = meta["max"]
    return found


@dataclass
class Method:
    """One compared method: where its rows came from and how its settings differ."""

    label: str
    entry: Entry
    results: ResultsFile
    origin: str  # "certified" | "resumed" | "reused" | "file"
    differences: list[str] = field(default_factory=list)


@dataclass
class Comparison:
    settings: CompareSettings
    methods: list[Method]
    common_images: int
    notes: list[str]
    out_dir: Path


def run_compare(
    entries: Sequence[Entry],
    given: Mapping[str, Any],
    config: Mapping[str, Any],
    out_dir: Path | None,
    output_root: Path,
    batch: int,
    device: str,
    allow_mismatch: bool = False,
    overwrite: bool = False,
    configured_datasets: Mapping[str, Any] | None = None,
    configured_checkpoints: Mapping[str, Mapping[float, Path]] | None = None,
    progress: Progress | None = None,
) -> Comparison:
    """Certify the model entries and check the file entries, so that every method is measured
    on the same images with the same settings; refuse otherwise unless ``allow_mismatch``."""
    if not entries:
        raise CertkitError("nothing to compare.", "Pass two or more models or results files.")
    files = {i: read_results(e.results) for i, e in enumerate(entries) if e.results is not None}
    settings = settings_from(files[min(files)] if files else None, given, config)
    labels = _labels(entries, files)
    out_dir = out_dir if out_dir is not None else output_root / _slug(f"compare-sigma{settings.sigma:g}-{settings.data}")
    checked = {i: _differences(result, settings, configured_datasets or {}) for i, result in files.items()}
    for i, differences in checked.items():  # refuse before certifying anything
        if differences and not allow_mismatch:
            raise ResultsError(
                f"{entries[i].results} was made with other settings than the comparison ({'; '.join(differences)}).",
                "Certify it again with the same settings (pass the model instead of the file), or pass --allow-mismatch to compare anyway, marked.",
            )
    models, selected = check_model_entries(entries, settings, configured_datasets or {}, configured_checkpoints or {})  # before any certification
    options = certifier_options_for(settings)
    methods: list[Method] = []
    taken: set[str] = set()
    for i, (entry, label) in enumerate(zip(entries, labels)):
        if entry.results is not None:
            methods.append(Method(label, entry, files[i], "file", checked[i]))
            continue
        target = out_dir / f"{_unique_slug(label, taken)}{RESULTS_SUFFIX}"
        identity = expected_identity(models[i], settings, configured_datasets or {}, options)
        existing = None if overwrite else find_identical(identity, [target.parent, output_root], selected)
        if existing is not None:
            methods.append(Method(label, entry, read_results(existing), "reused"))  # same identity: certifying again would give the same rows
            continue
        result, origin = _certify(entry, target, settings, batch, device, overwrite, configured_datasets or {}, configured_checkpoints or {}, progress)
        methods.append(Method(label, entry, result, origin))
    common, notes = _common_images(methods, settings, allow_mismatch)
    for method in methods:
        method.results = _restrict(method.results, common)
    return Comparison(settings, methods, len(common), notes, out_dir)


def _certify(entry: Entry, target: Path, settings: CompareSettings, batch: int, device: str, overwrite: bool, datasets, checkpoints, progress) -> tuple[ResultsFile, str]:
    job = CertifyJob(
        model=entry.model, sigma=settings.sigma, data=settings.data, n0=settings.n0, n=settings.n, alpha=settings.alpha, batch=batch,
        seed=settings.seed, checkpoint=entry.checkpoint, data_path=settings.data_path, split=settings.split, certifier=settings.certifier,
        smoother=settings.smoother, skip=settings.skip, max=settings.max, device=device, out=target, overwrite=overwrite,
        radii=settings.radii, smoother_options=settings.smoother_options,
    )
    existed = target.exists() and not overwrite
    try:
        outcome = run_certify(job, datasets, checkpoints.get(entry.model), progress)
    except ResultsError as error:
        if not existed:
            raise
        raise ResultsError(error.what, "Pass --overwrite to certify it again, or another --out-dir.") from None
    origin = "reused" if outcome.certified == 0 else ("resumed" if outcome.resumed_from else "certified")
    return read_results(outcome.path), origin


def _differences(result: ResultsFile, settings: CompareSettings, datasets: Mapping[str, Any]) -> list[str]:
    recorded = _settings_of(result)
    if not recorded:
        return ["settings unknown (no metadata sidecar)"]
    expected = {key: getattr(settings, key) for key, _ in COMPARED_SETTINGS}
    if expected["split"] is None:
        expected["split"] = _default_split(settings.data, datasets)
    found = []
    for key, shown in COMPARED_SETTINGS:
        have, want = recorded.get(key), expected[key]
        same = math.isclose(float(have), float(want), rel_tol=1e-9) if isinstance(have, (int, float)) and isinstance(want, (int, float)) else have == want
        if not same and not (key == "split" and want is None):
            found.append(f"{shown} {_show(have)} (not {_show(want)})")
    return found


def _default_split(data: str, datasets: Mapping[str, Any]) -> str | None:
    configured = datasets.get(data)
    if configured is not None and configured.split:
        return configured.split
    kind = (configured.type or data) if configured is not None else data
    registry = plugins.host().registry("datasets")
    return registry.get(kind).obj.default_split if kind in registry else None


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _common_images(methods: list[Method], settings: CompareSettings, allow_mismatch: bool) -> tuple[np.ndarray, list[str]]:
    """The image indices every method has, after the comparison's skip and max; methods that
    cover other images are refused, or (with ``allow_mismatch``) cut to the common ones."""
    selected = [np.unique(_selected(m.results.idx, settings)) for m in methods]
    common = selected[0]
    for indices in selected[1:]:
        common = np.intersect1d(common, indices)
    uneven = [(m, len(s)) for m, s in zip(methods, selected) if len(s) != len(common)]
    notes = []
    if uneven:
        counts = ", ".join(f"{m.label}: {len(s)}" for m, s in zip(methods, selected))
        if not allow_mismatch:
            raise ResultsError(
                f"the methods cover different images ({counts}; {len(common)} in common).",
                "Certify the missing images (rerun with the same settings), or pass --allow-mismatch to compare on the common ones.",
            )
        notes.append(f"compared on the {len(common)} images every method has ({counts})")
        for method, _ in uneven:
            method.differences.append(f"images cut to {len(common)} common")
    if len(common) == 0:
        raise ResultsError("the methods have no image in common.", "Compare results of the same dataset, skip and max.")
    return common, notes


def _selected(indices: np.ndarray, settings: CompareSettings) -> np.ndarray:
    """Indices a certify run with the comparison's skip and max would have chosen."""
    keep = indices % settings.skip == 0
    if settings.max is not None:
        keep &= indices < settings.skip * settings.max
    return indices[keep]


def _restrict(result: ResultsFile, indices: np.ndarray) -> ResultsFile:
    keep = np.isin(result.idx, indices)
    _, first = np.unique(result.idx, return_index=True)  # a resumed run never repeats a row; be safe anyway
    keep &= np.isin(np.arange(len(result.idx)), first)
    columns = {name: getattr(result, name)[keep] for name in ("idx", "label", "predict", "radius", "correct", "time")}
    samples = None if result.samples is None else result.samples[keep]
    return replace(result, samples=samples, **columns)


def _labels(entries: Sequence[Entry], files: Mapping[int, ResultsFile]) -> list[str]:
    """Given labels, else the model's name; when two entries share one, results files add their
    file name and explicit checkpoints their folder's; a number tells apart what is left."""
    labels = []
    for i, entry in enumerate(entries):
        if entry.label:
            labels.append(entry.label)
        elif entry.results is not None:
            labels.append(_file_label(files[i].metadata) or entry.results.stem)
        else:
            labels.append(entry.model)
    shared = [labels.count(label) > 1 for label in labels]  # before any is changed
    for i, entry in enumerate(entries):
        if entry.label is None and shared[i]:
            if entry.results is not None:
                labels[i] = f"{labels[i]} ({entry.results.stem})"
            elif entry.checkpoint is not None:
                labels[i] = f"{labels[i]} ({entry.checkpoint.parent.name or entry.checkpoint.stem})"
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        seen[label] = seen.get(label, 0) + 1
        if labels.count(label) > 1:
            labels[i] = f"{label} #{seen[label]}"
    return labels


def _file_label(meta: Mapping[str, Any]) -> str | None:
    """The model of a results file, with its smoother when that is not the Gaussian one (an L1
    run must never be labelled like an L2 one)."""
    model = meta.get("model")
    if not model:
        return None
    smoother, options = meta.get("smoother") or "gaussian", meta.get("smoother_options") or {}
    if smoother == "gaussian" and not options:
        return str(model)
    shown = "".join(f" {key}={value}" for key, value in sorted(options.items()))
    return f"{model} {smoother}{shown} ({meta.get('norm', 'l2')})"


def _slug(text: str) -> str:
    """A file name for a label."""
    return safe_name(text, fallback="method")


def _unique_slug(label: str, taken: set[str]) -> str:
    slug, number = _slug(label), 1
    while slug in taken:
        number += 1
        slug = f"{_slug(label)}-{number}"
    taken.add(slug)
    return slug
