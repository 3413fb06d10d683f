"""The training loop shared by pretraining and fine-tuning.

Rank 0 alone writes files. ``checkpoint-last.pth`` is rewritten atomically after every epoch,
so a killed run resumes from the last finished epoch; every ``save_every`` epochs (and at the
end) a numbered copy and a preview are kept. Data order and training noise are seeded per
(seed, rank, epoch), so a resumed run repeats what the uninterrupted one would have done.

Rewriting ``checkpoint-last.pth`` is the commit point of an epoch: the numbered checkpoint, the
preview and the ``log.jsonl`` line are written before it, so a kill in between redoes the epoch
(rewriting them) and the resume drops log lines of epochs that were not committed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from certkit.data.training import EpochSampler, PlainItems, TrainingImages
from certkit.engines import resolve_device
from certkit.errors import CertkitError, CheckpointError
from certkit.fileio import atomic_path
from certkit.interfaces import LossOutput
from certkit.training.checkpointing import BEST, LAST, load_training_state, save_atomic
from certkit.training.run_record import SUMMARY, RunRecord, append_change, check_resume, identity_of, write_run_file, write_summary_csv
from certkit.training.distributed import DistContext, barrier, init_from_env, local_device, mean_over_ranks
from certkit.training.schedule import lr_at
from certkit.training.settings import TrainSettings

PREVIEW_IMAGES = 8


class TrainingDiverged(CertkitError):
    """The loss became NaN or infinite."""


class TrainTask(Protocol):
    """What is trained and how a batch becomes a loss (pretraining, fine-tuning, ...)."""

    model: nn.Module

    def loss(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> LossOutput: ...
    def param_groups(self, weight_decay: float) -> list[dict]: ...
    def describe(self) -> dict[str, Any]: ...
    def preview(self, images: torch.Tensor, path: Path, generator: torch.Generator) -> None: ...
    def export(self, path: Path) -> None: ...


class TrainProgress(Protocol):
    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None: ...
    def step(self, loss: float, lr: float, images_per_second: float) -> None: ...
    def end_epoch(self, summary: dict[str, Any]) -> None: ...
    def note(self, message: str) -> None: ...


class _Silent:
    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None: ...
    def step(self, loss: float, lr: float, images_per_second: float) -> None: ...
    def end_epoch(self, summary: dict[str, Any]) -> None: ...
    def note(self, message: str) -> None: ...


@dataclass(frozen=True)
class TrainOutcome:
    out_dir: Path
    first_epoch: int  # 0, or where a resumed run picked up
    epochs: int
    final_loss: float | None
    weights: Path
    log: Path


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training: ``committed`` epochs are safe in ``out_dir``'s checkpoint."""

    def __init__(self, out_dir: Path, committed: int, epochs: int) -> None:
        super().__init__(f"interrupted after {committed} of {epochs} epochs")
        self.out_dir, self.committed, self.epochs = out_dir, committed, epochs


def train(task: TrainTask, dataset: Dataset, settings: TrainSettings, progress: TrainProgress | None = None, record: RunRecord | None = None) -> TrainOutcome:
    """Train ``task`` on ``dataset``; ``record`` (every effective setting) goes into run.json
    and the checkpoints, and a resume with other identity settings is refused (see
    :mod:`certkit.training.run_record`)."""
    requested = resolve_device(settings.device)
    context = init_from_env(requested)
    device = local_device(requested, context)
    progress = progress if (progress is not None and context.is_main) else _Silent()
    out_dir = Path(settings.out_dir)
    record = record or RunRecord()
    identity = identity_of(record, settings.effective_batch(context.world_size))
    model = task.model.to(device)
    wrapped: nn.Module = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if context.enabled else model

    loader, sampler = _loader(dataset, settings, context, device)
    if len(loader) == 0:
        raise CertkitError(f"the dataset has {len(dataset)} images, fewer than one batch of {settings.batch_size} per rank.", "Lower --batch or use more data.")
    optimizer = torch.optim.AdamW(task.param_groups(settings.weight_decay), lr=settings.base_lr(context.world_size), betas=settings.betas)
    amp_dtype = _amp_dtype(settings.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    first_epoch, changed, best = _resume(task, optimizer, scaler, out_dir, settings, progress, identity)
    if context.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        if first_epoch == 0:
            write_run_file(out_dir, record, _run_facts(task, settings, context))
        elif changed:
            append_change(out_dir, record, first_epoch, changed)
    log_path = out_dir / "log.jsonl"
    if context.is_main:
        _trim_log(log_path, first_epoch)
    getattr(progress, "start_run", lambda *a: None)(out_dir, first_epoch, settings.epochs, len(loader))
    preview_batch = torch.stack([_as_float(loader.dataset[(0, i)][0]) for i in range(min(PREVIEW_IMAGES, len(dataset)))])
    generator = torch.Generator(device=device)
    final_loss, committed = None, first_epoch
    try:
        for epoch in range(first_epoch, settings.epochs):
            sampler.set_epoch(epoch)
            epoch_seed = _seed(settings.seed, context.rank, epoch)
            generator.manual_seed(epoch_seed)
            _seed_globals(epoch_seed)
            summary = _run_epoch(task, wrapped, loader, optimizer, scaler, amp_dtype, generator, settings, context, device, epoch, progress)
            for key in [k for k in summary if k not in ("epoch", "lr", "images_per_second")]:
                summary[key] = mean_over_ranks(summary[key], context, device)
            final_loss = summary["loss"]
            if context.is_main:
                best = _evaluate(task, model, settings, epoch, summary, best, device, progress)
                _end_of_epoch(task, model, optimizer, scaler, settings, out_dir, epoch, summary, preview_batch, device, log_path, identity, best)
            committed = epoch + 1
            progress.end_epoch(summary)
            barrier(context)
    except KeyboardInterrupt:
        raise TrainingInterrupted(out_dir, committed, settings.epochs) from None
    weights = out_dir / "weights.safetensors"
    if context.is_main and (first_epoch < settings.epochs or not weights.exists()):
        task.export(weights)
        _export_best(task, model, out_dir, best, settings.epochs)
    barrier(context)
    return TrainOutcome(out_dir, first_epoch, settings.epochs, final_loss, weights, log_path)


def _run_facts(task: TrainTask, settings: TrainSettings, context: DistContext) -> dict[str, Any]:
    return {"task": task.describe(), "trainer": settings.to_dict(), "world_size": context.world_size, "effective_batch": settings.effective_batch(context.world_size), "lr": settings.base_lr(context.world_size)}


def _evaluate(task, model, settings: TrainSettings, epoch: int, summary: dict[str, Any], best: dict[str, Any] | None, device, progress) -> dict[str, Any] | None:
    """Every ``eval_every`` epochs and after the last: the task's validation numbers into the
    epoch's summary; returns the best evaluation so far (by smoothed, then clean accuracy)."""
    evaluate = getattr(task, "evaluate", None)
    due = settings.eval_every > 0 and ((epoch + 1) % settings.eval_every == 0 or epoch + 1 == settings.epochs)
    if evaluate is None or not due:
        return best
    metrics = evaluate(model, device)
    if metrics is None:
        return best
    summary.update(metrics)
    score = [metrics.get("val_smoothed_acc_r0", 0.0), metrics.get("val_clean_acc", 0.0)]
    if best is None or score > best["score"]:
        best = {"epoch": epoch + 1, "score": score, **metrics, "new": True}
    return best


def _export_best(task, model: nn.Module, out_dir: Path, best: dict[str, Any] | None, epochs: int) -> None:
    """``weights-best.safetensors`` from ``checkpoint-best.pth`` (the last weights are
    ``weights.safetensors``); the model keeps its last weights."""
    path = out_dir / BEST
    if best is None or not path.exists():
        return
    if best["epoch"] == epochs:
        task.export(out_dir / "weights-best.safetensors")
        return
    last = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(load_training_state(path)["model"])
    try:
        task.export(out_dir / "weights-best.safetensors")
    finally:
        model.load_state_dict(last)


def _run_epoch(task, wrapped, loader, optimizer, scaler, amp_dtype, generator, settings, context, device, epoch, progress) -> dict[str, Any]:
    wrapped.train()
    steps = len(loader)
    progress.start_epoch(epoch, settings.epochs, steps)
    base_lr = settings.base_lr(context.world_size)
    loss_sum, seen, began = 0.0, 0, time.perf_counter()
    log_sums: dict[str, float] = {}
    lr = base_lr
    optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    waited, clock = 0.0, time.perf_counter()
    for step, (images, labels) in enumerate(loader):
        waited += time.perf_counter() - clock  # blocked on the loader (the step before synchronised on the loss)
        if step % settings.accum_iter == 0:  # per-iteration schedule, as MAE
            lr = lr_at(epoch + step / steps, base_lr, settings.min_lr, settings.warmup_epochs, settings.epochs)
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
        images = _as_float(images.to(device, non_blocking=True))
        labels = labels.to(device, non_blocking=True)
        boundary = (step + 1) % settings.accum_iter == 0
        # Under DDP, gradients are all-reduced only at the accumulation boundary.
        sync = contextlib.nullcontext() if boundary or not context.enabled else wrapped.no_sync()
        with sync:
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                output = task.loss(wrapped, images, labels, generator)
            value = float(output.loss.detach())
            if not math.isfinite(value):
                raise TrainingDiverged(
                    f"the loss became {value} at epoch {epoch + 1}, step {step + 1} (lr {lr:.3g}).",
                    f"Lower --blr, add --clip-grad 1.0 or use --amp off; rerunning resumes from the last finished epoch ({epoch}).",
                )
            scaler.scale(output.loss / settings.accum_iter).backward()
        if boundary:
            if settings.clip_grad is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(task.model.parameters(), settings.clip_grad)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
        loss_sum += value * len(images)
        seen += len(images)
        for key, logged in output.logs.items():
            log_sums[key] = log_sums.get(key, 0.0) + float(logged) * len(images)
        progress.step(value, lr, seen * context.world_size / max(time.perf_counter() - began, 1e-9))
        clock = time.perf_counter()
    elapsed = time.perf_counter() - began
    summary = {"epoch": epoch + 1, "loss": loss_sum / seen, "lr": lr, "images_per_second": seen * context.world_size / elapsed}
    summary["data_wait_share"] = waited / elapsed  # the share of the epoch spent waiting for batches
    if device.type == "cuda":
        summary["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    # Every number the objective logs, as its epoch mean over this rank's images (mean over ranks below).
    summary.update({key: total / seen for key, total in log_sums.items() if key not in summary})
    return summary


def _end_of_epoch(task, model, optimizer, scaler, settings, out_dir, epoch, summary, preview_batch, device, log_path, identity, best) -> None:
    new_best = bool(best and best.pop("new", False))
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "scaler": scaler.state_dict(),
        "args": settings.to_dict(),
        "task": task.describe(),
        "run": identity,
        "best": best,
    }
    if new_best:
        save_atomic(state, out_dir / BEST)
    if (epoch + 1) % settings.save_every == 0 or epoch + 1 == settings.epochs:
        save_atomic(state, out_dir / f"checkpoint-{epoch + 1:04d}.pth")
        preview = torch.Generator(device=device).manual_seed(settings.seed)
        model.eval()
        task.preview(preview_batch.to(device), out_dir / f"preview-{epoch + 1:04d}.png", preview)
        model.train()
    with open(log_path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(summary) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    write_summary_csv(log_path, out_dir / SUMMARY)
    save_atomic(state, out_dir / LAST)  # the commit point (see the module docstring)


def _trim_log(log_path: Path, epochs_done: int) -> None:
    """Keep the complete ``log.jsonl`` lines of the ``epochs_done`` committed epochs; drop a
    partial last line and lines of an epoch a kill interrupted before its checkpoint."""
    if not log_path.exists():
        return
    data = log_path.read_bytes()
    lines = data.split(b"\n")[:-1]  # the piece after the last newline is a partial line
    kept = b"".join(line + b"\n" for line in lines if _logged_epoch(line) <= epochs_done)
    if kept != data:
        with atomic_path(log_path) as tmp:
            tmp.write_bytes(kept)


def _logged_epoch(line: bytes) -> float:
    """The epoch of a log line; a damaged one (an older certkit appended after a partial line)
    counts as uncommitted, so it is dropped rather than stopping the resume."""
    try:
        return json.loads(line)["epoch"]
    except (ValueError, KeyError, TypeError):
        return math.inf


def _resume(task, optimizer, scaler, out_dir: Path, settings: TrainSettings, progress, identity: dict[str, Any]) -> tuple[int, dict[str, list[Any]], dict[str, Any] | None]:
    """(first epoch, accepted setting changes, best evaluation so far) of the run in ``out_dir``."""
    last = out_dir / LAST
    if not last.exists():
        return 0, {}, None
    if not settings.resume:
        raise CheckpointError(f"{out_dir} already holds a training run ({LAST}).", "Rerun with --resume to continue it, or pick a new --out-dir.")
    state = load_training_state(last)
    previous, current = state.get("task", {}), task.describe()
    if previous.get("model") != current.get("model") or previous.get("kind") != current.get("kind"):
        raise CheckpointError(
            f"{last} is a {previous.get('kind')} run of '{previous.get('model')}', not a {current.get('kind')} run of '{current.get('model')}'.",
            "Pick a new --out-dir.",
        )
    changed = check_resume(state.get("run"), identity, out_dir, settings.accept_changes)
    task.model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    first = int(state["epoch"]) + 1
    progress.note(f"resuming from {last} after epoch {first} of {settings.epochs}" + (f" with accepted changes to {', '.join(changed)}" if changed else ""))
    return first, changed, state.get("best")


def _loader(dataset: Dataset, settings: TrainSettings, context: DistContext, device: torch.device) -> tuple[DataLoader, EpochSampler]:
    """Shuffled, sharded over ranks; worker processes stay up across epochs (persistent), and
    batches land in pinned memory when training on a GPU. Items are keyed ``(epoch, index)``
    (see :mod:`certkit.data.training`)."""
    keyed = dataset if isinstance(dataset, TrainingImages) else PlainItems(dataset)
    sampler = EpochSampler(DistributedSampler(keyed, num_replicas=context.world_size, rank=context.rank, shuffle=True, seed=settings.seed, drop_last=True))
    workers = settings.num_workers
    loader = DataLoader(
        keyed, batch_size=settings.batch_size, sampler=sampler, drop_last=True, num_workers=workers, pin_memory=device.type == "cuda",
        persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
    )
    return loader, sampler


def _as_float(images: torch.Tensor) -> torch.Tensor:
    """Training transforms hand over uint8 images (a quarter of the bytes); models take [0, 1]."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images


def _seed_globals(seed: int) -> None:
    """Dropout and drop path draw from torch's global RNG; numpy and ``random`` are seeded too
    for objectives and plugins that draw from them."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def _seed(seed: int, rank: int, epoch: int) -> int:
    digest = hashlib.blake2b(f"train/{seed}/{rank}/{epoch}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)
