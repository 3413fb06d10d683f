"""Confidence-sequence certifiers: Voráček & Hein, "Treatment of Statistical Estimation Problems
in Randomized Smoothing for Adversarial Robustness", NeurIPS 2024 (Section 4 and the reference
code, vvoracek/RS_conf_seq: ``core.Certifier.certify`` / ``certify_ub`` and ``thresholds.py``).

The task is Voráček et al.'s: decide "radius >= r" for one target radius r with as few samples
as possible. The candidate class is chosen by N0 selection samples, as in Cohen et al. (the
reference code takes the label instead; a certifier never sees labels). Then estimation
samples are drawn ``check_every`` at a time, up to ``--n``, and after each batch the count k of
hits out of n is compared with two thresholds (see :mod:`certkit_anytime.bounds`): certify when
k >= certify[n], give up when k <= give_up[n]. ``cs-union`` builds them from Clopper-Pearson tests
at geometric looks with a union bound; ``cs-betting`` from the Krichevsky-Trofimov betting
martingale.

**Guarantee.** With probability at least 1 - alpha, a returned class is the smoothed classifier's
prediction and it is constant within the returned radius (the target r): certify[] is the
rejection boundary of a test of "p <= q" (q = the probability whose radius is r) whose level
holds at every n at once (union bound over looks; Ville's inequality for the betting
martingale), at ``certify_share`` x alpha <= alpha, whenever the run stops. The give-up side only
stops the run and spends no alpha the certificate needs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from certkit import ABSTAIN, Certificate, CertkitError, Smoother
from certkit.interfaces import CertifyProcess, CertifySettings, CountSampler
from certkit.sampling import drive

from certkit_anytime.bounds import KT_PRIOR, decision_thresholds, largest_reachable
from certkit_anytime.common import certificate, probability_for, read_options, target_radius

DEFAULT_CHECK_EVERY = 100  # one noise block: the reference checks after every sample


class ConfidenceSequenceCertifier:
    """Decides "radius >= r" with a confidence sequence; ``kind`` is ``union`` or ``betting``."""

    uses_radii = False

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.name = f"cs-{kind}"
        # The reference code's split: the union bound spends alpha on each side (only the
        # certifying side needs it), the betting sequence alpha / 2 on each (a two-sided CS at alpha).
        share = 1.0 if kind == "union" else 0.5
        self._defaults: dict[str, Any] = {"check_every": DEFAULT_CHECK_EVERY, "certify_share": share, "stop_share": share}
        self._known: dict[str, Any] = {"radius": float, "check_every": int, "certify_share": float, "stop_share": float}
        if kind == "union":
            self._defaults.update(ratio=1.1, start=11)  # looks after ratio^k, k from start + 1 (reference: beta=1.1, kinit=11)
            self._known.update(ratio=float, start=int)
        else:
            self._defaults.update(prior=KT_PRIOR)  # Beta(prior, prior) mixture: Krichevsky-Trofimov
            self._known.update(prior=float)
        self._example = f"Pass e.g. -O radius=0.5 (optional: {', '.join(f'-O {k}={v}' for k, v in self._defaults.items())})."
        self._thresholds: dict[tuple, tuple[Smoother, float, np.ndarray, np.ndarray]] = {}

    def _options(self, settings: CertifySettings) -> dict[str, Any]:
        radius = target_radius(self.name, settings.extra, self._example)
        options = read_options(self.name, settings.extra, self._known, self._defaults, self._example)
        options["radius"] = radius
        bad = (
            options["check_every"] < 1 or not 0 < options["certify_share"] <= 1 or not 0 < options["stop_share"] * settings.alpha < 1
            or options.get("ratio", 2.0) <= 1 or options.get("prior", 1.0) <= 0
        )
        if bad:
            raise CertkitError(f"{self.name} needs check_every >= 1, 0 < certify_share <= 1, 0 < stop_share x alpha < 1, ratio > 1 and prior > 0; got {', '.join(f'{k}={v}' for k, v in settings.extra.items())}.", self._example)
        return options

    def _shape(self, options: dict[str, Any]) -> dict[str, Any]:
        return {"ratio": options.get("ratio", 1.1), "start": options.get("start", 11), "prior": options.get("prior", KT_PRIOR)}

    def check(self, settings: CertifySettings) -> None:
        self._options(settings)
        if settings.n0 < 1 or settings.n < 1:
            raise CertkitError(f"n0 and n must be >= 1, got n0={settings.n0}, n={settings.n}.", "Pass e.g. --n0 100 --n 100000.")
        if not 0 < settings.alpha < 1:
            raise CertkitError(f"alpha must be in (0, 1), got {settings.alpha}.", "Pass e.g. --alpha 0.001.")

    def check_reach(self, smoother: Smoother, settings: CertifySettings) -> None:
        """Refuse a target radius that n samples, every one a hit, cannot certify."""
        options = self._options(settings)
        reachable = largest_reachable(self.kind, options["certify_share"] * settings.alpha, settings.n, **self._shape(options))
        largest = smoother.radius(reachable) if reachable > 0.5 else 0.0
        if options["radius"] > largest:
            raise CertkitError(
                f"{self.name} cannot certify radius {options['radius']:g} with n = {settings.n} at alpha = {settings.alpha}: the largest reachable radius is {largest:.4g}.",
                "Pass -O radius=R with R up to that, or a larger --n.",
            )

    def _decision(self, smoother: Smoother, settings: CertifySettings, options: dict[str, Any]) -> tuple[float, np.ndarray, np.ndarray]:
        """The target probability q and the count thresholds of a run."""
        key = (id(smoother), settings.n, settings.alpha, tuple(sorted(options.items())))
        if key not in self._thresholds:  # the same for every image of a run: built once
            target = probability_for(smoother, options["radius"])
            certify, give_up = decision_thresholds(
                self.kind, target, options["certify_share"] * settings.alpha, options["stop_share"] * settings.alpha, settings.n, **self._shape(options)
            )
            self._thresholds[key] = (smoother, target, certify, give_up)  # holding the smoother keeps its id unique
        return self._thresholds[key][1:]

    def certify(self, sample: CountSampler, smoother: Smoother, settings: CertifySettings) -> Certificate:
        return drive(self.process(smoother, settings), sample)

    def process(self, smoother: Smoother, settings: CertifySettings) -> CertifyProcess:
        options = self._options(settings)
        target, certify, give_up = self._decision(smoother, settings, options)
        selection = yield "selection", settings.n0
        candidate = int(selection.argmax())
        count = drawn = 0
        while drawn < settings.n:
            estimation = yield "estimation", min(options["check_every"], settings.n - drawn)
            drawn += min(options["check_every"], settings.n - drawn)
            count += int(estimation[candidate])
            if count >= certify[drawn]:
                # The test of p <= q rejected: certify the target radius (and no more).
                return certificate(smoother, candidate, options["radius"], target, settings.n0 + drawn, drawn, count, int(selection[candidate]))
            if count <= give_up[drawn]:
                break
        return certificate(smoother, ABSTAIN, 0.0, 0.0, settings.n0 + drawn, drawn, count, int(selection[candidate]))


def cs_union() -> ConfidenceSequenceCertifier:
    """``cs-union``: Voráček et al.'s union-bound confidence sequence."""
    return ConfidenceSequenceCertifier("union")


def cs_betting() -> ConfidenceSequenceCertifier:
    """``cs-betting``: Voráček et al.'s betting (Krichevsky-Trofimov) confidence sequence."""
    return ConfidenceSequenceCertifier("betting")
