"""Carlini et al.'s one-shot denoising on diffusers: t* selection, the [0, 1] -> [-1, 1]
mapping, local diffusers model directories, and the ddpm objective."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel

from certkit_denoised.diffusion import (
    DenoiserError,
    DiffusionModel,
    OneShotDenoiser,
    choose_timestep,
    load_diffusers_dir,
    reachable_sigmas,
    unet_mini,
)
from certkit_denoised.objectives import DDPMObjective

STEP = 0.004  # the known schedule below: sqrt((1 - abar_t) / abar_t) = STEP * (t + 1)
STEPS = 1000


def known_schedule() -> DDPMScheduler:
    """A schedule with a closed form: abar_t = 1 / (1 + (STEP (t + 1))^2), so the noise std in
    [-1, 1] units at t is STEP (t + 1), and in [0, 1] units STEP (t + 1) / 2. Built by diffusers
    from its betas, as a model directory would give it."""
    t = np.arange(STEPS, dtype=np.float64)
    alpha_bar = 1 / (1 + (STEP * (t + 1)) ** 2)
    betas = 1 - alpha_bar / np.concatenate([[1.0], alpha_bar[:-1]])
    return DDPMScheduler(num_train_timesteps=STEPS, trained_betas=betas.tolist())


@pytest.mark.parametrize("sigma", [0.01, 0.0123, 0.25, 0.3137, 0.5, 0.77, 1.0, 1.5])
def test_t_star_reproduces_the_closed_form_sigma_mapping(sigma):
    """(1 - abar)/abar = (2 sigma)^2 gives STEP (t + 1) = 2 sigma: t* = round(2 sigma / STEP) - 1."""
    alphas = known_schedule().alphas_cumprod
    choice = choose_timestep(alphas, sigma)
    expected = round(2 * sigma / STEP) - 1
    assert choice.timestep == expected
    assert choice.effective_sigma == pytest.approx(STEP * (expected + 1) / 2, rel=1e-4)
    assert choice.relative_error <= STEP / (4 * sigma) + 1e-4  # half a step of std, relative to sigma


def test_t_star_on_ddpms_linear_schedule_matches_an_independent_computation():
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    alpha_bar = np.cumprod(1 - betas)
    alphas = unet_mini().alphas_cumprod
    for sigma in (0.25, 0.5, 1.0):
        expected = int(np.argmin(np.abs((1 - alpha_bar) / alpha_bar - (2 * sigma) ** 2)))
        choice = choose_timestep(alphas, sigma)
        assert choice.timestep == expected
        assert choice.effective_sigma == pytest.approx(math.sqrt((1 - alpha_bar[expected]) / alpha_bar[expected]) / 2, rel=1e-4)
        assert choice.relative_error < 0.01
    assert [choose_timestep(alphas, s).timestep for s in (0.25, 0.5, 1.0)] == [144, 258, 396]


@pytest.mark.parametrize("sigma", [100.0, 0.001, 0.0063])
def test_a_sigma_no_timestep_serves_is_refused_with_the_reachable_range(sigma):
    alphas = unet_mini().alphas_cumprod
    low, high = reachable_sigmas(alphas)
    assert (round(low, 4), round(high, 1)) == (0.005, 78.7)
    with pytest.raises(DenoiserError, match=r"no timestep .* within 10% of noise level sigma .* stand for sigma 0\.005 to 78\.7") as error:
        choose_timestep(alphas, sigma)
    assert "\n" not in str(error.value)


def test_one_shot_denoising_maps_images_and_inverts_an_exact_noise_prediction():
    """With a model that predicts the true noise, the clean estimate is the clean image: checks
    x -> 2x - 1, x_t = sqrt(abar) (x + noise), the inversion and the map back to [0, 1]."""
    clean = torch.rand(3, 1, 8, 8)
    noise = torch.randn(3, 1, 8, 8)
    sigma = 0.5

    class Oracle(torch.nn.Module):
        def forward(self, x_t, t):  # the noise in x_t, in the model's own units
            abar = float(model.alphas_cumprod[int(t)])
            return (x_t - math.sqrt(abar) * (2 * clean - 1)) / math.sqrt(1 - abar)

    model = DiffusionModel(unet_mini().unet, known_schedule(), unet_mini().input_spec)
    model.forward = Oracle().forward
    denoiser = OneShotDenoiser(model, sigma)
    estimate = denoiser(clean + sigma * noise)
    assert torch.allclose(estimate, clean, atol=1e-5)
    abar = denoiser.choice.alpha_bar
    seen_noise = (math.sqrt(abar) * (2 * (clean + sigma * noise) - 1) - math.sqrt(abar) * (2 * clean - 1)) / math.sqrt(1 - abar)
    # The residual mismatch: the model sees noise of std 2 sigma sqrt(abar) / sqrt(1 - abar) = sigma / effective sigma.
    assert float(seen_noise.std() / noise.std()) == pytest.approx(sigma / denoiser.choice.effective_sigma, rel=1e-5)


def tiny_unet(size: int = 28, channels: int = 1) -> UNet2DModel:
    torch.manual_seed(0)
    return UNet2DModel(
        sample_size=size, in_channels=channels, out_channels=channels, layers_per_block=1, block_out_channels=(8, 8),
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4,
    )


@pytest.mark.parametrize("layout", ["pipeline", "flat"])
def test_a_local_diffusers_directory_loads_without_downloading(tmp_path, layout):
    unet, scheduler = tiny_unet(), DDPMScheduler(num_train_timesteps=500, beta_schedule="squaredcos_cap_v2")
    if layout == "pipeline":  # as DDPMPipeline.save_pretrained writes it
        unet.save_pretrained(tmp_path / "unet")
        scheduler.save_pretrained(tmp_path / "scheduler")
        (tmp_path / "model_index.json").write_text('{"_class_name": "DDPMPipeline"}')
    else:
        unet.save_pretrained(tmp_path)
        scheduler.save_pretrained(tmp_path)
    model = load_diffusers_dir(tmp_path)
    assert model.num_timesteps == 500 and model.input_spec.image_size == (28, 28)
    assert torch.allclose(model.alphas_cumprod.float(), scheduler.alphas_cumprod)
    images = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        expected = unet(2 * images - 1, 10).sample
        assert torch.allclose(model(2 * images - 1, torch.tensor(10)), expected, atol=1e-6)


def test_a_directory_that_is_not_a_diffusers_model_is_refused(tmp_path):
    with pytest.raises(DenoiserError, match="is not a diffusers model directory .no config.json"):
        load_diffusers_dir(tmp_path)
    (tmp_path / "config.json").write_text('{"_class_name": "AutoencoderKL"}')
    (tmp_path / "scheduler_config.json").write_text("{}")
    with pytest.raises(DenoiserError, match="describes a AutoencoderKL, one-shot denoising takes a UNet2DModel"):
        load_diffusers_dir(tmp_path)
    (tmp_path / "config.json").write_text('{"_class_name": "UNet2DModel"}')  # no weights beside it
    with pytest.raises(DenoiserError, match="is not a diffusers model directory"):
        load_diffusers_dir(tmp_path)


def test_ddpm_loss_is_the_noise_prediction_mse_at_uniform_timesteps():
    model = DiffusionModel(tiny_unet(), DDPMScheduler(num_train_timesteps=100), unet_mini().input_spec)
    images = torch.rand(4, 1, 28, 28)
    out = DDPMObjective()(model, images, torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    t = torch.randint(0, 100, (4,), generator=generator)
    noise = torch.randn(images.shape, generator=generator)
    abar = model.alphas_cumprod[t].float().view(-1, 1, 1, 1)
    x_t = abar.sqrt() * (2 * images - 1) + (1 - abar).sqrt() * noise
    with torch.no_grad():
        expected = torch.mean((model(x_t, t) - noise) ** 2)
    assert float(out.loss.detach()) == pytest.approx(float(expected), rel=1e-5)
    columns = DDPMObjective(preview_sigmas=(0.25, 0.5)).preview(model, images, torch.Generator().manual_seed(0))
    assert len(columns) == 5 and all(c.shape == images.shape and 0 <= float(c.min()) and float(c.max()) <= 1 for c in columns)
