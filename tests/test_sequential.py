"""Sequential certification: its guarantee (>= 2000 trials with exact probabilities, p just under
grid thresholds, and negative controls that must fail), its plan and schedule choice, that it
sees Cohen's noise, and that packing images into batches changes nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.stats import binom, norm
from typer.testing import CliRunner

from certkit import ABSTAIN
from certkit.certifiers import schedule
from certkit.certifiers.cohen import CohenCertifier
from certkit.certifiers.replay import CategoricalSampler, certify_many, two_classes
from certkit.certifiers.schedule import ScheduleChooser, decided, make_plan, plan_looks, spend_alpha
from certkit.certifiers.sequential import SequentialCertifier, grid_thresholds
from certkit.cli.main import build_app
from certkit.engines import TorchEngine
from certkit.errors import CertkitError
from certkit.interfaces import CertifySettings
from certkit.sampling import MonteCarloSampler, drive
from certkit.smoothers import GaussianSmoother
from certkit.stats import clopper_pearson_lower
from test_statistics import SIGMA, ThresholdClassifier, failures_of, pixel_for

GRID = [0.0, 0.25, 0.5]
# Probabilities just under the grid's thresholds are the hard case: an early look that
# overestimates p certifies a grid radius too many.
HARD = (0.6, float(norm.cdf(0.25 / SIGMA)) - 0.005, float(norm.cdf(0.5 / SIGMA)) - 0.005)
ALPHA = 0.05  # large, so that 2100 trials see a violation if there is one
TRIALS = 700  # per probability: 2100 in all


def sampler(batch: int = 1000, seed: int = 1) -> MonteCarloSampler:
    return MonteCarloSampler(TorchEngine(ThresholdClassifier(), torch.device("cpu")), GaussianSmoother(SIGMA), batch_size=batch, seed=seed)


def settings(alpha: float = ALPHA, n: int = 1000, **extra) -> CertifySettings:
    return CertifySettings(n0=20, n=n, alpha=alpha, extra={"radii": GRID, **extra})


def failures(extra: dict, seed: int = 2) -> tuple[int, int]:
    """Wrong certificates over 2100 certifications at the HARD probabilities (exact categorical votes)."""
    smoother, wrong, trials = GaussianSmoother(SIGMA), 0, 0
    for p_top in HARD:
        certifier = SequentialCertifier()
        s = settings(**extra)
        certifier.check(s)
        certs = certify_many(certifier, smoother, s, two_classes(p_top), TRIALS, seed)
        wrong += failures_of(certs, p_top, smoother)
        trials += len(certs)
    return wrong, trials


@pytest.mark.parametrize("extra", [{}, {"bound": "betting"}, {"first": 20, "growth": 1.5}], ids=["cp-chosen-looks", "betting-chosen-looks", "cp-fixed-looks"])
def test_sequential_failure_rate_is_at_most_alpha(extra):
    """An empirical failure rate above alpha is rejected (not alpha plus a tolerance): the
    procedure's real rate is well below alpha (union bound, Clopper-Pearson), about 0.02 here."""
    wrong, trials = failures(extra)
    assert trials >= 2000
    assert wrong <= ALPHA * trials, (wrong, trials)
    assert wrong > 0  # not vacuous: these probabilities do produce wrong certificates at alpha = 0.05


def test_guarantee_test_catches_peeking_without_spending_alpha(monkeypatch):
    """Negative control: the full alpha at every look (peeking) fails the same check."""
    monkeypatch.setattr(schedule, "spend_alpha", lambda alpha, looks, share, bound="cp": (alpha,) * looks)
    wrong, trials = failures({"first": 20, "growth": 1.5})
    assert wrong > binom.ppf(0.999, trials, ALPHA), wrong


def test_guarantee_test_catches_a_betting_sequence_without_its_mixture(monkeypatch):
    """Negative control for ``bound=betting``, with looks every 10 samples or 5% (46 of them): the betting
    sequence passes, and Clopper-Pearson at the sequence's level at every look (not a confidence
    sequence: each look alone is valid, all of them together are not) fails the same check."""
    monkeypatch.setattr(schedule, "NOISE_BLOCK", 10)  # looks need not end on whole blocks here
    dense = {"bound": "betting", "first": 20, "growth": 1.05, "final_share": 0.1}
    assert len(make_plan(1000, ALPHA, 20, 1.05, 0.1, ALPHA, "betting").looks) == 46
    wrong, trials = failures(dense)
    assert wrong <= ALPHA * trials, wrong
    monkeypatch.setattr(schedule, "betting_lower", clopper_pearson_lower)
    wrong, trials = failures(dense)
    assert wrong > binom.ppf(0.999, trials, ALPHA), wrong


def test_plan_spends_alpha_on_lower_bounds_only():
    assert plan_looks(100_000, 1000, 2.0) == (1000, 2000, 4000, 8000, 16000, 32000, 64000, 100000)
    assert plan_looks(1000, 5000, 2.0) == (1000,)
    assert plan_looks(1000, 20, 1.5) == (20, 100, 200, 300, 500, 800, 1000)  # whole noise blocks after the first
    lower = spend_alpha(0.001, 8, 0.5)
    assert sum(lower) == pytest.approx(0.001, rel=1e-12) and lower[-1] == 0.0005  # union bound: all of alpha, on the lower bounds
    assert spend_alpha(0.001, 8, 0.5, "betting") == pytest.approx((0.0005,) * 7 + (0.0005,))  # one sequence for the early looks
    assert spend_alpha(0.001, 1, 0.5) == (0.001,)  # one look: Cohen's CERTIFY
    plan = make_plan(100_000, 0.001, 1000, 2.0, 0.5, stop_alpha=0.01, bound="cp")
    assert plan.stop_alpha == 0.01  # the upper bounds' level is charged to nothing


def test_grid_thresholds_and_decision():
    smoother = GaussianSmoother(0.5)
    grid = grid_thresholds([0.0, 0.5, 1.0, 3.0], smoother.radius, reachable=0.999)
    assert grid == pytest.approx([0.5, norm.cdf(1.0), norm.cdf(2.0)], abs=1e-12)  # r=3 needs p > 0.9987: unreachable, dropped
    assert grid_thresholds([0.5, 1.0], smoother.radius, 0.999) == pytest.approx([norm.cdf(1.0), norm.cdf(2.0)], abs=1e-12)  # no radius 0: no 1/2
    assert decided(0.86, 0.97, grid)  # between Phi(1) and Phi(2): certifies r=0.5, not r=1
    assert not decided(0.83, 0.86, grid)  # Phi(1) = 0.841 still inside
    assert decided(0.98, 1.0, grid)  # past the last reachable threshold
    assert decided(0.1, 0.45, grid)  # abstains whatever comes
    assert not decided(0.5, 0.6, grid)  # a bound of exactly 1/2 does not certify: 1/2 is still open


def test_chosen_schedule_bounds_the_expected_samples():
    """The chooser's objective is an upper bound on the expected estimation samples (checked by
    simulation), and the schedule it picks is no worse by that objective than fixed looks."""
    smoother = GaussianSmoother(0.5)
    n, alpha, p_top = 20_000, 0.001, 0.995
    radii = [0.0, 0.5, 1.0, 1.25]
    grid = grid_thresholds(radii, smoother.radius, clopper_pearson_lower(n, n, alpha / 2))
    chooser = ScheduleChooser(n, alpha, grid, final_share=0.5, stop_alpha=alpha, bound="cp")
    fixed = next(c for c in chooser.candidates if c.plan.looks == plan_looks(n, 1000, 2.0))
    bound = float(chooser.expected_samples(fixed, np.array([p_top]))[0])
    s = CertifySettings(100, n, alpha, {"radii": radii, "first": 1000, "growth": 2})
    used = [c.n for c in certify_many(SequentialCertifier(), smoother, s, two_classes(p_top), 300, seed=4)]
    assert np.mean(used) <= bound + 3 * np.std(used) / np.sqrt(len(used)), (np.mean(used), bound)
    points = chooser.posterior(100, 99)
    chosen = next(c for c in chooser.candidates if c.plan == chooser.choose(100, 99))
    assert chooser.cost(chosen, points) <= chooser.cost(fixed, points)
    assert chosen.plan.looks[-1] == n


def test_stream_continues_across_requests():
    """Asking a stage in pieces sees exactly the noise of one request: at its last look the
    sequential certifier has Cohen's counts."""
    image = pixel_for(0.7)
    pieces = sampler(batch=64).for_image(image, 3)
    split = pieces("estimation", 300) + pieces("estimation", 700)
    whole = sampler(batch=1000).for_image(image, 3)("estimation", 1000)
    assert np.array_equal(split, whole)
    votes = CategoricalSampler(5).for_image(two_classes(0.7), 3)
    assert np.array_equal(votes("estimation", 300) + votes("estimation", 1700), CategoricalSampler(5).for_image(two_classes(0.7), 3)("estimation", 2000))


def test_sequential_ends_with_cohens_count_when_undecided():
    p_top = float(norm.cdf(0.25 / SIGMA))  # on a threshold: never decided early
    s = settings(alpha=0.001, n=2000, first=20, growth=1.5)
    smoother = GaussianSmoother(SIGMA)
    seq = drive(SequentialCertifier().process(smoother, s), sampler().for_image(pixel_for(p_top), 5))
    cohen = CohenCertifier().certify(sampler().for_image(pixel_for(p_top), 5), smoother, CertifySettings(20, 2000, 0.001))
    assert seq.n == 2000 and seq.samples == 2020
    assert (seq.count, seq.selection_count) == (cohen.count, cohen.selection_count)
    assert seq.p_lower < cohen.p_lower  # half of alpha kept for this look: a slightly lower bound


def test_a_bound_of_exactly_one_half_abstains():
    """1 hit out of 1 at alpha 0.5 bounds p at exactly 1/2: no certificate (Cohen's rule)."""
    always = CategoricalSampler(0).for_image(np.array([1.0, 0.0]), 0)
    s = CertifySettings(1, 1, 0.5, {"radii": [0.0], "first": 1, "growth": 2})
    for certifier in (CohenCertifier(), SequentialCertifier()):
        cert = drive(certifier.process(GaussianSmoother(SIGMA), s if certifier.name == "sequential" else CertifySettings(1, 1, 0.5)), always)
        assert cert.p_lower == 0.5 and cert.prediction == ABSTAIN and cert.radius == 0.0, certifier.name
    cert = drive(CohenCertifier().process(GaussianSmoother(SIGMA), CertifySettings(1, 2, 0.5)), CategoricalSampler(0).for_image(np.array([1.0, 0.0]), 0))
    assert cert.p_lower > 0.5 and cert.prediction == 0  # just above 1/2: a class


def test_packing_changes_nothing():
    """Batch size, packing and admission order do not change a single certificate."""
    s = settings(alpha=0.01)
    mixed = [0.3, 0.55, 0.7, 0.99, 0.999, 0.8]
    smoother = GaussianSmoother(SIGMA)

    def packed(batch: int, in_flight: int | None):
        certifier = SequentialCertifier()
        work = ((i, pixel_for(p), certifier.process(smoother, s)) for i, p in enumerate(mixed))
        return dict((idx, cert) for idx, cert, _ in sampler(batch).run(work, in_flight=in_flight))

    alone = {i: drive(SequentialCertifier().process(smoother, s), sampler(batch=1000).for_image(pixel_for(p), i)) for i, p in enumerate(mixed)}
    assert packed(37, None) == alone
    assert packed(1000, 2) == alone
    samples = {i: c.n for i, c in alone.items()}
    assert samples[3] < 1000 and samples[4] < 1000 and samples[2] == 1000  # far from a threshold: stopped early


def test_options_are_checked():
    with pytest.raises(CertkitError, match="unknown option 'frist'") as error:
        SequentialCertifier().check(settings(frist=3))
    assert "bound, first, growth, final_share, stop_alpha" in error.value.fix
    with pytest.raises(CertkitError, match="growth > 1"):
        SequentialCertifier().check(settings(first=20, growth=1))
    one = SequentialCertifier()._options(settings(first=20))  # fixed looks; growth keeps 2
    assert (one.first, one.growth) == (20, 2.0) and SequentialCertifier()._options(settings()).first is None
    with pytest.raises(CertkitError, match="not one of cp, betting"):
        SequentialCertifier().check(settings(bound="hoeffding"))
    with pytest.raises(CertkitError, match="takes no options"):
        CohenCertifier().check(CertifySettings(20, 1000, 0.001, extra={"first": 5}))


def test_a_grid_out_of_reach_is_refused_with_the_largest_radius():
    smoother = GaussianSmoother(0.25)
    s = CertifySettings(100, 1000, 0.001, {"radii": [1.0, 2.0]})
    with pytest.raises(CertkitError, match=r"largest reachable radius is 0\.607"):
        SequentialCertifier().check_reach(smoother, s)
    SequentialCertifier().check_reach(smoother, CertifySettings(100, 1000, 0.001, {"radii": [0.0, 0.25, 0.5, 1.0, 2.0]}))  # some reachable: fine


def test_cli_sequential_records_samples_per_image(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = ["certify", "--model", "tiny-cnn", "--sigma", "0.25", "--n0", "50", "--n", "2000", "--max", "6", "--batch", "500", "--radii", "0:0.5:0.25"]
    looks = ["-O", "first=200", "-O", "growth=2"]
    result = CliRunner().invoke(build_app(), [*common, "--certifier", "sequential", *looks, "--out", "s.tsv"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "samples total" in result.output
    rows = [line.split("\t") for line in (tmp_path / "s.tsv").read_text().splitlines()]
    header, rows = rows[0], rows[1:]
    used = [int(row[header.index("n")]) for row in rows]
    assert [int(row[0]) for row in rows] == sorted(int(row[0]) for row in rows)
    assert all(250 <= u <= 2050 for u in used)
    meta = json.loads((tmp_path / "s.tsv.meta.json").read_text())
    assert meta["certifier"] == "sequential" and meta["certifier_options"] == {"first": 200, "growth": 2, "radii": [0.0, 0.25, 0.5]}
    # A different grid is a different run: resuming into the file is refused.
    again = CliRunner().invoke(build_app(), [*common[:-2], "--radii", "0,1", "--certifier", "sequential", *looks, "--out", "s.tsv"])
    assert again.exit_code == 2 and "different configuration" in again.stderr


@pytest.mark.parametrize("name,extra", [("sequential", {"radii": [0.0, 0.25, 0.5]}), ("horvath", {"radius": 0.25, "steps": "100,1000"}), ("cs-union", {"radius": 0.25}), ("cs-betting", {"radius": 0.25})])
def test_certifiers_work_with_any_smoother_that_declares_its_radius(name, extra):
    """With the uniform smoother (L1: R = 2 lam (p - 1/2)) the thresholds come from its radius,
    and certificates carry its norm."""
    from certkit import plugins
    from certkit.smoothers import build_smoother

    smoother = build_smoother("uniform", 0.5)
    assert grid_thresholds([0.0, 0.25], smoother.radius, 1.0) == pytest.approx([0.5, 0.5 + 0.25 / (2 * smoother.half_width)], abs=1e-12)
    certifier = plugins.get("certifiers", name).obj()
    s = CertifySettings(100, 5000, 0.001, extra)
    certifier.check(s)
    certifier.check_reach(smoother, s)
    certs = certify_many(certifier, smoother, s, two_classes(0.95), 5, seed=0)
    assert all(c.prediction == 0 and c.norm == "l1" and c.radius >= 0.25 for c in certs)
