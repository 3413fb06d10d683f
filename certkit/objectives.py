"""certkit's built-in supervised objective: cross-entropy on noisy images.

Registered as ``noisy-ce`` (kind ``objectives``, ``supervised=True``), Gaussian noise, and as
``noisy-uniform``, the same with uniform noise (for the L1 ``uniform`` smoother). It is what
``certkit finetune`` trains with unless ``--objective`` names another one. The noise comes from
a registered smoother's ``perturb`` (``-O smoother=NAME``), so a model is trained on exactly the
noise it will be certified with, and its weights record which (``InputSpec.noise``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from certkit.errors import CertkitError
from certkit.interfaces import LossOutput, Smoother
from certkit.smoothers import build_smoother


@dataclass
class NoisyCrossEntropy:
    """Cross-entropy on x + N(0, sigma^2 I) (Cohen et al. 2019), with optional consistency
    regularization (Jeong & Shin 2020).

    ``copies`` noisy copies of every image are classified; the loss is the mean cross-entropy
    over all copies plus, when consistency is on,
    ``consistency_lambda * mean_i KL(avg_softmax || softmax_i) + consistency_eta * H(avg_softmax)``.

    ``sigma=0`` trains on clean images (plain cross-entropy, consistency refused, ``smoother``
    None): the off-the-shelf classifier that denoised smoothing puts behind a denoiser.

    The defaults are the fine-tuning recipe of DMAE (and of ``certkit finetune``): consistency
    with lambda 2, eta 0.5 (0.1 at sigma >= 1), 2 copies, label smoothing 0.1. Cohen et al.'s
    plain Gaussian augmentation is ``consistency_lambda=0, consistency_eta=0,
    label_smoothing=0`` (``certkit finetune --no-consistency --label-smoothing 0``).
    ``copies`` defaults to 2 with consistency and 1 without. ``smoother`` names the registered
    smoother whose noise is added (default ``gaussian``).

    Mixup/cutmix (``mixup``, ``cutmix``: Beta alphas, 0 = off; DMAE's ImageNet recipes use 0.8
    and 1.0) is timm's ``Mixup`` applied as in the reference fine-tuning: *after* the noise, to
    the whole copy-major batch of noisy copies, with the label smoothing folded into its soft
    targets and ``SoftTargetCrossEntropy`` as the loss. In timm's batch mode every image is
    mixed with the mirror position of the batch, so both noisy copies of an image are mixed
    with the same partner image and the same lambda, and the consistency terms still compare
    like with like. timm draws from numpy's global RNG, which is seeded from ``generator`` first.
    """

    sigma: float
    consistency_lambda: float = 2.0
    consistency_eta: float | None = None
    copies: int | None = None
    label_smoothing: float = 0.1
    mixup: float = 0.0
    cutmix: float = 0.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    smoother: str | None = "gaussian"  # None at sigma 0: no noise
    name: str = "noisy-ce"

    def __post_init__(self) -> None:
        if not self.sigma >= 0:
            raise CertkitError(f"sigma must be >= 0, got {self.sigma}.", "Pass e.g. --sigma 0.25 (or --sigma 0 for a classifier of clean images).")
        if self.sigma == 0:
            if self.consistency_lambda > 0:
                # Without noise the copies are identical: consistency would only add the entropy term.
                raise CertkitError("consistency regularization needs noise, and sigma is 0.", "Pass --no-consistency to train on clean images.")
            self.smoother = None  # trained on clean images: the weights record no noise (C4)
        self._noise: Smoother | None = build_smoother(self.smoother, self.sigma) if self.sigma > 0 else None
        if self.consistency_eta is None:
            self.consistency_eta = 0.1 if self.sigma >= 1.0 else 0.5
        if self.copies is None:
            self.copies = 2 if self.consistency else 1
        if self.copies < 1 or (self.consistency and self.copies < 2):
            raise CertkitError(f"noisy-ce needs copies >= 1, and >= 2 with consistency regularization; got {self.copies}.", "Pass e.g. -O copies=2.")
        if self.mixup < 0 or self.cutmix < 0 or not 0 <= self.mixup_prob <= 1 or not 0 <= self.mixup_switch_prob <= 1:
            raise CertkitError("mixup and cutmix must be >= 0 and the mixup probabilities in [0, 1].", "Pass e.g. --mixup 0.8 --cutmix 1.0 (0 turns them off).")
        self._mixers: dict[int, object] = {}

    @property
    def consistency(self) -> bool:
        return self.consistency_lambda > 0 or (self.consistency_eta or 0.0) > 0

    def __call__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> LossOutput:
        batch = images.shape[0]
        repeated = images.repeat(self.copies, 1, 1, 1)  # [m*B, C, H, W], copy-major
        noisy = repeated if self._noise is None else self._noise.perturb(repeated, generator)  # [m*B, C, H, W]
        targets = labels.repeat(self.copies)
        if self.mixing:
            from timm.loss import SoftTargetCrossEntropy

            if len(noisy) % 2:
                raise CertkitError(f"mixup/cutmix pair images within a batch and need an even number of noisy images per step, got {len(noisy)}.", "Use an even --batch.")
            # timm draws lambda and the cutmix box from numpy's global RNG: seed it from this
            # objective's generator, so the mixing is as reproducible as the noise.
            np.random.seed(int(torch.randint(0, 2**32 - 1, (1,), generator=generator, device=generator.device)))
            noisy, soft_targets = self._mixer(model)(noisy, targets)  # after the noise, as the reference
            logits = model(noisy)  # [m*B, K]
            loss = SoftTargetCrossEntropy()(logits.float(), soft_targets)
            targets = soft_targets.argmax(1)  # the dominant label, for the accuracy log
        else:
            logits = model(noisy)  # [m*B, K]
            loss = F.cross_entropy(logits.float(), targets, label_smoothing=self.label_smoothing)
        logs = {"ce": float(loss.detach()), "acc": float((logits.argmax(1) == targets).float().mean())}
        if self.copies > 1 and self.consistency:
            log_probs = F.log_softmax(logits.float(), dim=1).view(self.copies, batch, -1)  # [m, B, K]
            avg = log_probs.exp().mean(0)  # [B, K]
            log_avg = avg.clamp_min(1e-12).log()
            kl = (avg.unsqueeze(0) * (log_avg.unsqueeze(0) - log_probs)).sum(-1).mean()
            entropy = -(avg * log_avg).sum(-1).mean()
            loss = loss + self.consistency_lambda * kl + self.consistency_eta * entropy
            logs.update(kl=float(kl.detach()), entropy=float(entropy.detach()))
        return LossOutput(loss, logs)

    @property
    def mixing(self) -> bool:
        return (self.mixup > 0 or self.cutmix > 0) and self.mixup_prob > 0

    def _mixer(self, model: nn.Module):
        """timm's Mixup for the model's class count (known once the model is seen)."""
        num_classes = getattr(model, "module", model).input_spec.num_classes
        if num_classes not in self._mixers:
            from timm.data import Mixup

            self._mixers[num_classes] = Mixup(
                mixup_alpha=self.mixup, cutmix_alpha=self.cutmix, prob=self.mixup_prob, switch_prob=self.mixup_switch_prob,
                mode="batch", label_smoothing=self.label_smoothing, num_classes=num_classes,
            )
        return self._mixers[num_classes]

    def options(self) -> dict[str, float | int]:
        """What the run used, for run.json and checkpoints."""
        used = {"sigma": self.sigma, "consistency_lambda": self.consistency_lambda, "consistency_eta": self.consistency_eta, "copies": self.copies, "label_smoothing": self.label_smoothing, "smoother": self.smoother}
        if self.mixing:
            used.update(mixup=self.mixup, cutmix=self.cutmix, mixup_prob=self.mixup_prob, mixup_switch_prob=self.mixup_switch_prob)
        return used
