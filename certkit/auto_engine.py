"""``--engine auto`` (the default): which engine runs a model, and the ONNX exports it keeps.

On a CPU, ONNX Runtime runs the shipped ViT about 1.25x faster than PyTorch eager at the same
batch (docs/engines.md), so ``auto`` exports the model once to ONNX, verified as every export is,
and certifies with ONNX Runtime. On CUDA it runs the torch engine (ONNX Runtime's CUDA provider has
no edge there and ``--precision bf16`` is torch's). Torch engine options (``--precision``,
``--channels-last``, ``--compile``) also choose torch: only torch honours them. A model that does
not export (an operator the exporter lacks, a graph that does not match PyTorch) falls back to the
torch engine with one printed line. Results are the same whichever engine runs (docs/engines.md).

Exports are cached in a ``.onnx-cache`` folder beside the results, one file per
``<model>-<key>.onnx``: ``key`` is the first 16 hex digits of a sha256 over what the graph depends
on (model name, checkpoint hash, input spec, sigma, opset, torch version), so new weights, another
spec or sigma get another file. A cached file is trusted only as far as it is checked: on reuse its
certkit metadata must name the same model, checkpoint hash and spec, and it is verified against the
PyTorch model again (the export's own check). One that fails (damaged, edited, or traced by an
exporter that changed) is exported anew. A fresh export is staged in a private temporary folder
and moved into the cache, atomically, only when the engine first classifies: by then the run has
been accepted, so a run refused for bad input writes nothing, and concurrent runs (torchrun
ranks) each see a whole file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from certkit.engines import Engine, TorchEngine
from certkit.errors import CertkitError
from certkit.export import DEFAULT_OPSET, TOLERANCE, VERIFY_BATCH_SIZES, export_onnx, verify_against_torch
from certkit.fileio import atomic_path, safe_name
from certkit.models import LoadedClassifier

CACHE_FOLDER = ".onnx-cache"


@dataclass
class CachedExport:
    """A verified ONNX export of a model: ``path`` in the cache, and whether it was there already.

    A fresh export waits in a private temporary folder (``staged``) until :meth:`keep` moves it
    into the cache; ``choose_engine`` calls it when certification starts, so a run refused for
    bad input (say, a results file of another configuration) leaves no file behind.
    """

    path: Path
    reused: bool
    max_abs_diff: float  # against PyTorch, measured by this call
    staged: Path | None = None

    @property
    def runnable(self) -> Path:
        """The file to open now: the staged one until it is kept."""
        return self.staged if self.staged is not None else self.path

    def keep(self) -> None:
        """Move a staged export into the cache, atomically (its external-data file first)."""
        if self.staged is None:
            return
        data = self.staged.with_name(self.staged.name + ".data")
        for source, target in ((data, self.path.with_name(self.path.name + ".data")), (self.staged, self.path)):
            if source.exists():
                with atomic_path(target) as tmp:
                    shutil.copyfile(source, tmp)
        shutil.rmtree(self.staged.parent, ignore_errors=True)
        self.staged = None

    def discard(self) -> None:
        if self.staged is not None:
            shutil.rmtree(self.staged.parent, ignore_errors=True)
            self.staged = None


@dataclass(frozen=True)
class AutoChoice:
    """The engine ``auto`` chose, what the results metadata records of it, and one line saying why."""

    engine: Engine
    details: dict[str, Any]
    note: str


def choose_engine(loaded: LoadedClassifier, device: torch.device, cache_folder: Path, sigma: float | None, precision: str = "fp32", channels_last: bool = False, compile: bool = False) -> AutoChoice:
    """The engine ``--engine auto`` runs ``loaded`` with on ``device`` (see the module docstring)."""
    torch_options = [flag for flag, on in (("--precision", precision != "fp32"), ("--channels-last", channels_last), ("--compile", compile)) if on]
    if device.type != "cpu" or torch_options:
        engine = TorchEngine(loaded.model, device, precision, channels_last, compile)
        why = f"on {device.type}" if device.type != "cpu" else f"{', '.join(torch_options)} asked for"
        return AutoChoice(engine, {**engine.describe(), "requested": "auto"}, f"engine auto: torch ({why})")
    from certkit.onnx_engine import OnnxEngine

    cached = None
    try:
        with _native_output_discarded():
            cached = cached_export(loaded, cache_folder, sigma)
        engine = OnnxEngine(cached.runnable, device)
    except Exception as error:  # noqa: BLE001 - any exporter or onnxruntime failure means: run torch instead
        if cached is not None:
            cached.discard()
        engine = TorchEngine(loaded.model, device)
        reason = _first_line(error)
        details = {**engine.describe(), "requested": "auto", "onnx_refused": reason}
        return AutoChoice(engine, details, f"engine auto: {loaded.name} does not export to ONNX ({reason}); certifying with the torch engine")
    details = {**engine.describe(), "onnx_file": str(cached.path), "requested": "auto", "exported_from": loaded.checkpoint_label, "export_max_abs_diff": cached.max_abs_diff, "export_reused": cached.reused}
    done = "reused" if cached.reused else "exported"
    note = f"engine auto: onnx, {done} {cached.path} (verified: max |logit difference| {cached.max_abs_diff:.2g})"
    return AutoChoice(engine if cached.reused else _KeepsExportOnFirstUse(engine, cached), details, note)


class _KeepsExportOnFirstUse:
    """An engine whose fresh export goes into the cache when it first classifies: by then the
    run has been accepted (its results file checked), so a refused run writes nothing."""

    def __init__(self, engine: Engine, export: CachedExport) -> None:
        self._engine, self._export = engine, export
        weakref.finalize(self, export.discard)  # a run that never classifies leaves no temporary folder

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        if self._export.staged is not None:
            self._export.keep()
        return self._engine.classify(images)

    def __getattr__(self, name: str) -> Any:  # name, device, num_classes, describe, note, ...
        return getattr(self._engine, name)


def cache_key(loaded: LoadedClassifier, sigma: float | None) -> str:
    """sha256 (hex) of what the exported graph and its metadata depend on."""
    identity = {
        "model": loaded.name,
        "checkpoint_sha256": loaded.checkpoint_sha256,
        "input_spec": loaded.spec.to_dict(),
        "sigma": None if sigma is None else float(sigma),
        "opset": DEFAULT_OPSET,
        "torch": torch.__version__,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def cache_path(folder: Path, loaded: LoadedClassifier, sigma: float | None) -> Path:
    return Path(folder) / f"{safe_name(loaded.name)}-{cache_key(loaded, sigma)[:16]}.onnx"


def cached_export(loaded: LoadedClassifier, folder: Path, sigma: float | None) -> CachedExport:
    """The verified ONNX export of ``loaded`` for ``folder``: reused when a checked file is there,
    else exported (and verified) now, staged until :meth:`CachedExport.keep`. Export failures
    propagate (see :func:`export_onnx`)."""
    path = cache_path(folder, loaded, sigma)
    if path.is_file():
        worst = _verify_cached(path, loaded, sigma)
        if worst is not None:
            return CachedExport(path, True, worst)
    staging = Path(tempfile.mkdtemp(prefix="certkit-onnx-"))
    try:
        report = export_onnx(loaded, staging / path.name, sigma=sigma)  # the cache's name: an external-data file is found by it
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return CachedExport(path, False, max(report.max_abs_diff.values()), staged=report.path)


def _verify_cached(path: Path, loaded: LoadedClassifier, sigma: float | None) -> float | None:
    """Max |logit difference| of a cached file against the model, or None when it cannot be used."""
    from certkit.onnx_engine import read_onnx_metadata

    try:
        info = read_onnx_metadata(path)
        if (info.name, info.checkpoint_sha256, info.spec) != (loaded.name, loaded.checkpoint_sha256, loaded.spec):
            return None
        model = loaded.model.eval().to("cpu", torch.float32)
        worst = max(verify_against_torch(model, path, loaded.spec, sigma, VERIFY_BATCH_SIZES).values())
    except Exception:  # noqa: BLE001 - whatever is wrong with the file (onnxruntime has its own error types), export it anew
        return None
    return worst if worst <= TOLERANCE else None  # a NaN fails too


@contextlib.contextmanager
def _native_output_discarded() -> Iterator[None]:
    """Send what C++ code writes to stdout/stderr to /dev/null meanwhile: when the TorchScript
    exporter meets an operator it cannot export, it prints the whole graph from C++ (below
    Python's sys.stdout), and ``auto`` promises one line. Python exceptions still propagate."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # no such descriptors (a daemon): nothing to keep quiet
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def _first_line(error: Exception) -> str:
    """What went wrong, in one short line: a CertkitError's own text (without its fix), else the
    exception type and the first line of its message."""
    if isinstance(error, CertkitError):
        return error.what[:200]
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}"[:200] if lines else type(error).__name__
