"""The DMAE pretraining objective: reconstruct the clean image from a noisy, 75%-masked one."""

from __future__ import annotations

import torch
from torch import nn

from certkit import LossOutput
from certkit_dmae.corruption import NoiseMaskCorruption
from certkit_dmae.mae import LOSS_ON, DenoisingMAE, patch_stats


class DMAEObjective:
    """DMAE's defaults: sigma 0.25, mask ratio 0.75, MSE over *all* patches against the
    per-patch normalized clean image. ``loss_on="masked"`` gives MAE's loss instead (with
    ``sigma=0``, plain MAE pretraining).

    The model is a :class:`~certkit_dmae.mae.DenoisingMAE`, possibly wrapped in
    DistributedDataParallel: ``__call__`` only uses its ``forward``.
    """

    name = "dmae"

    def __init__(self, sigma: float = 0.25, mask_ratio: float = 0.75, loss_on: str = "all", norm_pix: bool = True) -> None:
        if loss_on not in LOSS_ON:
            raise ValueError(f"loss_on must be one of {LOSS_ON}, got {loss_on!r}")
        if loss_on == "masked" and mask_ratio == 0:
            raise ValueError("loss_on='masked' needs mask_ratio > 0 (no patch would be in the loss)")
        self.corruption = NoiseMaskCorruption(sigma, mask_ratio)
        self.loss_on = loss_on
        self.norm_pix = bool(norm_pix)

    @property
    def sigma(self) -> float:
        return self.corruption.sigma

    @property
    def mask_ratio(self) -> float:
        return self.corruption.mask_ratio

    def __call__(self, model: nn.Module, images: torch.Tensor, generator: torch.Generator | None = None) -> LossOutput:
        """Corrupt ``images`` ([0, 1], ``[B, C, H, W]``), reconstruct, and score against the clean ones.

        Logs ``loss`` (the optimised one), ``loss_masked`` and ``loss_visible`` (mean per-patch
        MSE over removed / kept patches; 0 when there are none).
        """
        batch = self.corruption(images, generator)
        mask_ratio = float(batch.extras["mask_ratio"])
        out = model(batch.images, images, mask_ratio=mask_ratio, generator=generator, loss_on=self.loss_on, norm_pix=self.norm_pix)
        masked = (out.patch_loss * out.mask).sum() / out.mask.sum().clamp_min(1)
        visible = (out.patch_loss * (1 - out.mask)).sum() / (1 - out.mask).sum().clamp_min(1)
        loss, loss_masked, loss_visible = torch.stack([out.loss.detach().float(), masked, visible]).tolist()  # one sync
        return LossOutput(out.loss, {"loss": loss, "loss_masked": loss_masked, "loss_visible": loss_visible})

    @torch.no_grad()
    def preview(
        self, model: nn.Module, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(clean, noisy_masked, reconstruction)``, each ``[B, C, H, W]`` in [0, 1], for a picture
        like the DMAE demo's.

        ``noisy_masked`` shows removed patches as mid-gray (0.5). The reconstruction is the full
        prediction (DMAE reconstructs every patch, so nothing is pasted back); a norm-pix
        prediction is mapped back with the *clean* patch's mean and std (as MAE's visualization
        does; it is for display only), then the model's mean/std normalization is undone. Only
        the two displayed images are clamped to [0, 1].
        """
        mae: DenoisingMAE = getattr(model, "module", model)  # unwrap DistributedDataParallel
        was_training = mae.training
        mae.eval()
        try:
            batch = self.corruption(images, generator)
            latent, mask, ids_restore = mae.forward_encoder(batch.images, self.mask_ratio, generator)
            pred = mae.forward_decoder(latent, ids_restore).float()  # [N, L, p*p*C], normalized space
            if self.norm_pix:
                mean, std = patch_stats(mae.patchify(mae.normalize(images)))  # [N, L, 1] each
                pred = pred * std + mean
            reconstruction = mae.unpatchify(pred) * mae.normalize.std + mae.normalize.mean  # [N, C, H, W], [0,1] space
            removed = mae.unpatchify(mask.unsqueeze(-1).expand(-1, -1, pred.shape[-1]))  # [N, C, H, W], 1 = removed
            noisy_masked = batch.images * (1 - removed) + 0.5 * removed
        finally:
            mae.train(was_training)
        return images, noisy_masked.clamp(0, 1), reconstruction.clamp(0, 1)
