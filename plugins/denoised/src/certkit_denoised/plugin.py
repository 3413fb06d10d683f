"""certkit hook implementations of the denoised plugin (entry point ``denoised`` in group ``certkit``)."""

from __future__ import annotations

from certkit import hookimpl

from certkit_denoised.composed import denoised_classifier
from certkit_denoised.diffusion import unet_mini
from certkit_denoised.dncnn import dncnn_mini
from certkit_denoised.objectives import DDPMObjective, DenoiseMSE, DenoiseStability


@hookimpl
def certkit_register_models(register) -> None:
    # Denoisers are trained by `certkit pretrain`; `pretraining=True` keeps them out of the classifiers.
    register("unet-mini", unet_mini, description="diffusion denoiser: diffusers UNet2DModel for 28 px images, DDPM linear schedule", pretraining=True)
    register("dncnn-mini", dncnn_mini, description="DnCNN-style denoiser for 28 px images (depth 8, width 32)", pretraining=True)
    # Denoiser + classifier, loaded from their own files (contract C3): no checkpoint of its own.
    register(
        "denoised",
        denoised_classifier,
        description="denoised smoothing: -M denoiser=unet-mini|dncnn-mini|PATH before -M classifier=NAME (default: shipped clean vit-mini)",
        needs_checkpoint=False,
    )


@hookimpl
def certkit_register_objectives(register) -> None:
    register("ddpm", DDPMObjective, description="DDPM noise prediction at uniform timesteps (Ho et al. 2020)", default_model="unet-mini")
    register("denoise-mse", DenoiseMSE, description="Salman et al.: MSE of D(x + noise) to x, one denoiser per --sigma", default_model="dncnn-mini")
    register("denoise-stab", DenoiseStability, description="Salman et al.: CE of a frozen classifier on D(x + noise) against its clean prediction", default_model="dncnn-mini")
