"""``certkit certify``: certify a model on a dataset, one results row per image."""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import torch

from certkit import plugins
from certkit.config_schema import DEFAULT_RADII
from certkit.data import select_indices, with_channels
from certkit.engines import Engine, TorchEngine, auto_batch_size, check_precision, default_batch_size, resolve_device
from certkit.certifiers.shortcut import stop_if_wrong
from certkit.errors import CertkitError
from certkit.fileio import safe_name
from certkit.interfaces import CertifyProcess, CertifySettings, CountSampler, InputSpec, Smoother
from certkit.models import load_classifier
from certkit.smoothers import build_smoother, describe_smoother, smoother_options, training_mismatch
from certkit.results.store import ResultsStore, peek_done
from certkit.results.writer import COLUMNS, CUT_COLUMNS, format_row
from certkit.sampling import MonteCarloSampler
from certkit.training.distributed import barrier, init_from_env, local_device
from certkit.workflows.resolve import DatasetChoice, open_dataset, resolve_dataset, versions


@dataclass(frozen=True)
class CertifyJob:
    """Everything one certification run needs, after CLI flags and config are merged.

    With ``onnx`` set, the model comes from that exported file alone (no registry, no
    checkpoint): ``model`` may be empty (else it must match the file) and ``sigma`` None
    (then the file's sigma is used); see :func:`resolve_onnx`.
    """

    model: str
    sigma: float | None
    data: str
    n0: int
    n: int
    alpha: float
    batch: int | None  # None: the engine's default (certkit.engines.default_batch_size)
    seed: int
    checkpoint: Path | None = None
    data_path: Path | None = None
    split: str | None = None
    certifier: str = "cohen"
    smoother: str = "gaussian"
    engine: str = "auto"  # resolved by prepare(): Prepared.job.engine is the engine that ran
    skip: int = 1
    max: int | None = None
    device: str = "auto"
    out: Path | None = None
    output_dir: Path = Path("results")
    overwrite: bool = False
    onnx: Path | None = None
    precision: str = "fp32"  # torch engine only: fp32 | bf16 | fp16 autocast
    channels_last: bool = False  # torch engine only
    compile: bool = False  # torch engine only: torch.compile the model
    auto_batch: bool = False  # on CUDA: fill memory, up to AUTO_BATCH_LIMIT, instead of using batch
    radii: tuple[float, ...] = DEFAULT_RADII  # the grid the user reports; a grid-aware certifier stops on it
    certifier_options: Mapping[str, Any] = field(default_factory=dict)  # -O key=value
    smoother_options: Mapping[str, Any] = field(default_factory=dict)  # -S key=value
    model_options: Mapping[str, Any] = field(default_factory=dict)  # -M key=value
    spec: str | None = None  # input spec preset or file, for weights that carry none (--spec)
    stop_if_wrong: bool = False  # evaluation shortcut: cut an image whose selected class is not its label


ENGINES = ("auto", "torch", "onnx")

#: How long a rank waits at a barrier for the others: ranks finish their shares at different times.
RANK_WAIT = dt.timedelta(days=7)


class ModelSource(Protocol):
    """Where a run's model came from (a LoadedModel or an OnnxModelInfo), for metadata."""

    name: str
    spec: InputSpec
    checkpoint: Path
    checkpoint_sha256: str


class Progress(Protocol):
    """What the CLI shows; workflows report into it and never print themselves.

    ``start`` may come twice: early with ``final=False``, from what the results file seems to
    hold, so the bar shows while the model loads (nothing else is said: the run may yet be
    refused); then with the final numbers once the file is open. Rates count from the last call."""

    def start(self, total: int, already_done: int, description: str, final: bool = True) -> None: ...
    def results_file(self, path: Path) -> None: ...  # where rows go, once the file is open (what Ctrl-C reports)
    def samples(self, count: int) -> None: ...
    def image_done(self) -> None: ...
    def note(self, message: str) -> None: ...


class _Silent:
    def start(self, total: int, already_done: int, description: str, final: bool = True) -> None: ...
    def results_file(self, path: Path) -> None: ...
    def samples(self, count: int) -> None: ...
    def image_done(self) -> None: ...
    def note(self, message: str) -> None: ...


@dataclass(frozen=True)
class CertifyOutcome:
    path: Path
    certified: int
    resumed_from: int
    total: int
    rank: int = 0  # under torchrun: only rank 0 reports; the others return when their part is merged


def certifier_extra(job: CertifyJob, certifier: Any) -> dict[str, Any]:
    """The certifier's options (-O), plus the radius grid for a certifier that stops on it."""
    extra = dict(job.certifier_options)
    if getattr(certifier, "uses_radii", False):
        extra["radii"] = list(job.radii)
    return extra


def default_output(job: CertifyJob, model: str, choice: DatasetChoice, method: str) -> Path:
    """``<model>_sigma<s>_<data>-<split>_<method>[_<smoother>[-k=v...]].tsv`` in output_dir: runs
    with another smoother or smoother options never collide (Gaussian runs keep the short name)."""
    smoother = "" if job.smoother == "gaussian" and not job.smoother_options else f"_{job.smoother}"
    smoother += "".join(f"-{key}={value}" for key, value in sorted(job.smoother_options.items()))
    # One file name inside output_dir, whatever the model, dataset or certifier names contain.
    return job.output_dir / (safe_name(f"{model}_sigma{job.sigma:g}_{choice.name}-{choice.split}_{method}{smoother}") + ".tsv")


@dataclass
class Prepared:
    """The model, data and engine of a run, built and checked before any file is written."""

    job: CertifyJob  # with the model, sigma, batch and engine actually used
    choice: DatasetChoice
    dataset: Any
    indices: list[int]
    source: ModelSource
    engine: Engine
    engine_details: dict[str, Any]

    @property
    def device(self) -> torch.device:
        return self.engine.device


def resolve_onnx(job: CertifyJob) -> CertifyJob:
    """Check the engine options; with ``--onnx``, fill the model name and sigma from the file."""
    if job.engine not in ENGINES:
        raise CertkitError(f"unknown engine '{job.engine}'.", f"Known engines: {', '.join(ENGINES)}.")
    check_precision(job.precision)
    if job.engine == "auto" and job.onnx is not None:
        job = replace(job, engine="onnx")  # an exported file runs in onnxruntime
    if job.engine == "onnx":
        torch_only = [flag for flag, on in (("--precision", job.precision != "fp32"), ("--channels-last", job.channels_last), ("--compile", job.compile)) if on]
        if torch_only:
            raise CertkitError(f"{', '.join(torch_only)}: torch engine options, but the ONNX engine runs the exported fp32 graph.", "Drop them, or use --engine torch.")
    if job.onnx is None:
        if job.sigma is None:
            raise CertkitError("no sigma was given.", "Pass --sigma S.")
        return job
    if job.engine != "onnx":
        raise CertkitError(f"--onnx runs the onnx engine, but --engine {job.engine} was asked for.", "Drop --engine, or pass --engine onnx.")
    if job.checkpoint is not None:
        raise CertkitError(f"--checkpoint does not apply with --onnx: the weights are inside {job.onnx}.", "Drop --checkpoint.")
    from certkit.onnx_engine import check_onnx_file

    info = check_onnx_file(job.onnx)
    if job.model and job.model != info.name:
        raise CertkitError(f"{job.onnx} holds model '{info.name}', not '{job.model}'.", f"Drop --model, or pass --model {info.name}.")
    sigma = job.sigma if job.sigma is not None else info.sigma
    if sigma is None:
        raise CertkitError(f"{job.onnx} records no sigma.", "Pass --sigma S.")
    return replace(job, model=info.name, sigma=sigma)


def build_engine(job: CertifyJob, configured_checkpoints: Mapping[float, Path] | None, progress: Progress) -> tuple[ModelSource, Engine, dict[str, Any]]:
    """The model source and the engine that runs it; ``--engine onnx`` without ``--onnx``
    exports the model to a temporary, verified ONNX file first, ``--engine auto`` picks one
    (:mod:`certkit.auto_engine`)."""
    device = resolve_device(job.device)
    if job.onnx is not None:
        from certkit.onnx_engine import OnnxEngine

        engine = OnnxEngine(job.onnx, device)
        return engine.info, engine, engine.describe()
    loaded = load_classifier(job.model, job.sigma, job.checkpoint, configured_checkpoints, spec=job.spec, options=job.model_options, noise=job.smoother)
    if job.engine == "auto":
        from certkit.auto_engine import CACHE_FOLDER, choose_engine

        cache = (job.out.parent if job.out is not None else job.output_dir) / CACHE_FOLDER  # beside the results
        choice = choose_engine(loaded, device, cache, job.sigma, job.precision, job.channels_last, job.compile)
        progress.note(choice.note)
        return loaded, choice.engine, choice.details
    if job.engine == "torch":
        engine = TorchEngine(loaded.model, device, job.precision, job.channels_last, job.compile)
        return loaded, engine, engine.describe()
    from certkit.export import export_onnx
    from certkit.onnx_engine import OnnxEngine

    with tempfile.TemporaryDirectory(prefix="certkit-onnx-") as folder:
        report = export_onnx(loaded, Path(folder) / f"{loaded.name}.onnx", sigma=job.sigma)
        engine = OnnxEngine(report.path, device)
        details = engine.describe()
    worst = max(report.max_abs_diff.values())
    details.update(onnx_file=None, exported_from=loaded.checkpoint_label, export_max_abs_diff=worst)
    progress.note(f"exported {loaded.name} to a temporary ONNX file (verified: max |logit difference| {worst:.2g})")
    return loaded, engine, details


def prepare(
    job: CertifyJob,
    configured_datasets: Mapping[str, Any],
    configured_checkpoints: Mapping[float, Path] | None,
    progress: Progress,
    smoother: Smoother | None = None,
    on_selected: Callable[[DatasetChoice, list[int]], None] | None = None,
) -> Prepared:
    """``job`` must have passed :func:`resolve_onnx`; ``smoother``, when given, is checked against
    the noise the model was trained for. ``on_selected(choice, indices)`` hears which images the
    run covers before the model loads (the slow part of start-up)."""
    if job.batch is not None and job.batch < 1:
        raise CertkitError(f"batch must be >= 1, got {job.batch}.", "Pass e.g. --batch 1000.")
    choice = resolve_dataset(job.data, job.data_path, job.split, dict(configured_datasets))
    dataset = open_dataset(choice)
    indices = select_indices(len(dataset), job.skip, job.max)
    if on_selected is not None:
        on_selected(choice, indices)
    source, engine, details = build_engine(job, configured_checkpoints, progress)
    spec = source.spec
    dataset = with_channels(dataset, spec.channels)  # greyscale <-> RGB as the model expects; other counts are refused
    info = dataset.info
    spec.check_data(info.channels, info.image_size, info.num_classes, f"dataset '{choice.name}' ({info.source})")
    note = training_mismatch(spec, getattr(source, "sigma", None) if job.onnx is not None else spec.sigma, smoother or build_smoother(job.smoother, job.sigma, job.smoother_options))
    if note:
        progress.note(note)
    if getattr(engine, "note", None):
        progress.note(engine.note)
    batch = requested = job.batch if job.batch is not None else default_batch_size(engine)
    if engine.device.type == "cuda":
        batch = auto_batch_size(engine, (spec.channels, *spec.image_size), None if job.auto_batch else requested)
        if not job.auto_batch and batch < requested:
            progress.note(f"batch {requested} does not fit in {engine.device} memory; using {batch}")
    described = details.get("provider") or details.get("precision")
    progress.note(f"engine: {engine.name} on {engine.device} ({described}), batch {batch}")
    return Prepared(replace(job, batch=batch, engine=engine.name), choice, dataset, indices, source, engine, details)


def run_certify(job: CertifyJob, configured_datasets: Mapping[str, Any], configured_checkpoints: Mapping[float, Path] | None = None, progress: Progress | None = None) -> CertifyOutcome:
    """Certify every selected image not already in the results file. All checks that can fail
    on user input run before the results file is touched."""
    progress = progress or _Silent()
    job = resolve_onnx(job)
    smoother = build_smoother(job.smoother, job.sigma, job.smoother_options)
    certifier = plugins.get("certifiers", job.certifier).obj()
    settings = CertifySettings(n0=job.n0, n=job.n, alpha=job.alpha, extra=certifier_extra(job, certifier))
    certifier.check(settings)
    check_reach = getattr(certifier, "check_reach", None)  # optional: radii that N samples cannot reach
    if check_reach is not None:
        check_reach(smoother, settings)
    context = init_from_env(resolve_device(job.device), timeout=RANK_WAIT)
    if context.enabled:
        job = replace(job, device=str(local_device(resolve_device(job.device), context)))
        progress = progress if context.is_main else _Silent()  # one progress bar, not one per rank
    make_process = getattr(certifier, "process", None)
    if job.stop_if_wrong and make_process is None:
        raise CertkitError(f"--stop-if-wrong needs a certifier written as a process, and '{job.certifier}' has only certify().", "Drop --stop-if-wrong.")

    # A distributed run's bar counts rank 0's share, known only after the ranks meet.
    early = None if context.enabled else bar_before_model(job, smoother, job.certifier, progress)
    run = prepare(job, configured_datasets, configured_checkpoints, progress, smoother, on_selected=early)
    job, choice, indices, dataset = run.job, run.choice, run.indices, run.dataset
    if job.stop_if_wrong:
        check_labelled(dataset, indices, choice.name)
    out = job.out or default_output(job, run.source.name, choice, job.certifier)
    info = metadata(job, run, smoother, kind="certify", certifier_options=settings.extra)
    columns = CUT_COLUMNS if job.stop_if_wrong else COLUMNS
    results = ResultsStore.open(out, info, overwrite=job.overwrite, note=progress.note, columns=columns) if context.is_main else None
    writer = results
    progress.results_file(out)
    if context.enabled:
        # Every rank reads the same finished rows (after rank 0 checked and merged the file) and
        # takes every world_size-th image still to do: no image twice, none dropped.
        barrier(context)
        writer = ResultsStore.open_part(out, info, context.rank, context.world_size, columns)
    todo = [i for i in indices if i not in writer.done]
    mine = todo[context.rank :: context.world_size]
    sampler = MonteCarloSampler(run.engine, smoother, job.batch, job.seed, on_samples=progress.samples)
    description = f"{run.source.name} {describe_smoother(smoother)} on {choice.name}"
    if context.enabled:  # rank 0's bar counts rank 0's share
        description += f" (rank 0 of {context.world_size}: {len(mine)} of {len(todo)} images to do)"
    progress.start(len(indices) - len(todo) + len(mine), len(indices) - len(todo), description)
    finished = None
    try:
        if make_process is not None:
            wrap = stop_if_wrong if job.stop_if_wrong else None
            outcomes = certify_packed(sampler, dataset, mine, lambda: make_process(smoother, settings), wrap)
        else:
            outcomes = certify_one_by_one(sampler, dataset, mine, lambda sample: certifier.certify(sample, smoother, settings))
        for idx, label, result, seconds in outcomes:
            if job.stop_if_wrong:
                certificate, cut = result
                writer.write(format_row(idx, label, certificate, seconds, cut=cut))
            else:
                writer.write(format_row(idx, label, result, seconds))
            progress.image_done()
        writer.sort_rows()  # images finish out of order; the finished file is in index order
        finished = now()
    finally:
        writer.close(finished=finished)
    if context.enabled:
        barrier(context)
        if context.is_main:
            results.merge_parts()
            results.close(finished=now(), world_size=context.world_size)
    return CertifyOutcome(out, len(todo), len(indices) - len(todo), len(indices), context.rank)


def bar_before_model(job: CertifyJob, smoother: Smoother, method: str, progress: Progress, prefix: str = "") -> Callable[[DatasetChoice, list[int]], None]:
    """``prepare``'s ``on_selected``: the bar, before the model loads (the slow part of start-up),
    counting the rows the results file seems to hold already; the run sets the final numbers."""

    def show(choice: DatasetChoice, indices: list[int]) -> None:
        out = job.out or default_output(job, job.model, choice, method)
        already = 0 if job.overwrite else len(peek_done(out) & set(indices))
        progress.start(len(indices), already, f"{prefix}{job.model} {describe_smoother(smoother)} on {choice.name}", final=False)

    return show


def check_labelled(dataset: Any, indices: list[int], name: str) -> None:
    """``--stop-if-wrong`` compares the selected class with the label: refuse data without labels
    (a dataset whose info says ``labelled = False``, or whose first image has no label)."""
    unlabelled = getattr(dataset.info, "labelled", True) is False
    if not unlabelled and indices:
        label = dataset[indices[0]][1]
        unlabelled = label is None or int(label) < 0
    if unlabelled:
        raise CertkitError(f"--stop-if-wrong compares each image's selected class with its label, and dataset '{name}' has no labels.", "Drop --stop-if-wrong, or use labelled data.")


def certify_packed(
    sampler: MonteCarloSampler, dataset: Any, todo: list[int], make_process: Callable[[], CertifyProcess], wrap: Callable[[CertifyProcess, int], CertifyProcess] | None = None
) -> Iterator[tuple[int, int, Any, float]]:
    """``(idx, label, result, seconds)`` per image as it finishes, with batches packed across
    images; ``wrap(process, label)`` may wrap each image's process (``--stop-if-wrong``)."""
    labels: dict[int, int] = {}

    def work() -> Iterator[tuple[int, torch.Tensor, CertifyProcess]]:
        for idx in todo:
            image, labels[idx] = dataset[idx]
            yield idx, image, make_process() if wrap is None else wrap(make_process(), labels[idx])

    for idx, result, seconds in sampler.run(work()):
        yield idx, labels.pop(idx), result, seconds


def certify_one_by_one(sampler: MonteCarloSampler, dataset: Any, todo: list[int], certify_image: Callable[[CountSampler], Any]) -> Iterator[tuple[int, int, Any, float]]:
    """The same for a certifier that only has ``certify(sample, ...)``: one image at a time."""
    for idx in todo:
        image, label = dataset[idx]
        began = time.perf_counter()
        result = certify_image(sampler.for_image(image, idx))
        if sampler.engine.device.type == "cuda":
            torch.cuda.synchronize(sampler.engine.device)  # so the time measures the image, not the queue
        yield idx, label, result, time.perf_counter() - began


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def metadata(job: CertifyJob, run: Prepared, smoother: Smoother, kind: str, certifier_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """How a results file was made; :data:`IDENTITY_KEYS` of it must match to resume.

    ``checkpoint_sha256`` is the hash of the weights file, also when they run from an ONNX
    export of it (``checkpoint`` is then the ONNX file), so both engines' files share an identity.
    """
    source = run.source
    return {
        "kind": kind,
        "model": source.name,
        "checkpoint": getattr(source, "checkpoint_label", None) or str(source.checkpoint),
        "checkpoint_sha256": source.checkpoint_sha256,
        "parts": list(getattr(source, "parts", None) or []) or None,  # what a composed model was built from
        "input_spec": source.spec.to_dict(),
        "sigma": job.sigma,
        "smoother": smoother.name,
        "smoother_options": smoother_options(smoother),
        "norm": smoother.norm,  # what every radius in the file is measured in
        "certifier": job.certifier,
        "certifier_options": certifier_options or None,  # e.g. a sequential run's grid and looks
        **({"stop_if_wrong": True} if job.stop_if_wrong else {}),  # recorded only when on, so earlier files keep their identity
        "n0": job.n0,
        "n": job.n,
        "alpha": job.alpha,
        "seed": job.seed,
        "dataset": {"name": run.choice.name, "type": run.choice.type, "split": run.choice.split, "path": None if run.choice.path is None else str(run.choice.path.resolve()), "skip": job.skip},
        "max": job.max,
        "batch": job.batch,
        "engine": job.engine,
        "precision": job.precision,  # part of the identity: fp16 rows must not mix with fp32 ones
        "engine_details": run.engine_details,
        "device": str(run.device),
        "versions": versions(),
        "started": now(),
        "finished": None,
    }
