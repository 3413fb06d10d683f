"""The certificates' guarantees, checked against base classifiers whose probabilities are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from scipy.stats import binom, norm
from torch import nn

from certkit import ABSTAIN, InputSpec
from certkit.certifiers.cohen import CohenCertifier, predict
from certkit.engines import TorchEngine
from certkit.interfaces import CertifySettings
from certkit.sampling import MonteCarloSampler
from certkit.smoothers import GaussianSmoother
from certkit.stats import clopper_pearson_lower, min_samples_to_certify, min_samples_to_predict, two_sided_p_value

SIGMA = 0.5


class ThresholdClassifier(nn.Module):
    """f(x) = 0 if x > 0 else 1 on a single pixel, so under N(0, sigma^2) noise
    P(f(x + e) = 0) = Phi(x / sigma) exactly: a base classifier with known probabilities."""

    input_spec = InputSpec(image_size=(1, 1), channels=1, mean=(0.0,), std=(1.0,), num_classes=2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        score = images.flatten(1)[:, :1]
        return torch.cat([score, -score], dim=1)


def pixel_for(p_top: float) -> torch.Tensor:
    return torch.full((1, 1, 1), SIGMA * norm.ppf(p_top))


def run_certifications(p_top: float, trials: int, n0: int, n: int, alpha: float, seed: int) -> list:
    engine = TorchEngine(ThresholdClassifier(), torch.device("cpu"))
    smoother = GaussianSmoother(SIGMA)
    sampler = MonteCarloSampler(engine, smoother, batch_size=n, seed=seed)
    image = pixel_for(p_top)
    certifier = CohenCertifier()
    settings = CertifySettings(n0=n0, n=n, alpha=alpha)
    # Each trial is a different "image index", hence an independent noise stream.
    return [certifier.certify(sampler.for_image(image, i), smoother, settings) for i in range(trials)]


def wrong(cert, p_top: float) -> bool:
    """A certificate is wrong if it names a class other than the true top class, or if its
    bound exceeds the true probability (then its radius is too large)."""
    if cert.prediction == ABSTAIN:
        return False
    return cert.prediction != 0 or cert.p_lower > p_top


def test_certify_failure_rate_is_at_most_alpha():
    alpha = 0.05  # large alpha so that 2100 trials can see a violation if there is one
    failures, trials = 0, 0
    for p_top in (0.6, 0.8, 0.95):
        certs = run_certifications(p_top, 700, n0=20, n=200, alpha=alpha, seed=1)
        failures += sum(wrong(c, p_top) for c in certs)
        trials += len(certs)
    allowed = binom.ppf(0.999, trials, alpha)  # one-sided binomial tolerance
    assert trials >= 2000
    assert failures <= allowed, (failures, trials, allowed)
    assert failures > 0  # Clopper-Pearson is conservative but not vacuous at these settings


def test_guarantee_test_catches_a_broken_bound():
    """The same check rejects a bound that ignores confidence (the point estimate)."""
    alpha = 0.05
    certs = run_certifications(0.8, 700, n0=20, n=200, alpha=alpha, seed=2)
    failures = sum(c.count / c.n > 0.8 for c in certs if c.prediction == 0)
    assert failures > binom.ppf(0.999, len(certs), alpha)


def test_certified_radius_matches_cohen_formula():
    certs = run_certifications(0.99, 5, n0=100, n=1000, alpha=0.001, seed=3)
    for cert in certs:
        assert cert.prediction == 0
        expected = SIGMA * norm.ppf(clopper_pearson_lower(cert.count, 1000, 0.001))
        assert cert.radius == pytest.approx(expected, abs=1e-12)
        assert cert.samples == 1100


@pytest.mark.parametrize("k,n,alpha", [(1, 10, 0.001), (500, 1000, 0.001), (990, 1000, 0.001), (99_000, 100_000, 0.001), (37, 50, 0.05), (50, 50, 0.01)])
def test_clopper_pearson_matches_definition(k, n, alpha):
    """The lower bound is the p at which P(X >= k | p) = alpha (independent root finding)."""
    independent = brentq(lambda p: binom.sf(k - 1, n, p) - alpha, 1e-15, 1 - 1e-15, xtol=1e-15, rtol=1e-15)
    assert clopper_pearson_lower(k, n, alpha) == pytest.approx(independent, abs=1e-9)


def test_predict_abstain_rate_matches_binomial_test():
    """With two classes at p = 0.55, PREDICT abstains exactly when binomtest fails to reject."""
    n, alpha, p_top, trials = 200, 0.05, 0.55, 2000
    engine = TorchEngine(ThresholdClassifier(), torch.device("cpu"))
    sampler = MonteCarloSampler(engine, GaussianSmoother(SIGMA), batch_size=n, seed=4)
    image = pixel_for(p_top)
    abstained = sum(predict(sampler.for_image(image, i), n, alpha).prediction == ABSTAIN for i in range(trials))
    ks = np.arange(n + 1)
    keeps = np.array([two_sided_p_value(max(k, n - k), min(k, n - k)) > alpha for k in ks])
    expected = float(binom.pmf(ks, n, p_top)[keeps].sum())
    tolerance = 4 * np.sqrt(expected * (1 - expected) / trials)
    assert abs(abstained / trials - expected) <= tolerance, (abstained / trials, expected)


def test_minimum_n():
    assert min_samples_to_certify(0.001) == 10
    assert clopper_pearson_lower(10, 10, 0.001) >= 0.5 > clopper_pearson_lower(9, 9, 0.001)
    assert min_samples_to_predict(0.001) == 11
    assert two_sided_p_value(11, 0) <= 0.001 < two_sided_p_value(10, 0)
