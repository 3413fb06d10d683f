"""The Gaussian smoothing distribution of Cohen, Rosenfeld & Kolter (2019): L2 certificates."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from certkit.smoothers.base import check_sigma
from certkit.stats import gaussian_radius


@dataclass(frozen=True)
class GaussianSmoother:
    """e ~ N(0, sigma^2 I) added to [0,1] images, before the model's normalization, no clipping.

    Certified L2 radius for a lower bound p on the top-class probability: sigma * Phi^-1(p).
    """

    sigma: float
    name: str = "gaussian"
    norm: str = "l2"

    def __post_init__(self) -> None:
        check_sigma(self.sigma)

    def perturb(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
        return images + self.sigma * noise

    def radius(self, p_lower: float) -> float:
        return gaussian_radius(self.sigma, p_lower)

    def options(self) -> dict:
        return {}
