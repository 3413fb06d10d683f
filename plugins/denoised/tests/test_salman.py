"""Salman et al.'s denoisers: DnCNN-mini with the MSE objective and the stability objective
through a frozen classifier, trained by certkit's trainer (``certkit pretrain``)."""

from __future__ import annotations

import json

import pytest
import torch
from torch.nn import functional as F
from typer.testing import CliRunner

from certkit.cli.main import build_app
from certkit.errors import CertkitError

from certkit_denoised.dncnn import dncnn_mini
from certkit_denoised.objectives import DenoiseMSE, DenoiseStability

QUICK = ["--max", "64", "--batch", "32", "--epochs", "1", "--warmup-epochs", "0"]


def invoke(*args: str):
    return CliRunner().invoke(build_app(), list(args), env={"COLUMNS": "200"})


def test_mse_objective_is_the_mse_to_the_clean_image():
    torch.manual_seed(0)
    model, images = dncnn_mini().eval(), torch.rand(4, 1, 28, 28)
    out = DenoiseMSE(sigma=0.5)(model, images, torch.Generator().manual_seed(1))
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = F.mse_loss(model(images + 0.5 * noise), images)
    assert float(out.loss.detach()) == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(CertkitError, match="none was given. Pass --sigma"):
        DenoiseMSE()


def test_stability_objective_trains_the_denoiser_through_a_frozen_classifier(tmp_path):
    from certkit import plugins
    from certkit.checkpoints import write_weights

    torch.manual_seed(0)
    classifier = plugins.get("models", "vit-mini").obj()
    write_weights(tmp_path / "clean.safetensors", classifier, "vit-mini", classifier.input_spec)
    objective = DenoiseStability(sigma=0.25, mse_weight=0.5, classifier="vit-mini", classifier_checkpoint=str(tmp_path / "clean.safetensors"))
    model, images = dncnn_mini(), torch.rand(4, 1, 28, 28)
    out = objective(model, images, torch.Generator().manual_seed(2))
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert all(p.grad is None for p in objective.classifier.parameters())
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        targets = objective.classifier(images).argmax(1)
        denoised = model(images + 0.25 * noise)
        expected = F.cross_entropy(objective.classifier(denoised), targets) + 0.5 * F.mse_loss(denoised, images)
    assert float(out.loss.detach()) == pytest.approx(float(expected), rel=1e-4)
    assert objective.options()["classifier"] == "vit-mini"


def test_pretrain_denoise_mse_records_the_sigma_and_writes_a_preview(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("pretrain", "denoise-mse", "--sigma", "0.5", *QUICK, "--out-dir", "dn")
    assert result.exit_code == 0, result.output
    run = json.loads((tmp_path / "dn/run.json").read_text())
    assert run["task"]["model"] == "dncnn-mini" and run["task"]["options"] == {"sigma": 0.5}
    assert (tmp_path / "dn/preview-0001.png").is_file()
    from safetensors import safe_open

    with safe_open(str(tmp_path / "dn/weights.safetensors"), "pt") as handle:
        assert json.loads(handle.metadata()["objective_options"]) == {"sigma": 0.5}
    refused = invoke("pretrain", "denoise-mse", *QUICK, "--out-dir", "none")
    assert refused.exit_code == 2 and "Pass --sigma" in refused.stderr and not (tmp_path / "none").exists()


def test_pretrain_ddpm_writes_one_step_denoising_previews(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("pretrain", "ddpm", *QUICK, "--out-dir", "ddpm")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "ddpm/run.json").read_text())["task"]["model"] == "unet-mini"
    from PIL import Image

    preview = Image.open(tmp_path / "ddpm/preview-0001.png")
    columns, rows = 7, 8  # clean, then noisy | one-step denoising at sigma 0.25, 0.5, 1.0; one row per preview image
    assert preview.width * rows == pytest.approx(preview.height * columns, rel=0.02)
