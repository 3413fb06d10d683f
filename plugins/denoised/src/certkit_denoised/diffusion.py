"""Diffusion denoisers on ``diffusers``, and Carlini et al.'s one-shot denoising.

A :class:`DiffusionModel` is a ``diffusers.UNet2DModel`` plus the noise schedule it was trained
with (a ``DDPMScheduler``): given x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, with x_0 in
[-1, 1], it predicts eps. ``unet-mini`` is a small one for 1x28x28 images, pretrained by
``certkit pretrain ddpm``; :func:`load_diffusers_dir` reads any local diffusers UNet2DModel with
its scheduler config (e.g. a DDPM pipeline saved with ``save_pretrained``). Nothing downloads.

:class:`OneShotDenoiser` is the denoiser of Carlini et al. (ICLR 2023, "(Certified!!)
Adversarial Robustness for Free!") for smoothing noise sigma on [0, 1] images:

1. ``x -> 2x - 1`` maps [0, 1] to the model's [-1, 1], so the noise std becomes 2 sigma;
2. t* is the timestep whose (1 - abar_t) / abar_t is closest to (2 sigma)^2;
3. ``x_t = sqrt(abar_t*) (2x - 1)``: the noisy image scaled as the model saw x_t in training;
4. one noise prediction eps, clean estimate ``x0 = (x_t - sqrt(1 - abar_t*) eps) / sqrt(abar_t*)``,
   clipped to [-1, 1] (as Carlini et al.'s ``clip_denoised=True``);
5. ``(x0 + 1) / 2`` back to [0, 1], for the classifier.

A discrete schedule rarely has (1 - abar)/abar exactly (2 sigma)^2: t*'s own noise level,
``effective_sigma = sqrt((1 - abar_t*)/abar_t*) / 2`` in [0, 1] units, is recorded
(:class:`TimestepChoice`), and a sigma whose closest timestep is more than 10% off is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from certkit import CertkitError, InputSpec

#: Relative distance (of the noise std) within which t*'s noise level must match 2 sigma.
SIGMA_TOLERANCE = 0.1
#: DDPM's schedule (Ho et al. 2020): 1000 steps, betas linear from 1e-4 to 0.02.
DDPM_SCHEDULE = {"num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02}
PREDICTIONS = ("epsilon", "sample", "v_prediction")

FASHION_MNIST_DENOISER = InputSpec(
    image_size=(28, 28),
    channels=1,
    mean=(0.5,),  # (x - 0.5) / 0.5 = 2x - 1: the [-1, 1] range diffusion models use
    std=(0.5,),
    num_classes=10,
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
)


class DenoiserError(CertkitError):
    """A denoiser that cannot be used: not a model, wrong image size, no fitting timestep, ..."""


class DiffusionModel(nn.Module):
    """A diffusers UNet2DModel and its training noise schedule: ``forward(x_t, t)`` predicts
    what ``prediction`` says (the noise, for every model certkit trains)."""

    def __init__(self, unet: nn.Module, scheduler, spec: InputSpec, prediction: str = "epsilon") -> None:
        super().__init__()
        if prediction not in PREDICTIONS:
            raise DenoiserError(f"diffusion model predicts '{prediction}', which one-shot denoising does not know.", f"Use a model whose prediction_type is one of {', '.join(PREDICTIONS)}.")
        self.unet = unet
        self.scheduler = scheduler  # diffusers scheduler: the schedule, not a module
        self.input_spec = spec
        self.prediction = prediction
        self.register_buffer("alphas_cumprod", scheduler.alphas_cumprod.detach().double().clone(), persistent=False)

    @property
    def num_timesteps(self) -> int:
        return int(self.alphas_cumprod.numel())

    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        out = self.unet(noisy, timesteps).sample  # [B, C', H, W]
        channels = noisy.shape[1]
        return out[:, :channels] if out.shape[1] == 2 * channels else out  # learned-variance models: the mean part


def unet_mini() -> DiffusionModel:
    """unet-mini: a diffusers UNet2DModel for 1x28x28 images (28 -> 14 -> 7, 16/32/64 channels,
    one ResNet block per level, self-attention at 7x7), DDPM's linear schedule, 0.6 M parameters."""
    from diffusers import DDPMScheduler, UNet2DModel

    unet = UNet2DModel(
        sample_size=28,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(16, 32, 64),
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        attention_head_dim=16,
    )
    return DiffusionModel(unet, DDPMScheduler(**DDPM_SCHEDULE), FASHION_MNIST_DENOISER)


@dataclass(frozen=True)
class TimestepChoice:
    """Which timestep serves smoothing noise ``sigma`` ([0, 1] pixel units), and how well."""

    timestep: int
    sigma: float
    effective_sigma: float  # sqrt((1 - abar_t)/abar_t) / 2: the noise level t* was trained for, in [0, 1] units
    alpha_bar: float

    @property
    def relative_error(self) -> float:
        return abs(self.effective_sigma - self.sigma) / self.sigma

    def describe(self) -> str:
        return f"t*={self.timestep}, effective sigma {self.effective_sigma:.4f} ({100 * (self.effective_sigma / self.sigma - 1):+.2f}% of {self.sigma:g})"


def reachable_sigmas(alphas_cumprod: torch.Tensor) -> tuple[float, float]:
    """The smallest and largest noise level ([0, 1] units) the schedule's timesteps stand for."""
    ratio = (1 - alphas_cumprod.double()) / alphas_cumprod.double()
    return math.sqrt(float(ratio.min())) / 2, math.sqrt(float(ratio.max())) / 2


def choose_timestep(alphas_cumprod: torch.Tensor, sigma: float, tolerance: float = SIGMA_TOLERANCE) -> TimestepChoice:
    """t* = argmin_t |(1 - abar_t)/abar_t - (2 sigma)^2|; refused when its noise std is more than
    ``tolerance`` (relative) away from 2 sigma."""
    low, high = reachable_sigmas(alphas_cumprod)
    reach = f"its timesteps stand for sigma {low:.3g} to {high:.3g} ([0, 1] pixel units)"
    if not sigma > 0:
        raise DenoiserError(f"one-shot denoising needs a noise level sigma > 0, got {sigma:g}.", f"Certify at a sigma > 0; {reach}.")
    abar = alphas_cumprod.double()
    ratio = (1 - abar) / abar
    t = int(torch.argmin((ratio - (2 * sigma) ** 2).abs()))
    choice = TimestepChoice(t, float(sigma), math.sqrt(float(ratio[t])) / 2, float(abar[t]))
    if choice.relative_error > tolerance:
        raise DenoiserError(
            f"no timestep of the denoiser's schedule is within {tolerance:.0%} of noise level sigma {sigma:g} (the closest, t={t}, stands for sigma {choice.effective_sigma:.3g}); {reach}.",
            "Certify at a sigma the schedule covers, or use a denoiser with a finer or longer schedule.",
        )
    return choice


class OneShotDenoiser(nn.Module):
    """Carlini et al.'s denoiser for smoothing noise ``sigma``: noisy [0, 1] images -> one
    diffusion step -> clean estimates in [0, 1] (see the module docstring for the mapping)."""

    def __init__(self, model: DiffusionModel, sigma: float, clip: bool = True) -> None:
        super().__init__()
        self.model = model
        self.choice = choose_timestep(model.alphas_cumprod, sigma)
        self.clip = clip
        self.sqrt_alpha_bar = math.sqrt(self.choice.alpha_bar)
        self.sqrt_one_minus_alpha_bar = math.sqrt(1 - self.choice.alpha_bar)
        self.register_buffer("timestep", torch.tensor(self.choice.timestep, dtype=torch.long), persistent=False)

    @property
    def input_spec(self) -> InputSpec:
        return self.model.input_spec

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        x_t = self.sqrt_alpha_bar * (2 * noisy - 1)  # [B, C, H, W]: sqrt(abar) (x + 2 sigma n) in [-1, 1] space
        out = self.model(x_t, self.timestep)  # [B, C, H, W]
        if self.model.prediction == "epsilon":
            x0 = (x_t - self.sqrt_one_minus_alpha_bar * out) / self.sqrt_alpha_bar
        elif self.model.prediction == "v_prediction":
            x0 = self.sqrt_alpha_bar * x_t - self.sqrt_one_minus_alpha_bar * out
        else:
            x0 = out
        if self.clip:
            x0 = x0.clamp(-1, 1)
        return (x0 + 1) / 2


def _not_diffusers(path: Path, why: str) -> DenoiserError:
    return DenoiserError(
        f"{path} is not a diffusers model directory ({why}).",
        "Pass a folder written by save_pretrained (a DDPM pipeline with unet/ and scheduler/, or a UNet2DModel beside its scheduler_config.json), or a certkit denoiser weights file.",
    )


def _diffusers_parts(path: Path) -> tuple[Path, Path]:
    """The folders holding the UNet's config.json and the scheduler's scheduler_config.json."""
    unet_dir = path / "unet" if (path / "unet" / "config.json").is_file() else path
    scheduler_dir = path / "scheduler" if (path / "scheduler" / "scheduler_config.json").is_file() else path
    if not (unet_dir / "config.json").is_file():
        raise _not_diffusers(path, "no config.json, nor unet/config.json")
    if not (scheduler_dir / "scheduler_config.json").is_file():
        raise _not_diffusers(path, "no scheduler_config.json, nor scheduler/scheduler_config.json: the noise schedule is unknown")
    return unet_dir, scheduler_dir


def load_diffusers_dir(path: Path) -> DiffusionModel:
    """A local diffusers UNet2DModel and its schedule (any scheduler config: its betas build
    the DDPM training schedule). ``local_files_only``: never downloads."""
    from diffusers import DDPMScheduler, UNet2DModel

    path = Path(path).expanduser()
    unet_dir, scheduler_dir = _diffusers_parts(path)
    try:
        config = json.loads((unet_dir / "config.json").read_text())
        scheduler_config = json.loads((scheduler_dir / "scheduler_config.json").read_text())
    except (OSError, ValueError) as exc:
        raise _not_diffusers(path, f"unreadable config: {exc}") from None
    kind = config.get("_class_name") if isinstance(config, dict) else None
    if kind != "UNet2DModel":
        raise _not_diffusers(path, f"its config describes a {kind or 'model of unknown class'}, one-shot denoising takes a UNet2DModel")
    try:
        unet = UNet2DModel.from_pretrained(unet_dir, local_files_only=True)
        scheduler = DDPMScheduler.from_config(scheduler_config)
    except Exception as exc:  # diffusers raises OSError, ValueError, EnvironmentError, ... for a broken folder
        raise _not_diffusers(path, f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}") from None
    size = unet.config.sample_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    channels = int(unet.config.in_channels)
    spec = InputSpec(image_size=size, channels=channels, mean=(0.5,) * channels, std=(0.5,) * channels, num_classes=1)
    return DiffusionModel(unet.eval(), scheduler, spec, scheduler.config.get("prediction_type", "epsilon"))


def diffusers_dir_sha256(path: Path) -> str:
    """One hash of the folder's configs and weight files (sorted by relative path)."""
    unet_dir, scheduler_dir = _diffusers_parts(Path(path).expanduser())
    files = sorted({*unet_dir.glob("*.json"), *unet_dir.glob("*.safetensors"), *unet_dir.glob("*.bin"), scheduler_dir / "scheduler_config.json"})
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(path)).encode())
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()
