"""AdamW parameter groups: no weight decay on biases and norms (MAE), optional
layer-wise lr decay (BEiT/MAE fine-tuning) for models that say which layer a parameter is in."""

from __future__ import annotations

from torch import nn

#: fine-tuning also spares these tokens (timm's ``no_weight_decay()``); DMAE pretraining does not
FINETUNE_NO_DECAY = ("cls_token", "pos_embed", "dist_token")


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float | None = None, no_decay_names: tuple[str, ...] = ()) -> list[dict]:
    """Groups for AdamW, each with ``lr_scale`` that the trainer multiplies into the lr.

    Biases and 1-D tensors (norms) never get weight decay, nor do ``no_decay_names``.

    With ``layer_decay``, the model must define ``lr_layer_id(name) -> int`` and
    ``num_lr_layers`` (the head's id); layer i gets ``layer_decay ** (num_lr_layers - i)``.
    """
    get_layer = getattr(model, "lr_layer_id", None) if layer_decay is not None else None
    top = getattr(model, "num_lr_layers", 0)
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decay = not (param.ndim <= 1 or name.endswith(".bias") or name in no_decay_names)
        layer = get_layer(name) if get_layer is not None else top
        group = groups.setdefault(
            (layer, decay),
            {"params": [], "weight_decay": weight_decay if decay else 0.0, "lr_scale": (layer_decay ** (top - layer)) if get_layer is not None else 1.0},
        )
        group["params"].append(param)
    return list(groups.values())
