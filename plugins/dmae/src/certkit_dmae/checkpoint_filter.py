"""Turning DMAE/MAE checkpoint state dicts into ones certkit's ViTs load strictly.

certkit has already unwrapped ``{'model': state_dict, ...}`` (and loaded it with
``weights_only=True``). The format is recognised by its keys:

- *pretrained* (``mask_token`` / ``decoder_*`` present; DMAE/MAE pretraining or a
  :class:`~certkit_dmae.mae.DenoisingMAE`) into a classifier: the decoder and ``mask_token`` are
  dropped, so is the encoder's final ``norm`` (global pooling puts ``fc_norm`` after the pool
  instead; MAE's fine-tuning model deletes ``norm``), and the classifier-only ``fc_norm`` /
  ``head`` are initialised as MAE's fine-tuning does: LayerNorm 1/0, head bias 0, head weight
  ``trunc_normal(std=2e-5)`` (drawn from torch's global RNG, so the training seed governs it);
- *fine-tuned*, timm keys (``fc_norm.*``, ``head.*``): passed through;
- anything into a DenoisingMAE (to continue pretraining): passed through.

In every case a DDP ``module.`` prefix is stripped. For classifiers, a ``pos_embed`` of another
(square) patch grid is resized by bicubic interpolation of its patch part, as MAE's
``interpolate_pos_embed`` (bicubic, no antialiasing; prefix tokens kept). Anything that still
does not fit is left for the strict loader to report.
"""

from __future__ import annotations

import math

import torch
from timm.layers import resample_abs_pos_embed
from torch import nn

DDP_PREFIX = "module."
#: Keys only a pretraining (encoder-decoder) checkpoint has.
PRETRAIN_ONLY = ("mask_token", "decoder_")
#: Keys only a classifier has: MAE's fine-tuning initialises them fresh.
CLASSIFIER_ONLY = ("fc_norm.", "head.")
HEAD_INIT_STD = 2e-5


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """A new state dict for ``model`` (a ViTClassifier or a DenoisingMAE); the input is not modified."""
    state = {_strip_ddp(key): value for key, value in state_dict.items()}
    own = model.state_dict()
    if is_pretrained_format(own):
        return state  # continuing pretraining: its fixed sin-cos tables must fit as they are
    if is_pretrained_format(state):
        state = _encoder_for_classifier(state, own)
    if "pos_embed" in state and "pos_embed" in own:
        state["pos_embed"] = _resize_pos_embed(state["pos_embed"], model)
    return state


def is_pretrained_format(state: dict[str, torch.Tensor]) -> bool:
    return any(key.startswith(PRETRAIN_ONLY) for key in state)


def _strip_ddp(key: str) -> str:
    return key[len(DDP_PREFIX) :] if key.startswith(DDP_PREFIX) else key


def _encoder_for_classifier(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    encoder = {k: v for k, v in state.items() if not k.startswith(PRETRAIN_ONLY)}
    if "norm.weight" not in own:  # global-pool classifier: timm's `norm` is Identity, `fc_norm` replaces it
        encoder = {k: v for k, v in encoder.items() if not k.startswith("norm.")}
    for key, tensor in own.items():
        if key not in encoder and key.startswith(CLASSIFIER_ONLY):
            encoder[key] = _fresh(key, tensor)
    return encoder


def _fresh(key: str, like: torch.Tensor) -> torch.Tensor:
    if key == "head.weight":
        return nn.init.trunc_normal_(torch.empty_like(like), std=HEAD_INIT_STD)
    if key.endswith(".weight") and like.ndim == 1:  # LayerNorm scale
        return torch.ones_like(like)
    return torch.zeros_like(like)


def _resize_pos_embed(pos_embed: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """``[1, prefix + h*w, D]`` -> the model's grid; unchanged when it fits or cannot be resized."""
    target = model.state_dict()["pos_embed"]
    if pos_embed.shape == target.shape or pos_embed.ndim != 3 or pos_embed.shape[-1] != target.shape[-1]:
        return pos_embed
    grid = tuple(model.patch_embed.grid_size)
    prefix = target.shape[1] - grid[0] * grid[1]
    old_side = math.isqrt(pos_embed.shape[1] - prefix)
    if prefix < 0 or old_side * old_side != pos_embed.shape[1] - prefix:
        return pos_embed  # not a square grid with the same prefix tokens: the loader reports the mismatch
    return resample_abs_pos_embed(
        pos_embed, new_size=list(grid), old_size=[old_side, old_side], num_prefix_tokens=prefix, interpolation="bicubic", antialias=False
    )
