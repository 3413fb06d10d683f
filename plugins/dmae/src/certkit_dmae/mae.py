"""The DMAE encoder-decoder: MAE's masked autoencoder ViT, trained to reconstruct the *clean*
image from a noisy one with 75% of its patches masked (Wu et al., ICLR 2023).

Follows the reference ``models_dmae.py`` (quanlin-wu/dmae), itself MAE's ``models_mae.py``, with
timm's ``PatchEmbed`` and ``Block``, so parameter names are those of the released checkpoints
(``cls_token``, ``pos_embed``, ``patch_embed.proj.*``, ``blocks.N.*``, ``norm.*``, ``mask_token``,
``decoder_*``). Differences from the reference, none of which changes the numbers:

- Noise is not added here: the corruption (:mod:`certkit_dmae.corruption`) adds it in [0, 1]
  space, and ``forward`` receives both the noisy and the clean batch.
- Normalization is the model's own first step (:class:`certkit.Normalize`, not in the state dict),
  applied to the noisy input *and* to the clean target, as the reference does before its loss.
- Any channel count and rectangular grids (the reference hard-codes 3 channels, square images).
- The reference resizes both images to 224 px after adding noise; certkit refuses data that does
  not fit the input spec instead.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import torch
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block
from torch import nn

from certkit import InputSpec, Normalize
from certkit_dmae.pos_embed import sincos_2d

LOSS_ON = ("all", "masked")
#: MAE's ``norm_layer=partial(nn.LayerNorm, eps=1e-6)`` for every encoder/decoder LayerNorm.
LAYER_NORM = partial(nn.LayerNorm, eps=1e-6)


class MAEOutput(NamedTuple):
    """``forward``'s result (a NamedTuple, so DDP can traverse it).

    ``pred`` is in the target's space (per-patch normalized when norm-pix); ``mask`` is 1 where
    a patch was removed; ``patch_loss`` is the detached per-patch MSE, for logging.
    """

    loss: torch.Tensor  # []
    pred: torch.Tensor  # [N, L, p*p*C]
    mask: torch.Tensor  # [N, L]
    patch_loss: torch.Tensor  # [N, L]


def patch_stats(patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-patch mean and ``sqrt(var + 1e-6)`` of ``[N, L, P]``, as MAE's norm_pix_loss.

    ``var`` is the *unbiased* variance (``Tensor.var`` default), exactly as the reference
    ``forward_loss`` (models_dmae.py / models_mae.py: ``target.var(dim=-1, keepdim=True)``).
    """
    mean = patches.mean(dim=-1, keepdim=True)  # [N, L, 1]
    var = patches.var(dim=-1, keepdim=True)  # [N, L, 1], unbiased
    return mean, (var + 1.0e-6) ** 0.5


class DenoisingMAE(nn.Module):
    """Masked autoencoder ViT over [0, 1] images; ``input_spec`` says which images."""

    def __init__(
        self,
        spec: InputSpec,
        patch_size: int = 16,
        embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 8,
        decoder_num_heads: int = 16,
        mlp_ratio: float = 4.0,
        norm_layer: type[nn.Module] | partial = LAYER_NORM,
        norm_pix_loss: bool = True,
    ) -> None:
        super().__init__()
        self.input_spec = spec
        self.normalize = Normalize(spec.mean, spec.std)
        self.norm_pix_loss = norm_pix_loss
        self.patch_size = patch_size

        # encoder
        self.patch_embed = PatchEmbed(spec.image_size, patch_size, spec.channels, embed_dim)
        num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim), requires_grad=False)  # fixed sin-cos
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=True, norm_layer=norm_layer) for _ in range(depth)
        )
        self.norm = norm_layer(embed_dim)

        # decoder
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim, bias=True)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, decoder_embed_dim), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(
            Block(decoder_embed_dim, decoder_num_heads, mlp_ratio=mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
            for _ in range(decoder_depth)
        )
        self.decoder_norm = norm_layer(decoder_embed_dim)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_size**2 * spec.channels, bias=True)

        self.initialize_weights()

    def initialize_weights(self) -> None:
        """MAE's initialization, in MAE's order (the RNG stream then matches it too)."""
        grid = self.patch_embed.grid_size
        self.pos_embed.data.copy_(sincos_2d(self.pos_embed.shape[-1], grid).unsqueeze(0))
        self.decoder_pos_embed.data.copy_(sincos_2d(self.decoder_pos_embed.shape[-1], grid).unsqueeze(0))
        # patch_embed is initialised like a Linear layer (xavier on the flattened kernel), not a Conv2d
        weight = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        self.apply(_init_linear_and_norm)

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, C, H, W] -> [N, L, p*p*C]``; within a patch, pixel-major and channel-minor (MAE's order)."""
        p = self.patch_size
        n, c, h, w = images.shape
        x = images.reshape(n, c, h // p, p, w // p, p)  # [N, C, h, p, w, p]
        x = torch.einsum("nchpwq->nhwpqc", x)  # [N, h, w, p, p, C]
        return x.reshape(n, (h // p) * (w // p), p * p * c)  # [N, L, p*p*C]

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """``[N, L, p*p*C] -> [N, C, H, W]``, the inverse of :meth:`patchify`."""
        p = self.patch_size
        gh, gw = self.patch_embed.grid_size
        c = patches.shape[-1] // (p * p)
        x = patches.reshape(patches.shape[0], gh, gw, p, p, c)  # [N, h, w, p, p, C]
        x = torch.einsum("nhwpqc->nchpwq", x)  # [N, C, h, p, w, p]
        return x.reshape(patches.shape[0], c, gh * p, gw * p)  # [N, C, H, W]

    def random_masking(
        self, x: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keep ``int(L * (1 - mask_ratio))`` tokens per sample, a fresh random subset each.

        The per-sample shuffle is the argsort of uniform noise; ``generator`` must live on
        ``x``'s device. Returns the kept tokens ``[N, L_keep, D]``, the mask ``[N, L]`` (1 =
        removed, 0 = kept) and ``ids_restore`` ``[N, L]`` that undoes the shuffle.
        """
        n, length, dim = x.shape
        len_keep = int(length * (1 - mask_ratio))
        noise = torch.rand(n, length, device=x.device, generator=generator)  # [N, L]
        ids_shuffle = torch.argsort(noise, dim=1)  # small noise first: those are kept
        ids_restore = torch.argsort(ids_shuffle, dim=1)  # [N, L]
        ids_keep = ids_shuffle[:, :len_keep]  # [N, L_keep]
        x_kept = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, dim))  # [N, L_keep, D]
        mask = torch.ones(n, length, device=x.device)
        mask[:, :len_keep] = 0
        mask = torch.gather(mask, 1, ids_restore)  # [N, L], back in patch order
        return x_kept, mask, ids_restore

    def forward_encoder(
        self, images_noisy: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode the visible patches of noisy [0, 1] images: ``[N, 1 + L_keep, D]``, mask, ids_restore."""
        x = self.patch_embed(self.normalize(images_noisy))  # [N, L, D]
        x = x + self.pos_embed[:, 1:, :]
        x, mask, ids_restore = self.random_masking(x, mask_ratio, generator)  # [N, L_keep, D]
        cls_tokens = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)  # [N, 1, D]
        x = torch.cat([cls_tokens, x], dim=1)  # [N, 1 + L_keep, D]
        for block in self.blocks:
            x = block(x)
        return self.norm(x), mask, ids_restore

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Predict every patch from the encoded visible ones: ``[N, L, p*p*C]``."""
        x = self.decoder_embed(latent)  # [N, 1 + L_keep, Dd]
        n, length, dim = x.shape[0], ids_restore.shape[1], x.shape[2]
        mask_tokens = self.mask_token.expand(n, length + 1 - x.shape[1], -1)  # [N, L - L_keep, Dd]
        patches = torch.cat([x[:, 1:, :], mask_tokens], dim=1)  # [N, L, Dd], shuffled order
        patches = torch.gather(patches, 1, ids_restore.unsqueeze(-1).expand(-1, -1, dim))  # unshuffle
        x = torch.cat([x[:, :1, :], patches], dim=1) + self.decoder_pos_embed  # [N, 1 + L, Dd]
        for block in self.decoder_blocks:
            x = block(x)
        x = self.decoder_pred(self.decoder_norm(x))  # [N, 1 + L, p*p*C]
        return x[:, 1:, :]  # drop the class token

    def patch_losses(self, clean_images: torch.Tensor, pred: torch.Tensor, norm_pix: bool | None = None) -> torch.Tensor:
        """Per-patch MSE ``[N, L]`` between ``pred`` and the clean target.

        The target is the clean image *after* the model's mean/std normalization, patchified,
        as in the reference (its ``forward`` normalizes ``imgs`` before ``forward_loss``), then
        per-patch normalized when ``norm_pix`` (default: ``self.norm_pix_loss``).
        """
        target = self.patchify(self.normalize(clean_images))  # [N, L, p*p*C]
        if self.norm_pix_loss if norm_pix is None else norm_pix:
            mean, std = patch_stats(target)
            target = (target - mean) / std
        return ((pred.float() - target) ** 2).mean(dim=-1)  # [N, L]

    def forward_loss(
        self, clean_images: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, loss_on: str = "all", norm_pix: bool | None = None
    ) -> torch.Tensor:
        """DMAE's loss (``loss_on="all"``: mean over every patch, "reconstruct and denoise all
        pixels") or MAE's (``"masked"``: mean over removed patches only)."""
        return reduce_patch_losses(self.patch_losses(clean_images, pred, norm_pix), mask, loss_on)

    def forward(
        self,
        images_noisy: torch.Tensor,
        clean_images: torch.Tensor,
        mask_ratio: float = 0.75,
        generator: torch.Generator | None = None,
        loss_on: str = "all",
        norm_pix: bool | None = None,
    ) -> MAEOutput:
        latent, mask, ids_restore = self.forward_encoder(images_noisy, mask_ratio, generator)
        pred = self.forward_decoder(latent, ids_restore)  # [N, L, p*p*C]
        patch_loss = self.patch_losses(clean_images, pred, norm_pix)  # [N, L]
        return MAEOutput(reduce_patch_losses(patch_loss, mask, loss_on), pred, mask, patch_loss.detach())


def reduce_patch_losses(patch_loss: torch.Tensor, mask: torch.Tensor, loss_on: str) -> torch.Tensor:
    """``[N, L]`` per-patch losses -> the scalar loss over ``loss_on`` patches."""
    if loss_on == "all":
        return patch_loss.mean()
    if loss_on == "masked":
        return (patch_loss * mask).sum() / mask.sum()
    raise ValueError(f"loss_on must be one of {LOSS_ON}, got {loss_on!r}")


def _init_linear_and_norm(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)  # as MAE, following the official JAX ViT
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
