"""Stability training (Li, Chen, Wang & Carin 2019, "Certified Adversarial Robustness with
Additive Noise"), a supervised objective for ``certkit finetune --objective stability``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from certkit import CertkitError, LossOutput

CE_INPUTS = ("clean", "noisy")


@dataclass
class StabilityTraining:
    """loss = CE(f(x), y) + gamma * KL(softmax f(x) || softmax f(x + delta)), delta ~ N(0, sigma^2 I).

    This is the form of Li et al. (2019), who take stability training from Zheng et al. (2016,
    "Improving the Robustness of Deep Neural Networks via Stability Training"): the task loss
    on the clean image plus gamma times the KL divergence from the clean prediction to the
    noisy one. Gradients flow through both branches. gamma defaults to 2, the value of the
    stability-training baseline in Jeong & Shin (2020). ``ce_on="noisy"`` puts the
    cross-entropy on x + delta instead, the variant some later papers use as a baseline.

    Clean and noisy images go through the model in one forward pass (one batch of 2B), so a
    BatchNorm model normalises them with shared statistics, and DDP sees one forward per step.
    Noise is added in [0, 1] pixel space, before the model's normalization, without clipping.
    """

    sigma: float
    gamma: float = 2.0
    ce_on: str = "clean"
    name: str = "stability"

    def __post_init__(self) -> None:
        if not self.sigma > 0:
            raise CertkitError(f"sigma must be > 0, got {self.sigma}.", "Pass e.g. --sigma 0.25.")
        if self.ce_on not in CE_INPUTS:
            raise CertkitError(f"stability: ce_on must be clean or noisy, got '{self.ce_on}'.", "Pass -O ce_on=clean or -O ce_on=noisy.")
        if self.gamma < 0:
            raise CertkitError(f"stability: gamma must be >= 0, got {self.gamma}.", "Pass e.g. -O gamma=2.")

    def __call__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> LossOutput:
        noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
        logits = model(torch.cat([images, images + self.sigma * noise])).float()  # [2B, K]
        clean, noisy = logits.chunk(2)  # [B, K] each
        ce = F.cross_entropy(clean if self.ce_on == "clean" else noisy, labels)
        log_p_clean, log_p_noisy = F.log_softmax(clean, dim=1), F.log_softmax(noisy, dim=1)
        kl = (log_p_clean.exp() * (log_p_clean - log_p_noisy)).sum(1).mean()
        logs = {"ce": float(ce.detach()), "kl": float(kl.detach()), "acc": float((noisy.argmax(1) == labels).float().mean())}
        return LossOutput(ce + self.gamma * kl, logs)

    def options(self) -> dict[str, float | str]:
        """What the run used, for run.json and checkpoints."""
        return {"sigma": self.sigma, "gamma": self.gamma, "ce_on": self.ce_on}
