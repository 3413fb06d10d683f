"""The shipped denoisers and clean classifier do their job on held-out images."""

from __future__ import annotations

import pytest
import torch

from certkit import plugins

from certkit_denoised.parts import CLEAN_CLASSIFIER, load_denoiser, load_part_classifier, shipped_dncnn

HELD_OUT = 200  # test-split images; the denoisers and the classifier were trained on the train split


def held_out_images() -> tuple[torch.Tensor, torch.Tensor]:
    dataset = plugins.get("datasets", "fashion-mnist-mini").obj.factory(None, "test")
    pairs = [dataset[i] for i in range(1, 5 * HELD_OUT, 5)]  # not the every-5th images docs/denoised.md certifies
    return torch.stack([image for image, _ in pairs]), torch.tensor([label for _, label in pairs])


def mse_against_identity(denoiser: str, sigma: float) -> tuple[float, float]:
    images, _ = held_out_images()
    noisy = images + sigma * torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
    part = load_denoiser(denoiser, None, sigma)
    with torch.no_grad():
        denoised = part.module(noisy)
    return float(((denoised - images) ** 2).mean()), float(((noisy - images) ** 2).mean())


@pytest.mark.parametrize("sigma", [0.25, 0.5, 1.0])
def test_one_shot_diffusion_denoising_lowers_the_mse_to_the_clean_image(sigma):
    denoised, identity = mse_against_identity("unet-mini", sigma)
    assert identity == pytest.approx(sigma**2, rel=0.05)
    # Measured MSE / identity: 0.0096 / 0.0625 at 0.25, 0.0201 / 0.250 at 0.5, 0.0389 / 1.000 at 1.0
    # (docs/denoised.md); a wide margin.
    assert denoised < 0.25 * identity, (denoised, identity)


@pytest.mark.parametrize("sigma", sorted(shipped_dncnn()))
def test_shipped_dncnn_lowers_the_mse_to_the_clean_image(sigma):
    denoised, identity = mse_against_identity("dncnn-mini", sigma)
    assert denoised < 0.25 * identity, (denoised, identity)


def test_the_shipped_clean_classifier_is_a_clean_vit_mini():
    loaded = load_part_classifier()
    assert loaded.name == "vit-mini" and loaded.checkpoint == CLEAN_CLASSIFIER and loaded.spec.sigma == 0.0
    images, labels = held_out_images()
    with torch.no_grad():
        accuracy = float((loaded.model(images).argmax(1) == labels).float().mean())
    assert accuracy > 0.8, accuracy
