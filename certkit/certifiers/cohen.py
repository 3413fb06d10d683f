"""Cohen, Rosenfeld & Kolter (2019): PREDICT and CERTIFY for Gaussian smoothing.

Unlike the reference code: the device comes from the sampler (never hard-coded), bounds come
from scipy.stats (``binomtest``, beta quantiles), results are dataclasses, and there is no early
abstain on a label mismatch: the prediction reported is always the smoothed classifier's.
"""

from __future__ import annotations

import numpy as np

from certkit.errors import CertkitError
from certkit.interfaces import ABSTAIN, Certificate, CertifyProcess, CertifySettings, CountSampler, Prediction, Smoother
from certkit.sampling import drive
from certkit.stats import clopper_pearson_lower, min_samples_to_certify, min_samples_to_predict, two_sided_p_value


class CohenCertifier:
    """CERTIFY: N0 samples choose the class, N fresh samples bound its probability.

    With probability at least 1 - alpha over the noise, if the returned prediction is not
    ABSTAIN, the smoothed classifier g returns it at every point within ``radius`` (L2) of x.
    """

    name = "cohen"

    def check(self, settings: CertifySettings) -> None:
        if settings.extra:
            raise CertkitError(f"certifier 'cohen' takes no options, got {', '.join(sorted(settings.extra))}.", "Drop -O, or use --certifier sequential.")
        if settings.n0 < 1 or settings.n < 1:
            raise CertkitError(f"n0 and n must be >= 1, got n0={settings.n0}, n={settings.n}.", "Pass e.g. --n0 100 --n 10000.")
        if settings.n0 > settings.n:
            raise CertkitError(
                f"n0 ({settings.n0}) is larger than n ({settings.n}); n0 only selects the class and n estimates its probability.",
                "Pass --n0 <= --n (Cohen et al. use n0 = 100).",
            )
        if not 0 < settings.alpha < 1:
            raise CertkitError(f"alpha must be in (0, 1), got {settings.alpha}.", "Pass e.g. --alpha 0.001.")
        minimum = min_samples_to_certify(settings.alpha)
        if settings.n < minimum:
            raise CertkitError(
                f"n = {settings.n} can never certify at alpha = {settings.alpha}: even {settings.n} hits out of {settings.n} bound pA below 1/2.",
                f"Use --n {minimum} or more (more gives larger radii), or a larger --alpha.",
            )

    def certify(self, sample: CountSampler, smoother: Smoother, settings: CertifySettings) -> Certificate:
        return drive(self.process(smoother, settings), sample)

    def process(self, smoother: Smoother, settings: CertifySettings) -> CertifyProcess:
        selection = yield "selection", settings.n0
        candidate = int(np.argmax(selection))
        estimation = yield "estimation", settings.n
        count = int(estimation[candidate])
        p_lower = clopper_pearson_lower(count, settings.n, settings.alpha)
        samples = settings.n0 + settings.n
        if p_lower < 0.5:
            return Certificate(ABSTAIN, 0.0, p_lower, samples, settings.n, count, int(selection[candidate]), smoother.norm)
        return Certificate(candidate, smoother.radius(p_lower), p_lower, samples, settings.n, count, int(selection[candidate]), smoother.norm)


def check_predict(n: int, alpha: float) -> None:
    """Refuse a PREDICT budget that could never return a class."""
    if not 0 < alpha < 1:
        raise CertkitError(f"alpha must be in (0, 1), got {alpha}.", "Pass e.g. --alpha 0.001.")
    minimum = min_samples_to_predict(alpha)
    if n < minimum:
        raise CertkitError(
            f"n = {n} can never predict at alpha = {alpha}: even {n} votes to 0 do not pass the binomial test.",
            f"Use --n {minimum} or more, or a larger --alpha.",
        )


def predict(sample: CountSampler, n: int, alpha: float) -> Prediction:
    """PREDICT: the top class of n noisy votes, or ABSTAIN unless a two-sided binomial test of
    top vs runner-up rejects p = 1/2 at level alpha.

    With probability at least 1 - alpha, a returned class equals g(x).
    """
    return drive(predict_process(n, alpha), sample)


def predict_process(n: int, alpha: float) -> CertifyProcess:
    """:func:`predict` as a process, for batches packed across images."""
    counts = yield "predict", n
    order = np.argsort(counts, kind="stable")[::-1]
    top, second = int(counts[order[0]]), int(counts[order[1]]) if len(counts) > 1 else 0
    p_value = two_sided_p_value(top, second)
    prediction = int(order[0]) if p_value <= alpha else ABSTAIN
    return Prediction(prediction, n, top, second, p_value)
