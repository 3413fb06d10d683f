"""Pretraining objectives of the denoisers: DDPM's noise prediction (``ddpm``) for diffusion
models, and Salman et al.'s MSE (``denoise-mse``) and stability (``denoise-stab``) objectives
for feed-forward denoisers. All take clean [0, 1] images and draw their own noise."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from certkit import CertkitError, LossOutput

from certkit_denoised.diffusion import DiffusionModel, OneShotDenoiser

#: Noise levels ([0, 1] units) of the one-step denoisings in the ddpm preview.
PREVIEW_SIGMAS = (0.25, 0.5, 1.0)


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)  # DistributedDataParallel keeps the model in .module


def _check_sigma(name: str, sigma: float | None) -> float:
    if sigma is None:
        raise CertkitError(f"{name} trains a denoiser for one noise level, and none was given.", "Pass --sigma, e.g. --sigma 0.25.")
    if not float(sigma) > 0:
        raise CertkitError(f"{name}: sigma must be > 0, got {sigma}.", "Pass e.g. --sigma 0.25.")
    return float(sigma)


class DDPMObjective:
    """DDPM's simple loss (Ho et al. 2020): t ~ U{0, ..., T-1}, eps ~ N(0, I),
    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps with x_0 = 2x - 1, loss = ||eps - eps_theta(x_t, t)||^2.

    The schedule is the model's (its diffusers scheduler adds the noise), so the objective has no
    noise options; ``preview_sigmas`` are the noise levels of the preview's one-step denoisings.
    """

    name = "ddpm"

    def __init__(self, preview_sigmas: tuple[float, ...] | list[float] = PREVIEW_SIGMAS) -> None:
        self.preview_sigmas = tuple(float(s) for s in preview_sigmas)

    def __call__(self, model: nn.Module, images: torch.Tensor, generator: torch.Generator | None = None) -> LossOutput:
        diffusion: DiffusionModel = _unwrap(model)
        if not isinstance(diffusion, DiffusionModel):
            raise CertkitError(f"ddpm trains diffusion models, not a {type(diffusion).__name__}.", "Pass --model unet-mini.")
        clean = 2 * images - 1  # [B, C, H, W] in [-1, 1]
        timesteps = torch.randint(0, diffusion.num_timesteps, (clean.shape[0],), generator=generator, device=clean.device)
        noise = torch.randn(clean.shape, generator=generator, device=clean.device, dtype=clean.dtype)
        noisy = diffusion.scheduler.add_noise(clean, noise, timesteps)  # sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps
        loss = F.mse_loss(model(noisy, timesteps).float(), noise.float())
        return LossOutput(loss, {"loss": float(loss.detach())})

    @torch.no_grad()
    def preview(self, model: nn.Module, images: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """``clean, (noisy, one-step denoising) per preview sigma``, each ``[B, C, H, W]`` in [0, 1]."""
        diffusion: DiffusionModel = _unwrap(model)
        was_training = diffusion.training
        diffusion.eval()
        try:
            columns = [images]
            for sigma in self.preview_sigmas:
                noisy = images + sigma * torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
                columns += [noisy.clamp(0, 1), OneShotDenoiser(diffusion, sigma)(noisy)]
            return tuple(columns)
        finally:
            diffusion.train(was_training)

    def options(self) -> dict:
        return {"preview_sigmas": list(self.preview_sigmas)}


class DenoiseMSE:
    """Salman et al.'s MSE objective: ``||D(x + delta) - x||^2``, delta ~ N(0, sigma^2 I), in [0, 1]
    pixel space, no clipping (the noise certification adds). One denoiser per sigma."""

    name = "denoise-mse"

    def __init__(self, sigma: float | None = None) -> None:
        self.sigma = _check_sigma(self.name, sigma)

    def _noisy(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return images + self.sigma * torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)

    def __call__(self, model: nn.Module, images: torch.Tensor, generator: torch.Generator | None = None) -> LossOutput:
        loss = F.mse_loss(model(self._noisy(images, generator)).float(), images.float())
        return LossOutput(loss, {"mse": float(loss.detach())})

    @torch.no_grad()
    def preview(self, model: nn.Module, images: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """``(clean, noisy, denoised)``, each ``[B, C, H, W]`` in [0, 1] (the last two clamped)."""
        denoiser = _unwrap(model)
        was_training = denoiser.training
        denoiser.eval()
        try:
            noisy = self._noisy(images, generator)
            return images, noisy.clamp(0, 1), denoiser(noisy).clamp(0, 1)
        finally:
            denoiser.train(was_training)

    def options(self) -> dict:
        return {"sigma": self.sigma}


class DenoiseStability(DenoiseMSE):
    """Salman et al.'s stability objective through a frozen classifier f:
    ``CE(f(D(x + delta)), argmax f(x)) + mse_weight * ||D(x + delta) - x||^2``.

    It needs no labels: the target is what the classifier says about the clean image. The
    classifier (``classifier``, by default the shipped clean vit-mini; ``classifier_checkpoint``
    or ``classifier_sigma`` choose its weights as for the ``denoised`` model) is frozen and not
    saved with the denoiser. Salman et al. fine-tune an MSE-trained denoiser this way.
    """

    name = "denoise-stab"

    def __init__(self, sigma: float | None = None, classifier: str | None = None, classifier_checkpoint: str | None = None, classifier_sigma: float | None = None, mse_weight: float = 0.0) -> None:
        from certkit_denoised.parts import load_part_classifier

        super().__init__(sigma)
        if mse_weight < 0:
            raise CertkitError(f"denoise-stab: mse_weight must be >= 0, got {mse_weight}.", "Pass e.g. -O mse_weight=1.")
        self.mse_weight = float(mse_weight)
        self.loaded = load_part_classifier(classifier, classifier_checkpoint, classifier_sigma)
        self.classifier = self.loaded.model.eval().requires_grad_(False)

    def __call__(self, model: nn.Module, images: torch.Tensor, generator: torch.Generator | None = None) -> LossOutput:
        classifier = self.classifier.to(images.device)
        with torch.no_grad():
            targets = classifier(images).argmax(1)  # [B]: f(x) on clean images
        denoised = model(self._noisy(images, generator))  # [B, C, H, W]
        logits = classifier(denoised).float()  # gradients reach D through the frozen f
        ce = F.cross_entropy(logits, targets)
        mse = F.mse_loss(denoised.float(), images.float())
        loss = ce + self.mse_weight * mse if self.mse_weight else ce
        agree = float((logits.argmax(1) == targets).float().mean())
        return LossOutput(loss, {"ce": float(ce.detach()), "mse": float(mse.detach()), "agree": agree})

    def options(self) -> dict:
        return {"sigma": self.sigma, "classifier": self.loaded.name, "classifier_sha256": self.loaded.checkpoint_sha256, "mse_weight": self.mse_weight}
