"""DMAE's corruption: Gaussian noise on every pixel, then 75% of the patches masked.

Only the noise is applied to pixels here. The masking happens inside the model, after patch
embedding (:meth:`certkit_dmae.mae.DenoisingMAE.random_masking`), as in MAE: masked patches
are dropped from the encoder's sequence rather than painted over, so the batch only carries the
ratio (``extras["mask_ratio"]``) for the model to apply.
"""

from __future__ import annotations

import torch

from certkit.interfaces import CorruptedBatch


class NoiseMaskCorruption:
    """``x + sigma * N(0, I)`` in [0, 1] space, no clipping (the smoothing noise of the
    certificate is unclipped too), plus the patch mask ratio for the model."""

    name = "noise-mask"

    def __init__(self, sigma: float = 0.25, mask_ratio: float = 0.75) -> None:
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        if not 0 <= mask_ratio < 1:
            raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
        self.sigma = float(sigma)
        self.mask_ratio = float(mask_ratio)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> CorruptedBatch:
        """``images`` ``[B, C, H, W]`` in [0, 1]; ``generator`` (on ``images``' device) makes it reproducible."""
        noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
        return CorruptedBatch(images=images + self.sigma * noise, extras={"mask_ratio": torch.tensor(self.mask_ratio)})

    def __repr__(self) -> str:
        return f"NoiseMaskCorruption(sigma={self.sigma:g}, mask_ratio={self.mask_ratio:g})"
