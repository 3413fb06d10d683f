"""The uniform smoother's L1 certificate (Yang et al. 2020), checked where it is exact.

On one pixel, f(x) = [x > 0] under U[-lam, lam] noise has P(f(x + e) = 1) = (x + lam) / (2 lam):
the smoothed probability is known at every point, so whether a certificate holds is computed,
not assumed. The certified L1 radius 2 lam (pA_lower - 1/2) is tight for this classifier: moving
the pixel by R towards 0 lowers the probability by R / (2 lam), to exactly 1/2 when
pA_lower = pA. So a certificate is wrong exactly when its bound overshoots, and a radius formula
that claims more than Yang et al.'s fails the same test.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pytest
import torch
from scipy.stats import binom
from torch import nn
from typer.testing import CliRunner

from certkit import ABSTAIN, InputSpec
from certkit.certifiers.cohen import CohenCertifier
from certkit.cli.main import build_app
from certkit.engines import TorchEngine
from certkit.interfaces import CertifySettings
from certkit.sampling import MonteCarloSampler
from certkit.smoothers import UniformSmoother, build_smoother

SIGMA = 0.5
LAM = math.sqrt(3) * SIGMA


class StepClassifier(nn.Module):
    """f(x) = 0 if the pixel is > 0, else 1."""

    input_spec = InputSpec(image_size=(1, 1), channels=1, mean=(0.0,), std=(1.0,), num_classes=2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        score = images.flatten(1)[:, :1]
        return torch.cat([score, -score], dim=1)


def smoothed_p(pixel: float) -> float:
    """Exact P(f(pixel + e) = 0) under U[-LAM, LAM]."""
    return min(1.0, max(0.0, (pixel + LAM) / (2 * LAM)))


@dataclass(frozen=True)
class OverclaimingUniform(UniformSmoother):
    """A broken L1 radius (twice Yang et al.'s): the negative control."""

    def radius(self, p_lower: float) -> float:
        return 2 * super().radius(p_lower)


def certify_many(smoother: UniformSmoother, p_top: float, trials: int, seed: int) -> list:
    engine = TorchEngine(StepClassifier(), torch.device("cpu"))
    sampler = MonteCarloSampler(engine, smoother, batch_size=400, seed=seed)
    image = torch.full((1, 1, 1), LAM * (2 * p_top - 1))  # smoothed_p(image) == p_top
    settings = CertifySettings(n0=20, n=200, alpha=0.05)
    return [CohenCertifier().certify(sampler.for_image(image, i), smoother, settings) for i in range(trials)]


def violated(cert, p_top: float) -> bool:
    """Wrong class, or a point within the certified L1 radius where the smoothed classifier
    changes its answer (the worst one moves the pixel towards 0 by the whole radius)."""
    if cert.prediction == ABSTAIN:
        return False
    pixel = LAM * (2 * p_top - 1)
    return cert.prediction != 0 or smoothed_p(pixel - cert.radius) < 0.5


def failure_count(smoother: UniformSmoother) -> tuple[int, int]:
    failures = trials = 0
    for seed, p_top in enumerate((0.6, 0.8, 0.95)):
        certs = certify_many(smoother, p_top, 700, seed)
        failures += sum(violated(c, p_top) for c in certs)
        trials += len(certs)
    return failures, trials


def test_uniform_certificates_hold_at_rate_alpha():
    failures, trials = failure_count(UniformSmoother(SIGMA))
    assert trials >= 2000
    assert failures <= binom.ppf(0.999, trials, 0.05), (failures, trials)
    assert failures > 0  # the radius is tight here, so the test is not vacuous


def test_negative_control_an_overclaiming_radius_fails():
    failures, trials = failure_count(OverclaimingUniform(SIGMA))
    assert failures > binom.ppf(0.999, trials, 0.05), (failures, trials)


def test_uniform_noise_has_the_documented_range_and_spread():
    smoother = build_smoother("uniform", 0.25)
    assert smoother.norm == "l1" and smoother.half_width == pytest.approx(math.sqrt(3) * 0.25)
    noise = smoother.perturb(torch.zeros(200_000), torch.Generator().manual_seed(0))
    assert float(noise.abs().max()) <= smoother.half_width
    assert float(noise.std()) == pytest.approx(0.25, rel=0.01)  # sigma is the per-pixel std
    assert smoother.radius(0.5) == 0.0 and smoother.radius(1.0) == pytest.approx(smoother.half_width)


def test_cli_uniform_run_is_labelled_l1_and_named_apart(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = ["certify", "--model", "tiny-cnn", "--sigma", "0.25", "--n0", "20", "--n", "200", "--max", "2"]
    runner = CliRunner()
    gaussian = runner.invoke(build_app(), common, env={"COLUMNS": "200"})
    uniform = runner.invoke(build_app(), [*common, "--smoother", "uniform"], env={"COLUMNS": "200"})
    assert gaussian.exit_code == 0 and uniform.exit_code == 0, uniform.output
    files = sorted(p.name for p in (tmp_path / "results").glob("*.tsv"))
    assert files == ["tiny-cnn_sigma0.25_fashion-mnist-mini-test_cohen.tsv", "tiny-cnn_sigma0.25_fashion-mnist-mini-test_cohen_uniform.tsv"]
    meta = json.loads((tmp_path / "results" / files[1]).with_suffix(".tsv.meta.json").read_text())
    assert meta["smoother"] == "uniform" and meta["norm"] == "l1" and meta["smoother_options"] == {}
    # the tiny model records Gaussian training noise (none given), so the uniform run warns
    assert "trained for gaussian noise" in " ".join(uniform.output.split())


def test_unknown_smoother_and_option_are_one_line(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    common = ["certify", "--model", "tiny-cnn", "--sigma", "0.25", "--max", "1", "--n", "100"]
    unknown = runner.invoke(build_app(), [*common, "--smoother", "laplace"], env={"COLUMNS": "300"})
    assert unknown.exit_code == 2 and "unknown smoother 'laplace'" in unknown.stderr and "gaussian, uniform" in unknown.stderr
    option = runner.invoke(build_app(), [*common, "--smoother", "uniform", "-S", "width=2"], env={"COLUMNS": "300"})
    assert option.exit_code == 2 and "unknown option 'width' of smoother 'uniform'. Its options: none." in option.stderr
    assert not (tmp_path / "results").exists()


def test_sequential_certifies_with_the_uniform_radius(tiny_model):
    """sequential inverts any smoother's radius: its grid thresholds for uniform noise are the
    p with 2 lam (p - 1/2) = r, and its certificates carry the L1 norm."""
    from certkit.certifiers.sequential import radius_threshold

    smoother = build_smoother("uniform", SIGMA)
    for r in (0.25, 0.5, 0.8):  # below lam = 0.866, the largest L1 radius uniform noise at sigma 0.5 certifies
        assert radius_threshold(smoother.radius, r) == pytest.approx(0.5 + r / (2 * LAM), abs=1e-12)
    failures, trials = 0, 0
    from certkit.certifiers.sequential import SequentialCertifier

    engine = TorchEngine(StepClassifier(), torch.device("cpu"))
    sampler = MonteCarloSampler(engine, smoother, batch_size=500, seed=11)
    settings = CertifySettings(n0=20, n=1000, alpha=0.05, extra={"radii": [0.0, 0.5, 1.0], "first": 100})
    certifier = SequentialCertifier()
    certifier.check(settings)
    for i, p_top in enumerate([0.75] * 700 + [0.9] * 700 + [0.97] * 700):
        image = torch.full((1, 1, 1), LAM * (2 * p_top - 1))
        cert = certifier.certify(sampler.for_image(image, i), smoother, settings)
        assert cert.norm == "l1"
        failures += violated(cert, p_top)
        trials += 1
    assert failures <= binom.ppf(0.999, trials, 0.05), (failures, trials)


def test_finetuning_for_uniform_noise_records_it_and_names_the_smoother(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        build_app(),
        ["finetune", "--model", "tiny-cnn", "--objective", "noisy-uniform", "--sigma", "0.25", "--epochs", "1", "--batch", "32", "--max", "64",
         "--drop-path", "0", "--out-dir", "run"],
        env={"COLUMNS": "300"},
    )
    assert result.exit_code == 0, result.output
    from certkit.checkpoints import read_weights

    spec = read_weights(tmp_path / "run" / "weights.safetensors").input_spec
    assert (spec.noise, spec.sigma) == ("uniform", 0.25)
    assert "certkit certify --model tiny-cnn --sigma 0.25 --smoother uniform --checkpoint" in " ".join(result.output.split())


def test_the_shipped_uniform_model_is_found_for_the_uniform_smoother():
    from certkit.models import load_classifier

    uniform = load_classifier("vit-mini", 0.25, noise="uniform")
    assert uniform.checkpoint.name == "vit-mini-uniform-sigma0.25.safetensors"
    assert (uniform.spec.noise, uniform.spec.sigma) == ("uniform", 0.25)
    gaussian = load_classifier("vit-mini", 0.25)
    assert gaussian.checkpoint.name == "vit-mini-sigma0.25.safetensors" and gaussian.spec.noise in (None, "gaussian")
    fallback = load_classifier("vit-mini", 0.5, noise="uniform")  # no uniform weights at 0.5: the Gaussian ones
    assert fallback.checkpoint.name == "vit-mini-sigma0.5.safetensors"


def test_predict_with_the_uniform_smoother_records_it(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(build_app(), ["predict", "--model", "tiny-cnn", "--sigma", "0.25", "--n", "100", "--max", "2", "--smoother", "uniform"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    (path,) = (tmp_path / "results").glob("*.tsv")
    assert path.name == "tiny-cnn_sigma0.25_fashion-mnist-mini-test_cohen-predict_uniform.tsv"
    meta = json.loads(path.with_name(path.name + ".meta.json").read_text())
    assert (meta["kind"], meta["smoother"], meta["norm"]) == ("predict", "uniform", "l1")
