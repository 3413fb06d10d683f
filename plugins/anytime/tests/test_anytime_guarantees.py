"""The guarantee of every certkit-anytime certifier: >= 2000 certifications with exact class
probabilities (votes drawn from a known categorical distribution), p just under the target's
threshold, an empirical failure rate above alpha rejected; and for each a negative control (the
same check with alpha misapplied or a bound that is not anytime-valid) that must fail."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom, norm

import certkit_anytime.bounds as bounds
import certkit_anytime.horvath as horvath
from certkit import ABSTAIN, plugins
from certkit.certifiers.replay import certify_many, two_classes
from certkit.interfaces import CertifySettings
from certkit.smoothers import GaussianSmoother

SIGMA, RADIUS, ALPHA = 0.5, 0.5, 0.05  # alpha large, so that 2100 trials see a violation if there is one
TARGET = float(norm.cdf(RADIUS / SIGMA))  # p at which the radius reaches 0.5
HARD = (TARGET - 0.001, TARGET - 0.003)  # just under it: certifying r = 0.5 is wrong
HORVATH = {"radius": RADIUS, "steps": "20,100,500,2000"}
SEQUENCE = {"radius": RADIUS, "check_every": 20, "stop_share": 0.001}  # rarely gives up: long exposure to the certify side


def failures(name: str, extra: dict, n: int = 2000, trials: int = 1050) -> tuple[int, int]:
    smoother, wrong, total = GaussianSmoother(SIGMA), 0, 0
    for p_top in HARD:
        certifier = plugins.get("certifiers", name).obj()
        settings = CertifySettings(20, n, ALPHA, extra)
        certifier.check(settings)
        for cert in certify_many(certifier, smoother, settings, two_classes(p_top), trials, seed=1):
            wrong += cert.prediction != ABSTAIN and (cert.prediction != 0 or cert.radius > smoother.radius(p_top))
            total += 1
    return wrong, total


def clearly_above_alpha(wrong: int, trials: int) -> bool:
    return wrong > binom.ppf(0.999, trials, ALPHA)


@pytest.mark.parametrize("name,extra", [("horvath", HORVATH), ("cs-union", SEQUENCE), ("cs-betting", SEQUENCE)])
def test_failure_rate_is_at_most_alpha(name, extra):
    wrong, trials = failures(name, extra)
    assert trials >= 2000
    assert wrong <= ALPHA * trials, (name, wrong, trials)


def test_horvath_without_bonferroni_fails_the_check(monkeypatch):
    """Negative control: each of the 4 steps at the full alpha instead of alpha / 4."""
    exact = horvath.clopper_pearson_lower
    monkeypatch.setattr(horvath, "clopper_pearson_lower", lambda k, n, alpha: exact(k, n, alpha * 4))
    wrong, trials = failures("horvath", HORVATH)
    assert clearly_above_alpha(wrong, trials), wrong


def test_union_bound_without_its_split_fails_the_check(monkeypatch):
    """Negative control: the full alpha at every look of the union-bound sequence."""
    monkeypatch.setattr(bounds, "union_levels", lambda alpha, t: np.full(len(t), alpha))
    wrong, trials = failures("cs-union", SEQUENCE)
    assert clearly_above_alpha(wrong, trials), wrong


def test_betting_replaced_by_peeking_fails_the_check(monkeypatch):
    """Negative control: Clopper-Pearson at the sequence's level at every check, which is valid
    at any one n but not at all of them at once, in place of the betting martingale."""

    def peeking(q: float, alpha: float, n_max: int, prior: float = bounds.KT_PRIOR) -> np.ndarray:
        n = np.arange(n_max + 1)
        thresholds = (binom.ppf(1 - alpha, n, q) + 1).astype(np.int64)
        thresholds[0] = n_max + 2
        return np.minimum.accumulate(thresholds[::-1])[::-1]

    monkeypatch.setattr(bounds, "betting_thresholds", peeking)
    wrong, trials = failures("cs-betting", SEQUENCE)
    assert clearly_above_alpha(wrong, trials), wrong


@pytest.mark.parametrize("name,extra", [("horvath", {"radius": RADIUS, "steps": "100,1000,10000"}), ("cs-union", {"radius": RADIUS}), ("cs-betting", {"radius": RADIUS})])
def test_decisions_have_power(name, extra):
    """Far from the threshold each certifier decides, and decides right, long before N."""
    smoother = GaussianSmoother(SIGMA)
    settings = CertifySettings(100, 20_000, 0.001, extra)
    certifier = plugins.get("certifiers", name).obj()
    above = certify_many(certifier, smoother, settings, two_classes(0.97), 50, seed=3)
    below = certify_many(certifier, smoother, settings, two_classes(0.7), 50, seed=3)
    assert all(c.prediction == 0 and c.radius >= RADIUS for c in above)
    assert all(c.prediction == ABSTAIN for c in below)
    assert np.mean([c.samples for c in above + below]) < 3000
