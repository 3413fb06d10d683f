"""The two training tasks: pretraining driven by a plugin's objective, and supervised
fine-tuning of a classifier driven by a classification objective (``noisy-ce`` by default)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from certkit.checkpoints import write_weights
from certkit.interfaces import ClassificationObjective, InputSpec, LossOutput, PretrainObjective
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
    """Supervised fine-tuning of a classifier: a registered classification objective (by default
    ``noisy-ce``, :class:`certkit.objectives.NoisyCrossEntropy`) turns clean labelled images into
    a loss, adding its own noise."""

    model: nn.Module
    model_name: str
    objective: ClassificationObjective
    objective_name: str = "noisy-ce"
    objective_options: dict[str, Any] = field(default_factory=dict)
    layer_decay: float | None = None
    model_options: dict[str, Any] = field(default_factory=dict)
    evaluator: Any = None  # certkit.training.evaluation.Evaluator, or None for no evaluation

    def loss(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> LossOutput:
        return self.objective(model, images, labels, generator)

    def param_groups(self, weight_decay: float) -> list[dict]:
        return param_groups(self.model, weight_decay, self.layer_decay, FINETUNE_NO_DECAY)

    def describe(self) -> dict[str, Any]:
        used = getattr(self.objective, "options", None)
        options = used() if callable(used) else self.objective_options
        return {
            "kind": "finetune", "model": self.model_name, "sigma": self.model.input_spec.sigma, "objective": self.objective_name,
            "objective_options": options, "layer_decay": self.layer_decay, "model_options": self.model_options,
            "input_spec": self.model.input_spec.to_dict(),
        }

    def preview(self, images: torch.Tensor, path: Path, generator: torch.Generator) -> None:
        """No picture for classification; the log carries accuracy."""

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, Any] | None:
        """Clean and smoothed (r = 0) accuracy on the fixed validation subset."""
        return None if self.evaluator is None else self.evaluator(model, device)

    def export(self, path: Path) -> None:
        spec: InputSpec = self.model.input_spec
        write_weights(path, self.model, self.model_name, spec, extra={"model_options": json.dumps(self.model_options), "objective": self.objective_name})


def save_preview_grid(columns: tuple[torch.Tensor, ...], path: Path) -> None:
    """One row per image, one column per stage (e.g. clean | noisy+masked | reconstruction)."""
    from torchvision.utils import save_image

    stacked = torch.stack([c.detach().float().clamp(0, 1).cpu() for c in columns], dim=1)  # [B, S, C, H, W]
    tiles = stacked.flatten(0, 1)
    if tiles.shape[-1] < 96:  # small images (28-32 px) are unreadable at 1:1; enlarge without smoothing
        scale = 96 // tiles.shape[-1]
        tiles = tiles.repeat_interleave(scale, dim=-1).repeat_interleave(scale, dim=-2)
    save_image(tiles, path, nrow=len(columns), padding=2, pad_value=1.0)
