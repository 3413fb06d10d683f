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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from certkit.engines import resolve_device
from certkit.errors import CertkitError, CheckpointError
from certkit.fileio import atomic_path
from certkit.interfaces import LossOutput
from certkit.training.checkpointing import LAST, load_training_state, save_atomic
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


def train(task: TrainTask, dataset: Dataset, settings: TrainSettings, progress: TrainProgress | None = None) -> TrainOutcome:
    requested = resolve_device(settings.device)
    context = init_from_env(requested)
    device = local_device(requested, context)
    progress = progress if (progress is not None and context.is_main) else _Silent()
    out_dir = Path(settings.out_dir)
    model = task.model.to(device)
    wrapped: nn.Module = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if context.enabled else model

    sampler = DistributedSampler(dataset, num_replicas=context.world_size, rank=context.rank, shuffle=True, seed=settings.seed, drop_last=True)
    loader = DataLoader(dataset, batch_size=settings.batch_size, sampler=sampler, drop_last=True, num_workers=settings.num_workers, pin_memory=device.type == "cuda")
    if len(loader) == 0:
        raise CertkitError(f"the dataset has {len(dataset)} images, fewer than one batch of {settings.batch_size} per rank.", "Lower --batch or use more data.")
    optimizer = torch.optim.AdamW(task.param_groups(settings.weight_decay), lr=settings.base_lr(context.world_size), betas=settings.betas)
    amp_dtype = _amp_dtype(settings.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    first_epoch = _resume(task, optimizer, scaler, out_dir, settings, progress)
    if context.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        if first_epoch == 0:
            _write_run_file(out_dir, task, settings, context)
    log_path = out_dir / "log.jsonl"
    if context.is_main:
        _trim_log(log_path, first_epoch)
    preview_batch = torch.stack([dataset[i][0] for i in range(min(PREVIEW_IMAGES, len(dataset)))])
    generator = torch.Generator(device=device)
    final_loss = None
    for epoch in range(first_epoch, settings.epochs):
        sampler.set_epoch(epoch)
        epoch_seed = _seed(settings.seed, context.rank, epoch)
        generator.manual_seed(epoch_seed)
        torch.manual_seed(epoch_seed)  # dropout / drop path draw from the global generator
        summary = _run_epoch(task, wrapped, loader, optimizer, scaler, amp_dtype, generator, settings, context, device, epoch, progress)
        summary["loss"] = final_loss = mean_over_ranks(summary["loss"], context, device)
        if context.is_main:
            _end_of_epoch(task, model, optimizer, scaler, settings, out_dir, epoch, summary, preview_batch, device, log_path)
        progress.end_epoch(summary)
        barrier(context)
    weights = out_dir / "weights.safetensors"
    if context.is_main and (first_epoch < settings.epochs or not weights.exists()):
        task.export(weights)
    barrier(context)
    return TrainOutcome(out_dir, first_epoch, settings.epochs, final_loss, weights, log_path)


def _run_epoch(task, wrapped, loader, optimizer, scaler, amp_dtype, generator, settings, context, device, epoch, progress) -> dict[str, Any]:
    wrapped.train()
    steps = len(loader)
    progress.start_epoch(epoch, settings.epochs, steps)
    base_lr = settings.base_lr(context.world_size)
    loss_sum, seen, began = 0.0, 0, time.perf_counter()
    lr = base_lr
    optimizer.zero_grad(set_to_none=True)
    for step, (images, labels) in enumerate(loader):
        if step % settings.accum_iter == 0:  # per-iteration schedule, as MAE
            lr = lr_at(epoch + step / steps, base_lr, settings.min_lr, settings.warmup_epochs, settings.epochs)
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
        images = images.to(device, non_blocking=True)
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
        progress.step(value, lr, seen * context.world_size / max(time.perf_counter() - began, 1e-9))
    return {"epoch": epoch + 1, "loss": loss_sum / seen, "lr": lr, "images_per_second": seen * context.world_size / (time.perf_counter() - began)}


def _end_of_epoch(task, model, optimizer, scaler, settings, out_dir, epoch, summary, preview_batch, device, log_path) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "scaler": scaler.state_dict(),
        "args": settings.to_dict(),
        "task": task.describe(),
    }
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


def _resume(task, optimizer, scaler, out_dir: Path, settings: TrainSettings, progress) -> int:
    last = out_dir / LAST
    if not last.exists():
        return 0
    if not settings.resume:
        raise CheckpointError(f"{out_dir} already holds a training run ({LAST}).", "Rerun with --resume to continue it, or pick a new --out-dir.")
    state = load_training_state(last)
    previous, current = state.get("task", {}), task.describe()
    if previous.get("model") != current.get("model") or previous.get("kind") != current.get("kind"):
        raise CheckpointError(
            f"{last} is a {previous.get('kind')} run of '{previous.get('model')}', not a {current.get('kind')} run of '{current.get('model')}'.",
            "Pick a new --out-dir.",
        )
    task.model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    first = int(state["epoch"]) + 1
    progress.note(f"resuming from {last} after epoch {first} of {settings.epochs}")
    return first


def _write_run_file(out_dir: Path, task, settings: TrainSettings, context: DistContext) -> None:
    info = {"task": task.describe(), "settings": settings.to_dict(), "world_size": context.world_size, "effective_batch": settings.effective_batch(context.world_size), "lr": settings.base_lr(context.world_size)}
    (out_dir / "run.json").write_text(json.dumps(info, indent=2) + "\n")


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def _seed(seed: int, rank: int, epoch: int) -> int:
    digest = hashlib.blake2b(f"train/{seed}/{rank}/{epoch}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)
