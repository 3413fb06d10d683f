"""The certificates' guarantees, checked against base classifiers whose probabilities are known,
and the bounds behind them (Clopper-Pearson, the betting confidence sequence)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from scipy.stats import binom, norm
from torch import nn

from certkit import ABSTAIN, InputSpec
from certkit.certifiers import cohen
from certkit.certifiers.cohen import CohenCertifier, predict
from certkit.certifiers.replay import certify_many, two_classes
from certkit.engines import TorchEngine
from certkit.interfaces import CertifySettings
from certkit.sampling import MonteCarloSampler
from certkit.smoothers import GaussianSmoother
from certkit.stats import betting_log_wealth, betting_lower, betting_upper, clopper_pearson_lower, min_samples_to_certify, min_samples_to_predict, two_sided_p_value

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


def wrong(cert, p_top: float, smoother=None) -> bool:
    """A certificate is wrong if it names a class other than the true top class (class 0), or
    if its radius exceeds the true one (its bound exceeds the true probability)."""
    if cert.prediction == ABSTAIN:
        return False
    if smoother is None:
        return cert.prediction != 0 or cert.p_lower > p_top
    return cert.prediction != 0 or cert.radius > smoother.radius(p_top) + 1e-12


def failures_of(certs, p_top: float, smoother) -> int:
    return sum(wrong(c, p_top, smoother) for c in certs)


def cohen_failure_probability(p_top: float, n0: int, n: int, alpha: float) -> float:
    """The exact probability that CERTIFY (two classes, class 0 at p_top > 1/2) is wrong:
    class 0 selected and its bound above p_top, or class 1 selected and certified at all."""
    k = np.arange(n + 1)
    bounds = np.array([clopper_pearson_lower(int(i), n, alpha) for i in k])
    selected_0 = binom.sf(np.ceil(n0 / 2) - 1, n0, p_top)  # ties go to class 0 (argmax takes the first)
    too_high = binom.pmf(k, n, p_top)[bounds > p_top].sum()
    class_1 = binom.pmf(k, n, 1 - p_top)[bounds > 0.5].sum()
    return float(selected_0 * too_high + (1 - selected_0) * class_1)


# Just under the thresholds of radii 0.25 and 0.5 at sigma 0.5, where a bound that is too
# high certifies a radius too many; chosen where CERTIFY's exact rate is not at alpha's edge.
HARD = (float(norm.cdf(0.25 / SIGMA)) - 0.01, float(norm.cdf(0.5 / SIGMA)) - 0.01)


def test_certify_failure_rate_is_at_most_alpha():
    """2100 certifications with exact categorical votes: the failure count matches the exact
    failure probability, that probability is at most alpha, and an empirical rate above alpha
    would be rejected."""
    alpha, n0, n, smoother = 0.05, 20, 200, GaussianSmoother(SIGMA)
    failures, trials, expected = 0, 0, 0.0
    for p_top in HARD:
        certs = certify_many(CohenCertifier(), smoother, CertifySettings(n0, n, alpha), two_classes(p_top), 1050, seed=1)
        failures += failures_of(certs, p_top, smoother)
        trials += len(certs)
        exact = cohen_failure_probability(p_top, n0, n, alpha)
        assert exact <= alpha
        expected += exact * len(certs)
    assert trials >= 2000
    assert failures <= alpha * trials, (failures, trials)
    assert abs(failures - expected) <= 4 * np.sqrt(expected), (failures, expected)


def test_guarantee_test_catches_a_broken_bound(monkeypatch):
    """Negative control: the same check rejects a bound that ignores confidence (the point estimate)."""
    monkeypatch.setattr(cohen, "clopper_pearson_lower", lambda k, n, alpha: k / n)
    alpha, smoother, failures, trials = 0.05, GaussianSmoother(SIGMA), 0, 0
    for p_top in HARD:
        certs = certify_many(CohenCertifier(), smoother, CertifySettings(20, 200, alpha), two_classes(p_top), 1050, seed=1)
        failures += failures_of(certs, p_top, smoother)
        trials += len(certs)
    assert failures > binom.ppf(0.999, trials, alpha)


def test_real_model_path_has_the_same_guarantee():
    """The model path (noise through a base classifier with known probabilities, counted by
    the real sampler) gives valid certificates too."""
    alpha, failures, trials = 0.05, 0, 0
    for p_top in (0.6, 0.8, 0.95):
        certs = run_certifications(p_top, 300, n0=20, n=200, alpha=alpha, seed=1)
        failures += sum(wrong(c, p_top) for c in certs)
        trials += len(certs)
    assert failures <= alpha * trials + 3 * np.sqrt(alpha * trials), (failures, trials)


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
    assert clopper_pearson_lower(10, 10, 0.001) > 0.5 > clopper_pearson_lower(9, 9, 0.001)
    assert min_samples_to_certify(0.25) == 3  # 2 of 2 bound p at exactly 1/2, which does not certify
    assert clopper_pearson_lower(2, 2, 0.25) == pytest.approx(0.5)
    assert min_samples_to_predict(0.001) == 11
    assert two_sided_p_value(11, 0) <= 0.001 < two_sided_p_value(10, 0)


@pytest.mark.parametrize("k,n", [(990, 1000), (5, 50), (100_000, 100_000), (99_880, 100_000)])
def test_betting_bound_is_the_root_of_the_mixture_wealth(k, n):
    """The betting lower bound is where the Krichevsky-Trofimov wealth falls to 1/alpha, and it
    is looser than Clopper-Pearson at the same n (it holds at every n at once)."""
    alpha = 0.001
    low = betting_lower(k, n, alpha)
    assert betting_log_wealth(k, n, low) == pytest.approx(np.log(1 / alpha), abs=1e-6)
    assert low < clopper_pearson_lower(k, n, alpha)
    assert betting_upper(n - k, n, alpha) == pytest.approx(1 - low)


def test_betting_sequence_holds_at_every_n_at_once():
    """2000 streams of 2000 votes at p = 0.9: the betting bound exceeds p at *some* n in at most
    alpha of them, while Clopper-Pearson checked at every 20th n (peeking) does so far more often."""
    alpha, p, trials, n = 0.05, 0.9, 2000, 2000
    rng = np.random.default_rng(0)
    hits = np.cumsum(rng.random((trials, n)) < p, axis=1)
    looks = np.arange(20, n + 1, 20)
    k = hits[:, looks - 1]  # [trials, looks]
    # L_n > p, written on counts: the wealth against p has reached 1/alpha (betting), or
    # P_p(X >= k) < alpha (Clopper-Pearson); test_betting_bound_is_the_root... ties the two forms.
    crossed_betting = ((betting_log_wealth(k, looks, p) >= np.log(1 / alpha)) & (k > p * looks)).any(axis=1).sum()
    crossed_peeking = (binom.sf(k - 1, looks, p) < alpha).any(axis=1).sum()
    assert crossed_betting <= alpha * trials, crossed_betting
    assert crossed_peeking > binom.ppf(0.999, trials, alpha), crossed_peeking  # the negative control
