"""Exact binomial statistics behind the certificates (scipy.stats only, no approximations).

Two kinds of lower bound on a binomial p:

- Clopper-Pearson (:func:`clopper_pearson_lower`): valid at one sample size fixed in advance.
  Several of them (looks of a sequential run) hold together by the union bound.
- The betting confidence sequence (:func:`betting_lower`): valid at every sample size at once.
  It is the Krichevsky-Trofimov mixture martingale
  M_n(q) = B(k + a, n - k + a) / B(a, a) / (q^k (1 - q)^(n - k)), a = 1/2: under p = q it is a
  nonnegative martingale with mean 1, so by Ville's inequality P(exists n: M_n(p) >= 1/alpha)
  <= alpha, and the set {q : M_n(q) < 1/alpha} holds p at every n at once.
"""

from __future__ import annotations

import math

import numpy as np

# scipy is imported inside the functions that use it: scipy.stats alone takes ~0.8 s to import,
# which `certkit certify` would otherwise spend before its first progress line. After the first
# call the import is a dictionary lookup.

#: The Krichevsky-Trofimov prior Beta(1/2, 1/2) of the betting confidence sequence.
KT_PRIOR = 0.5


def clopper_pearson_lower(successes: int, trials: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson lower confidence bound on a binomial p.

    With probability at least 1 - alpha over the draw, p >= the returned value.
    It is the alpha quantile of Beta(k, n - k + 1), and 0 when k = 0.
    """
    if successes <= 0:
        return 0.0
    from scipy.stats import beta

    return float(beta.ppf(alpha, successes, trials - successes + 1))


def clopper_pearson_upper(successes: int, trials: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson upper confidence bound on a binomial p."""
    if successes >= trials:
        return 1.0
    from scipy.stats import beta

    return float(beta.ppf(1 - alpha, successes + 1, trials - successes))


def two_sided_p_value(count_top: int, count_second: int) -> float:
    """Two-sided binomial test of H0: p = 1/2 between the top two classes (Cohen's PREDICT)."""
    total = count_top + count_second
    if total == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(count_top, total, 0.5, alternative="two-sided").pvalue)


def gaussian_radius(sigma: float, p_lower: float) -> float:
    """Cohen et al.'s L2 radius sigma * Phi^-1(p_lower); only meaningful for p_lower > 1/2."""
    if p_lower >= 1.0:
        return math.inf
    from scipy.stats import norm

    return float(sigma * norm.ppf(p_lower))


def min_samples_to_certify(alpha: float) -> int:
    """Smallest N for which N hits out of N give a lower bound above 1/2 (a certificate needs
    pA_lower > 1/2 strictly).

    The all-hit bound is alpha ** (1/N) (the alpha quantile of Beta(N, 1), whose CDF is x^N),
    which exceeds 1/2 exactly when N > log2(1/alpha). Computed in closed form: every run checks
    its N with this before it starts, and scipy.stats would cost ~0.8 s of start-up.
    """

    def all_hits_lower(n: int) -> float:
        return alpha ** (1.0 / n)

    n = max(1, math.floor(math.log2(1.0 / alpha)) + 1)
    while all_hits_lower(n) <= 0.5:  # guard float rounding
        n += 1
    while n > 1 and all_hits_lower(n - 1) > 0.5:
        n -= 1
    return n


def betting_log_wealth(successes, trials, p, prior: float = KT_PRIOR):
    """log M_n(p): the log wealth of the Krichevsky-Trofimov mixture bettor against ``p`` after
    ``successes`` hits out of ``trials``. Works elementwise on arrays."""
    from scipy.special import betaln, xlog1py, xlogy

    k, n = np.asarray(successes, dtype=float), np.asarray(trials, dtype=float)
    return betaln(k + prior, n - k + prior) - betaln(prior, prior) - xlogy(k, p) - xlog1py(n - k, -np.asarray(p, dtype=float))


def betting_lower(successes: int, trials: int, alpha: float, prior: float = KT_PRIOR) -> float:
    """Anytime-valid (1 - alpha) lower confidence bound on a binomial p.

    With probability at least 1 - alpha, p >= the returned value at *every* sample size at
    once, however the sample size was chosen. It is the smallest q <= k/n with M_n(q) < 1/alpha.
    """
    if successes <= 0 or trials <= 0:
        return 0.0
    k, n = successes, trials
    target = math.log(1.0 / alpha)
    mixture = math.lgamma(k + prior) + math.lgamma(n - k + prior) - math.lgamma(n + 2 * prior) - (2 * math.lgamma(prior) - math.lgamma(2 * prior))

    def excess(q: float) -> float:  # log M_n(q) - log(1/alpha), scalar and fast: it runs at every look
        return mixture - k * math.log(q) - (n - k) * math.log1p(-q) - target

    high = k / n
    if high >= 1.0:
        high = 1.0 - 1e-16
    if excess(high) >= 0:  # cannot happen for a mixture; guards rounding
        return high
    from scipy.optimize import brentq

    return float(brentq(excess, 1e-300, high, xtol=1e-14, rtol=1e-12))


def betting_upper(successes: int, trials: int, alpha: float, prior: float = KT_PRIOR) -> float:
    """Anytime-valid (1 - alpha) upper confidence bound on a binomial p (the lower bound of the misses)."""
    return 1.0 - betting_lower(trials - successes, trials, alpha, prior)


def min_samples_to_predict(alpha: float) -> int:
    """Smallest N for which an N-to-0 split rejects p = 1/2 two-sidedly at level alpha.

    The two-sided p-value of N out of N is 2 * 2**-N, at most alpha when N >= log2(2/alpha).
    """
    n = max(1, math.ceil(math.log2(2.0 / alpha)))
    return n if two_sided_p_value(n, 0) <= alpha else n + 1  # guard float rounding
