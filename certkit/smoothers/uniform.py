"""Uniform noise and its L1 certificate (Yang et al. 2020, "Randomized smoothing of all shapes
and sizes", Table 1; also Lee et al. 2019).

Noise is U[-lam, lam]^d, with lam = sqrt(3) * sigma: ``--sigma`` stays the per-pixel standard
deviation, as for the Gaussian smoother (the variance of U[-lam, lam] is lam^2 / 3), so the two
are compared at the same noise energy, as Yang et al. do. A lower bound p > 1/2 on the top-class
probability certifies the L1 radius R = 2 lam (p - 1/2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from certkit.smoothers.base import check_sigma


def uniform_half_width(sigma: float) -> float:
    """lam of U[-lam, lam] whose standard deviation is ``sigma``."""
    return math.sqrt(3.0) * sigma


def uniform_l1_radius(half_width: float, p_lower: float) -> float:
    """Yang et al.'s L1 radius 2 lam (p - 1/2); 0 at p = 1/2, lam at p = 1."""
    return 2.0 * half_width * (min(p_lower, 1.0) - 0.5)


@dataclass(frozen=True)
class UniformSmoother:
    """e ~ U[-lam, lam]^d, lam = sqrt(3) sigma, added to [0,1] images (no clipping); L1 radius
    2 lam (p - 1/2)."""

    sigma: float
    name: str = "uniform"
    norm: str = "l1"

    def __post_init__(self) -> None:
        check_sigma(self.sigma)

    @property
    def half_width(self) -> float:
        return uniform_half_width(self.sigma)

    def perturb(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        unit = torch.rand(images.shape, generator=generator, device=images.device, dtype=images.dtype)
        return images + self.half_width * (2.0 * unit - 1.0)

    def radius(self, p_lower: float) -> float:
        return uniform_l1_radius(self.half_width, p_lower)

    def options(self) -> dict:
        return {}
