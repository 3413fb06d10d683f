"""The two training tasks: pretraining driven by a plugin's objective, and fine-tuning a
classifier on Gaussian-noisy images with optional consistency regularization."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from certkit.checkpoints import write_weights
from certkit.interfaces import InputSpec, LossOutput, PretrainObjective
from certkit.training.param_groups import FINETUNE_NO_DECAY, param_groups


@dataclass
class PretrainTask:
    """Self-supervised pretraining: the objective turns clean images into a loss."""

    model: nn.Module
    model_name: str
    objective: PretrainObjective
    objective_name: str
    options: dict[str, Any] = field(default_factory=dict)

    def loss(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> LossOutput:
        return self.objective(model, images, generator)

    def param_groups(self, weight_decay: float) -> list[dict]:
        return param_groups(self.model, weight_decay)

    def describe(self) -> dict[str, Any]:
        return {"kind": "pretrain", "model": self.model_name, "objective": self.objective_name, "options": self.options, "input_spec": self.model.input_spec.to_dict()}

    def preview(self, images: torch.Tensor, path: Path, generator: torch.Generator) -> None:
        make = getattr(self.objective, "preview", None)
        if make is not None:
            with torch.no_grad():
                columns = make(self.model, images, generator)
            save_preview_grid(columns, path)

    def export(self, path: Path) -> None:
        write_weights(path, self.model, self.model_name, self.model.input_spec, extra={"objective": self.objective_name, "objective_options": json.dumps(self.options)})


@dataclass
class NoisyClassificationTask:
    """Fine-tuning on x + N(0, sigma^2) (Cohen et al.), optionally with consistency
    regularization (Jeong & Shin 2020): ``copies`` noisy copies per image and
    loss = CE + lambda * mean_i KL(avg_softmax || softmax_i) + eta * H(avg_softmax)."""

    model: nn.Module
    model_name: str
    sigma: float
    consistency_lambda: float = 0.0
    consistency_eta: float = 0.0
    copies: int = 1
    label_smoothing: float = 0.1
    layer_decay: float | None = None
    model_options: dict[str, Any] = field(default_factory=dict)

    def loss(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> LossOutput:
        batch = images.shape[0]
        repeated = images.repeat(self.copies, 1, 1, 1)  # [m*B, C, H, W], copy-major
        noise = torch.randn(repeated.shape, generator=generator, device=repeated.device, dtype=repeated.dtype)
        logits = model(repeated + self.sigma * noise)  # [m*B, K]
        targets = labels.repeat(self.copies)
        loss = F.cross_entropy(logits.float(), targets, label_smoothing=self.label_smoothing)
        logs = {"ce": float(loss.detach()), "acc": float((logits.argmax(1) == targets).float().mean())}
        if self.copies > 1 and (self.consistency_lambda > 0 or self.consistency_eta > 0):
            log_probs = F.log_softmax(logits.float(), dim=1).view(self.copies, batch, -1)  # [m, B, K]
            avg = log_probs.exp().mean(0)  # [B, K]
            log_avg = avg.clamp_min(1e-12).log()
            kl = (avg.unsqueeze(0) * (log_avg.unsqueeze(0) - log_probs)).sum(-1).mean()
            entropy = -(avg * log_avg).sum(-1).mean()
            loss = loss + self.consistency_lambda * kl + self.consistency_eta * entropy
            logs.update(kl=float(kl.detach()), entropy=float(entropy.detach()))
        return LossOutput(loss, logs)

    def param_groups(self, weight_decay: float) -> list[dict]:
        return param_groups(self.model, weight_decay, self.layer_decay, FINETUNE_NO_DECAY)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "finetune", "model": self.model_name, "sigma": self.sigma, "consistency_lambda": self.consistency_lambda,
            "consistency_eta": self.consistency_eta, "copies": self.copies, "label_smoothing": self.label_smoothing,
            "layer_decay": self.layer_decay, "model_options": self.model_options, "input_spec": self.model.input_spec.to_dict(),
        }

    def preview(self, images: torch.Tensor, path: Path, generator: torch.Generator) -> None:
        """No picture for classification; the log carries accuracy."""

    def export(self, path: Path) -> None:
        spec: InputSpec = self.model.input_spec
        write_weights(path, self.model, self.model_name, spec, extra={"model_options": json.dumps(self.model_options)})


def save_preview_grid(columns: tuple[torch.Tensor, ...], path: Path) -> None:
    """One row per image, one column per stage (e.g. clean | noisy+masked | reconstruction)."""
    from torchvision.utils import save_image

    stacked = torch.stack([c.detach().float().clamp(0, 1).cpu() for c in columns], dim=1)  # [B, S, C, H, W]
    tiles = stacked.flatten(0, 1)
    if tiles.shape[-1] < 96:  # small images (28-32 px) are unreadable at 1:1; enlarge without smoothing
        scale = 96 // tiles.shape[-1]
        tiles = tiles.repeat_interleave(scale, dim=-1).repeat_interleave(scale, dim=-2)
    save_image(tiles, path, nrow=len(columns), padding=2, pad_value=1.0)
