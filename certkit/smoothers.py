"""The Gaussian smoothing distribution of Cohen, Rosenfeld & Kolter (2019)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from certkit.errors import CertkitError
from certkit.stats import gaussian_radius


@dataclass(frozen=True)
class GaussianSmoother:
    """e ~ N(0, sigma^2 I) added to [0,1] images, before the model's normalization, no clipping.

    Certified radius for a lower bound p on the top-class probability: sigma * Phi^-1(p).
    """

    sigma: float
    name: str = "gaussian"

    def __post_init__(self) -> None:
        if not self.sigma > 0:
            raise CertkitError(f"sigma must be > 0, got {self.sigma}.", "Pass e.g. --sigma 0.25.")

    def perturb(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
        return images + self.sigma * noise

    def radius(self, p_lower: float) -> float:
        return gaussian_radius(self.sigma, p_lower)
