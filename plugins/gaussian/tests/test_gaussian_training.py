"""The Cohen baseline and stability training on certkit's trainer, end to end on the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from torch.nn import functional as F
from typer.testing import CliRunner

from certkit import plugins
from certkit.cli.main import build_app
from certkit.errors import CertkitError

from certkit_gaussian.stability import StabilityTraining

QUICK = ["finetune", "--sigma", "0.25", "--max", "128", "--batch", "32", "--epochs", "1", "--warmup-epochs", "0"]


def invoke(*args: str):
    return CliRunner().invoke(build_app(), list(args), env={"COLUMNS": "200"})


def test_stability_loss_matches_independent_formula():
    torch.manual_seed(0)
    model = plugins.get("models", "cnn-mini").obj().eval()
    images, labels = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    output = StabilityTraining(sigma=0.5, gamma=3.0)(model, images, labels, torch.Generator().manual_seed(7))
    noise = torch.randn((4, 1, 28, 28), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        p_clean = F.softmax(model(images), 1)
        p_noisy = F.softmax(model(images + 0.5 * noise), 1)
    kl = (p_clean * (p_clean.log() - p_noisy.log())).sum(1).mean()
    expected = F.cross_entropy(p_clean.log(), labels) + 3.0 * kl
    assert float(output.loss.detach()) == pytest.approx(float(expected), abs=1e-5)
    assert output.logs["kl"] == pytest.approx(float(kl), abs=1e-6)
    noisy_ce = StabilityTraining(sigma=0.5, gamma=0.0, ce_on="noisy")(model, images, labels, torch.Generator().manual_seed(7))
    assert float(noisy_ce.loss.detach()) == pytest.approx(float(F.cross_entropy(p_noisy.log(), labels)), abs=1e-5)
    with pytest.raises(CertkitError, match="ce_on must be clean or noisy"):
        StabilityTraining(sigma=0.5, ce_on="both")


def test_cohen_baseline_from_scratch_then_certify(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(*QUICK, "--model", "cnn-mini", "--no-consistency", "--label-smoothing", "0")
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs/finetune-cnn-mini-sigma0.25"
    task = json.loads((run / "run.json").read_text())["task"]
    assert task["objective"] == "noisy-ce"
    assert task["objective_options"] == {"sigma": 0.25, "consistency_lambda": 0.0, "consistency_eta": 0.0, "copies": 1, "label_smoothing": 0.0, "smoother": "gaussian"}
    certified = invoke("certify", "--model", "cnn-mini", "--checkpoint", str(run / "weights.safetensors"), "--n0", "10", "--n", "100", "--max", "2", "--out", "r.tsv")
    assert certified.exit_code == 0, certified.output


def test_stability_objective_on_a_timm_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(*QUICK, "--model", "timm/resnet18", "--objective", "stability", "-O", "gamma=1.5", "--drop-path", "0.05")
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs/finetune-timm-resnet18-stability-sigma0.25"  # '/' never makes a subfolder
    task = json.loads((run / "run.json").read_text())["task"]
    assert task["objective"] == "stability" and task["objective_options"] == {"sigma": 0.25, "gamma": 1.5, "ce_on": "clean"}
    with safe_open(str(run / "weights.safetensors"), "pt") as handle:
        assert handle.metadata()["model"] == "timm/resnet18"
    certified = invoke("certify", "--model", "timm/resnet18", "--checkpoint", str(run / "weights.safetensors"), "--n0", "10", "--n", "100", "--max", "1", "--out", "r.tsv")
    assert certified.exit_code == 0, certified.output


def test_noisy_ce_flags_are_refused_by_stability(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(*QUICK, "--model", "cnn-mini", "--objective", "stability", "--lbd", "3")
    assert result.exit_code == 2
    assert "objective 'stability' does not take the options ['consistency_lambda']" in result.stderr
    assert not (tmp_path / "runs").exists()
