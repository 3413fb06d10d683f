"""Sequential certification: its guarantee (>= 2000 trials with known probabilities), its plan,
that it sees Cohen's noise, and that packing images into batches changes nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import binom, norm
from typer.testing import CliRunner

from certkit.certifiers import sequential
from certkit.certifiers.cohen import CohenCertifier
from certkit.certifiers.sequential import SequentialCertifier, decided, grid_thresholds, plan_looks, spend_alpha
from certkit.cli.main import build_app
from certkit.engines import TorchEngine
from certkit.errors import CertkitError
from certkit.interfaces import CertifySettings
from certkit.sampling import MonteCarloSampler, drive
from certkit.smoothers import GaussianSmoother
from test_statistics import SIGMA, ThresholdClassifier, pixel_for, wrong

GRID = [0.0, 0.25, 0.5]
# Probabilities just under the grid's thresholds are the hard case: an early look that
# overestimates p certifies a grid radius too many.
HARD = (0.6, float(norm.cdf(0.25 / SIGMA)) - 0.005, float(norm.cdf(0.5 / SIGMA)) - 0.005)


def sampler(batch: int = 1000, seed: int = 1) -> MonteCarloSampler:
    return MonteCarloSampler(TorchEngine(ThresholdClassifier(), torch.device("cpu")), GaussianSmoother(SIGMA), batch_size=batch, seed=seed)


def certify_many(p_top: float, trials: int, settings: CertifySettings, seed: int, batch: int = 1000) -> list:
    """Each trial is another image index, hence an independent noise stream; batches packed."""
    certifier, smoother = SequentialCertifier(), GaussianSmoother(SIGMA)
    certifier.check(settings)
    image = pixel_for(p_top)
    work = ((i, image, certifier.process(smoother, settings)) for i in range(trials))
    results = dict((idx, cert) for idx, cert, _ in sampler(batch, seed).run(work))
    return [results[i] for i in range(trials)]


def settings(alpha: float = 0.05, n: int = 1000, **extra) -> CertifySettings:
    return CertifySettings(n0=20, n=n, alpha=alpha, extra={"first": 20, "growth": 1.5, "radii": GRID, **extra})


def test_sequential_failure_rate_is_at_most_alpha():
    alpha = 0.05  # large, so that 2100 trials would see a violation
    failures, trials = 0, 0
    for p_top in HARD:
        certs = certify_many(p_top, 700, settings(alpha), seed=2)
        failures += sum(wrong(c, p_top) for c in certs)
        trials += len(certs)
    allowed = binom.ppf(0.999, trials, alpha)
    assert trials >= 2000
    assert failures <= allowed, (failures, trials, allowed)


def test_guarantee_test_catches_peeking_without_spending_alpha(monkeypatch):
    """The same check rejects the naive version: the full alpha at every look."""
    monkeypatch.setattr(sequential, "spend_alpha", lambda alpha, looks, share: ((alpha,) * looks, (alpha,) * (looks - 1) + (0.0,)))
    alpha, failures, trials = 0.05, 0, 0
    for p_top in HARD:
        certs = certify_many(p_top, 700, settings(alpha), seed=2)
        failures += sum(wrong(c, p_top) for c in certs)
        trials += len(certs)
    assert failures > binom.ppf(0.999, trials, alpha), failures


def test_plan_spends_alpha_with_most_of_it_at_the_end():
    assert plan_looks(100_000, 1000, 2.0) == (1000, 2000, 4000, 8000, 16000, 32000, 64000, 100000)
    assert plan_looks(1000, 5000, 2.0) == (1000,)
    assert plan_looks(1000, 20, 1.5) == (20, 100, 200, 300, 500, 800, 1000)  # whole noise blocks after the first
    lower, upper = spend_alpha(0.001, 8, 0.5)
    assert sum(lower) + sum(upper) == pytest.approx(0.001, rel=1e-12)
    assert lower[-1] == 0.0005 and upper[-1] == 0.0
    assert spend_alpha(0.001, 1, 0.5) == ((0.001,), (0.0,))  # one look: Cohen's CERTIFY


def test_grid_thresholds_and_decision():
    smoother = GaussianSmoother(0.5)
    grid = grid_thresholds([0.0, 0.5, 1.0, 3.0], smoother.radius, reachable=0.999)
    assert grid == pytest.approx([0.5, norm.cdf(1.0), norm.cdf(2.0)], abs=1e-12)  # r=3 needs p > 0.9987: unreachable, dropped
    assert decided(0.86, 0.97, grid)  # between Phi(1) and Phi(2): certifies r=0.5, not r=1
    assert not decided(0.83, 0.86, grid)  # Phi(1) = 0.841 still inside
    assert decided(0.98, 1.0, grid)  # past the last reachable threshold
    assert decided(0.1, 0.45, grid)  # abstains whatever comes


def test_stream_continues_across_requests():
    """Asking a stage in pieces sees exactly the noise of one request: at its last look the
    sequential certifier has Cohen's counts."""
    image = pixel_for(0.7)
    pieces = sampler(batch=64).for_image(image, 3)
    split = pieces("estimation", 300) + pieces("estimation", 700)
    whole = sampler(batch=1000).for_image(image, 3)("estimation", 1000)
    assert np.array_equal(split, whole)


def test_sequential_ends_with_cohens_count_when_undecided():
    p_top = float(norm.cdf(0.25 / SIGMA))  # on a threshold: never decided early
    s = settings(alpha=0.001, n=2000)
    smoother = GaussianSmoother(SIGMA)
    seq = drive(SequentialCertifier().process(smoother, s), sampler().for_image(pixel_for(p_top), 5))
    cohen = CohenCertifier().certify(sampler().for_image(pixel_for(p_top), 5), smoother, CertifySettings(20, 2000, 0.001))
    assert seq.n == 2000 and seq.samples == 2020
    assert (seq.count, seq.selection_count) == (cohen.count, cohen.selection_count)
    assert seq.p_lower < cohen.p_lower  # half of alpha kept for this look: a slightly lower bound


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
    with pytest.raises(CertkitError, match="unknown option 'frist'"):
        SequentialCertifier().check(settings(frist=3))
    with pytest.raises(CertkitError, match="growth > 1"):
        SequentialCertifier().check(settings(growth=1))
    with pytest.raises(CertkitError, match="takes no options"):
        CohenCertifier().check(CertifySettings(20, 1000, 0.001, extra={"first": 5}))


def test_cli_sequential_records_samples_per_image(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = ["certify", "--model", "tiny-cnn", "--sigma", "0.25", "--n0", "50", "--n", "2000", "--max", "6", "--batch", "500", "--radii", "0:0.5:0.25"]
    result = CliRunner().invoke(build_app(), [*common, "--certifier", "sequential", "-O", "first=200", "--out", "s.tsv"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "samples total" in result.output
    rows = [line.split("\t") for line in (tmp_path / "s.tsv").read_text().splitlines()]
    header, rows = rows[0], rows[1:]
    used = [int(row[header.index("n")]) for row in rows]
    assert [int(row[0]) for row in rows] == sorted(int(row[0]) for row in rows)
    assert all(250 <= u <= 2050 for u in used)
    import json

    meta = json.loads((tmp_path / "s.tsv.meta.json").read_text())
    assert meta["certifier"] == "sequential" and meta["certifier_options"] == {"first": 200, "radii": [0.0, 0.25, 0.5]}
    # A different grid is a different run: resuming into the file is refused.
    again = CliRunner().invoke(build_app(), [*common[:-2], "--radii", "0,1", "--certifier", "sequential", "-O", "first=200", "--out", "s.tsv"])
    assert again.exit_code == 2 and "different configuration" in again.stderr
