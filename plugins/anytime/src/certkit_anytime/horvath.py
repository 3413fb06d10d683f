"""Adaptive sampling for a predetermined radius: Horváth, Müller, Fischer & Vechev, "Boosting
Randomized Smoothing with Variance Reduced Classifiers", ICLR 2022 (Section 5 and the reference
code, eth-sri/smoothing-ensembles, ``SmoothEnsembleAdaptive.certify``).

For a target radius r and steps n_1, ..., n_s (the paper: 100, 1,000, 10,000, 120,000), step j is
Cohen et al.'s CERTIFY with fresh samples: N0 samples select the class, n_j fresh samples give a
Clopper-Pearson lower bound at level alpha / s (Bonferroni). The first step whose bound certifies
r ends the run with that certificate. Before going on to the next step, a Clopper-Pearson upper
bound at level beta / (s - 1) asks whether r is still worth pursuing; if its radius is below r
the run gives up (abstains).

**Guarantee.** With probability at least 1 - alpha, a returned class is the smoothed
classifier's prediction and it is constant within the returned radius (>= r): each step's
lower bound fails with probability at most alpha / s given its selection, so all s of them hold
together with probability >= 1 - alpha (union bound), whichever step the run stops at. The
upper bounds only decide to give up: beta is a loss of power, not of validity.
"""

from __future__ import annotations

from certkit import ABSTAIN, Certificate, CertkitError, Smoother
from certkit.interfaces import CertifyProcess, CertifySettings, CountSampler
from certkit.sampling import drive
from certkit.stats import clopper_pearson_lower, clopper_pearson_upper

from certkit_anytime.common import certificate, probability_for, read_options, steps, target_radius

PAPER_STEPS = (100, 1000, 10_000, 120_000)
DEFAULT_BETA = 1e-4  # the reference code's default (its --beta)
_EXAMPLE = "Pass e.g. -O radius=0.5 (optional: -O steps=100,1000,10000,120000 -O beta=0.0001)."
_OPTIONS = {"radius": float, "steps": steps, "beta": float}


def _stage(name: str, step: int) -> str:
    """Step 1 uses CERTIFY's own streams; later steps draw fresh samples from streams of their own."""
    return name if step == 1 else f"{name}-{step}"


class HorvathCertifier:
    """``horvath``: Horváth et al. (ICLR 2022) adaptive sampling for one target radius.

    Options: ``radius`` (required), ``steps`` (default 100,1000,10000,120000: each step draws N0 +
    n_j fresh samples; ``--n`` is not used), ``beta`` (level of the give-up test, default 1e-4).
    Guarantee: with probability >= 1 - alpha a returned class and radius (>= the target) are
    correct (Bonferroni over the steps).
    """

    name = "horvath"

    def __init__(self) -> None:
        self._targets: dict[tuple[int, float], tuple[Smoother, float]] = {}

    def _target(self, smoother: Smoother, radius: float) -> float:
        key = (id(smoother), radius)
        if key not in self._targets:  # the same for every image of a run
            self._targets[key] = (smoother, probability_for(smoother, radius))  # holding the smoother keeps its id unique
        return self._targets[key][1]

    def check(self, settings: CertifySettings) -> None:
        options = self._options(settings)
        if settings.n0 < 1:
            raise CertkitError(f"n0 must be >= 1, got {settings.n0}.", "Pass e.g. --n0 100.")
        if not 0 < settings.alpha < 1 or not 0 < options["beta"] < 1:
            raise CertkitError(f"alpha and beta must be in (0, 1), got alpha={settings.alpha}, beta={options['beta']}.", _EXAMPLE)

    def check_reach(self, smoother: Smoother, settings: CertifySettings) -> None:
        """Refuse a target radius that the last step cannot certify even with every sample a hit."""
        options = self._options(settings)
        last = options["steps"][-1]
        largest = smoother.radius(clopper_pearson_lower(last, last, settings.alpha / len(options["steps"])))
        if options["radius"] > largest:
            raise CertkitError(
                f"horvath cannot certify radius {options['radius']:g} with steps {','.join(map(str, options['steps']))} at alpha = {settings.alpha}: "
                f"the largest reachable radius is {largest:.4g}.",
                "Pass -O radius=R with R up to that, or a larger last step.",
            )

    @staticmethod
    def _options(settings: CertifySettings) -> dict:
        radius = target_radius("horvath", settings.extra, _EXAMPLE)
        options = read_options("horvath", settings.extra, _OPTIONS, {"steps": PAPER_STEPS, "beta": DEFAULT_BETA}, _EXAMPLE)
        options["radius"] = radius
        return options

    def certify(self, sample: CountSampler, smoother: Smoother, settings: CertifySettings) -> Certificate:
        return drive(self.process(smoother, settings), sample)

    def process(self, smoother: Smoother, settings: CertifySettings) -> CertifyProcess:
        options = self._options(settings)
        radius, sizes, beta = options["radius"], options["steps"], options["beta"]
        target = self._target(smoother, radius)
        lower_level = settings.alpha / len(sizes)
        upper_level = beta / max(1, len(sizes) - 1)
        samples = 0
        for step, size in enumerate(sizes, start=1):
            selection = yield _stage("selection", step), settings.n0
            candidate = int(selection.argmax())
            estimation = yield _stage("estimation", step), size
            samples += settings.n0 + size
            count = int(estimation[candidate])
            p_lower = clopper_pearson_lower(count, size, lower_level)
            if p_lower > 0.5 and smoother.radius(p_lower) >= radius:
                return certificate(smoother, candidate, smoother.radius(p_lower), p_lower, samples, size, count, int(selection[candidate]))
            if step < len(sizes) and clopper_pearson_upper(count, size, upper_level) < target:
                break  # the target radius is out of reach: not worth the next step
        return certificate(smoother, ABSTAIN, 0.0, p_lower, samples, size, count, int(selection[candidate]))
