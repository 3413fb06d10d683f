"""Turning a model name, a sigma and maybe a checkpoint path into a ready base classifier."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from certkit import plugins
from certkit.checkpoints import load_into, read_weights
from certkit.errors import CheckpointError
from certkit.interfaces import InputSpec


@dataclass
class LoadedModel:
    """A base classifier and where its weights came from (for results metadata)."""

    name: str
    model: torch.nn.Module
    spec: InputSpec
    checkpoint: Path
    checkpoint_sha256: str


def find_checkpoint(name: str, sigma: float, explicit: Path | None, configured: Mapping[float, Path] | None) -> Path:
    """``--checkpoint`` > ``models.<name>.checkpoints`` in the config > what the plugin ships."""
    if explicit is not None:
        return Path(explicit).expanduser()
    component = plugins.get("models", name)
    for source in (configured or {}, component.details.get("checkpoints") or {}):
        for key, path in source.items():
            if abs(float(key) - sigma) < 1e-9:
                return Path(path)
    known = sorted({float(k) for k in (configured or {})} | {float(k) for k in (component.details.get("checkpoints") or {})})
    have = ", ".join(f"{k:g}" for k in known) or "none"
    raise CheckpointError(
        f"model '{name}' has no checkpoint for sigma {sigma:g} (sigmas with checkpoints: {have}).",
        f"Pass --checkpoint PATH, or set models.{name}.checkpoints.{sigma:g} in certkit.yaml.",
    )


def load_classifier(name: str, sigma: float, checkpoint: Path | None = None, configured: Mapping[float, Path] | None = None) -> LoadedModel:
    """Build the registered model ``name`` and load its weights for ``sigma``."""
    component = plugins.get("models", name)
    if component.details.get("pretraining"):
        classifiers = sorted(c.name for c in plugins.host().registry("models") if not c.details.get("pretraining"))
        raise CheckpointError(
            f"model '{name}' is a pretraining encoder-decoder, not a classifier.",
            f"Fine-tune it first (certkit finetune --init ...), then use a classifier: {', '.join(classifiers)}.",
        )
    path = find_checkpoint(component.name, sigma, checkpoint, configured)
    weights = read_weights(path)
    if weights.model_name is not None and weights.model_name not in (component.name, *component.aliases):
        raise CheckpointError(
            f"checkpoint {path} holds a '{weights.model_name}' model, not '{name}'.",
            f"Pass --model {weights.model_name}.",
        )
    options = dict(weights.model_options)
    if weights.input_spec is not None:
        options["spec"] = weights.input_spec
    model = component.obj(**options)
    state = weights.state_dict
    checkpoint_filter = component.details.get("checkpoint_filter")
    if checkpoint_filter is not None:
        state = checkpoint_filter(state, model)
    load_into(model, state, path)
    return LoadedModel(component.name, model.eval(), model.input_spec, path, weights.sha256)
