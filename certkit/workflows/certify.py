"""``certkit certify``: certify a model on a dataset, one results row per image."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from certkit import plugins
from certkit.data import select_indices
from certkit.engines import TorchEngine, resolve_device
from certkit.errors import CertkitError
from certkit.interfaces import CertifySettings
from certkit.models import LoadedModel, load_classifier
from certkit.results.writer import ResultsWriter, format_row
from certkit.sampling import MonteCarloSampler
from certkit.workflows.resolve import DatasetChoice, open_dataset, resolve_dataset, versions


@dataclass(frozen=True)
class CertifyJob:
    """Everything one certification run needs, after CLI flags and config are merged."""

    model: str
    sigma: float
    data: str
    n0: int
    n: int
    alpha: float
    batch: int
    seed: int
    checkpoint: Path | None = None
    data_path: Path | None = None
    split: str | None = None
    certifier: str = "cohen"
    smoother: str = "gaussian"
    engine: str = "torch"
    skip: int = 1
    max: int | None = None
    device: str = "auto"
    out: Path | None = None
    output_dir: Path = Path("results")
    overwrite: bool = False


class Progress(Protocol):
    """What the CLI shows; workflows report into it and never print themselves."""

    def start(self, total: int, already_done: int, description: str) -> None: ...
    def samples(self, count: int) -> None: ...
    def image_done(self) -> None: ...
    def note(self, message: str) -> None: ...


class _Silent:
    def start(self, total: int, already_done: int, description: str) -> None: ...
    def samples(self, count: int) -> None: ...
    def image_done(self) -> None: ...
    def note(self, message: str) -> None: ...


@dataclass(frozen=True)
class CertifyOutcome:
    path: Path
    certified: int
    resumed_from: int
    total: int


def default_output(job: CertifyJob, model: str, choice: DatasetChoice, method: str) -> Path:
    return job.output_dir / f"{model}_sigma{job.sigma:g}_{choice.name}-{choice.split}_{method}.tsv"


@dataclass
class Prepared:
    """The model, data and engine of a run, built and checked before any file is written."""

    choice: DatasetChoice
    dataset: Any
    indices: list[int]
    loaded: LoadedModel
    device: torch.device


def prepare(job: CertifyJob, configured_datasets: Mapping[str, Any], configured_checkpoints: Mapping[float, Path] | None, progress: Progress) -> Prepared:
    if job.batch < 1:
        raise CertkitError(f"batch must be >= 1, got {job.batch}.", "Pass e.g. --batch 1000.")
    if job.engine != "torch":
        raise CertkitError(f"unknown engine '{job.engine}'.", "Known engines: torch.")
    choice = resolve_dataset(job.data, job.data_path, job.split, dict(configured_datasets))
    dataset = open_dataset(choice)
    indices = select_indices(len(dataset), job.skip, job.max)
    loaded = load_classifier(job.model, job.sigma, job.checkpoint, configured_checkpoints)
    info = dataset.info
    loaded.spec.check_data(info.channels, info.image_size, info.num_classes, f"dataset '{choice.name}' ({info.source})")
    if loaded.spec.sigma is not None and abs(loaded.spec.sigma - job.sigma) > 1e-9:
        progress.note(f"warning: model was trained at sigma {loaded.spec.sigma:g}, certifying at sigma {job.sigma:g}")
    return Prepared(choice, dataset, indices, loaded, resolve_device(job.device))


def run_certify(job: CertifyJob, configured_datasets: Mapping[str, Any], configured_checkpoints: Mapping[float, Path] | None = None, progress: Progress | None = None) -> CertifyOutcome:
    """Certify every selected image not already in the results file. All checks that can fail
    on user input run before the results file is touched."""
    progress = progress or _Silent()
    smoother = plugins.get("smoothers", job.smoother).obj(job.sigma)
    certifier = plugins.get("certifiers", job.certifier).obj()
    settings = CertifySettings(n0=job.n0, n=job.n, alpha=job.alpha)
    certifier.check(settings)
    run = prepare(job, configured_datasets, configured_checkpoints, progress)
    loaded, choice, device, indices, dataset = run.loaded, run.choice, run.device, run.indices, run.dataset

    out = job.out or default_output(job, loaded.name, choice, job.certifier)
    writer = ResultsWriter(out, metadata(job, loaded, choice, smoother.name, device, kind="certify"), overwrite=job.overwrite)
    todo = [i for i in indices if i not in writer.done]
    engine = TorchEngine(loaded.model, device)
    sampler = MonteCarloSampler(engine, smoother, job.batch, job.seed, on_samples=progress.samples)
    progress.start(len(indices), len(indices) - len(todo), f"{loaded.name} σ={job.sigma:g} on {choice.name}")
    finished = None
    try:
        for idx in todo:
            image, label = dataset[idx]
            began = time.perf_counter()
            certificate = certifier.certify(sampler.for_image(image, idx), smoother, settings)
            if device.type == "cuda":
                torch.cuda.synchronize(device)  # so the time column measures the image, not the queue
            writer.write(format_row(idx, label, certificate, time.perf_counter() - began))
            progress.image_done()
        finished = now()
    finally:
        writer.close(finished=finished)
    return CertifyOutcome(out, len(todo), len(indices) - len(todo), len(indices))


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def metadata(job: CertifyJob, loaded: LoadedModel, choice: DatasetChoice, smoother: str, device: torch.device, kind: str) -> dict[str, Any]:
    """How a results file was made; :data:`IDENTITY_KEYS` of it must match to resume."""
    return {
        "kind": kind,
        "model": loaded.name,
        "checkpoint": str(loaded.checkpoint),
        "checkpoint_sha256": loaded.checkpoint_sha256,
        "input_spec": loaded.spec.to_dict(),
        "sigma": job.sigma,
        "smoother": smoother,
        "certifier": job.certifier,
        "n0": job.n0,
        "n": job.n,
        "alpha": job.alpha,
        "seed": job.seed,
        "dataset": {"name": choice.name, "type": choice.type, "split": choice.split, "path": None if choice.path is None else str(choice.path.resolve()), "skip": job.skip},
        "max": job.max,
        "batch": job.batch,
        "engine": job.engine,
        "device": str(device),
        "versions": versions(),
        "started": now(),
        "finished": None,
    }
