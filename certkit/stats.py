"""Exact binomial statistics behind the certificates (scipy.stats only, no approximations)."""

from __future__ import annotations

import math

from scipy.stats import beta, binomtest, norm


def clopper_pearson_lower(successes: int, trials: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson lower confidence bound on a binomial p.

    With probability at least 1 - alpha over the draw, p >= the returned value.
    It is the alpha quantile of Beta(k, n - k + 1), and 0 when k = 0.
    """
    if successes <= 0:
        return 0.0
    return float(beta.ppf(alpha, successes, trials - successes + 1))


def clopper_pearson_upper(successes: int, trials: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson upper confidence bound on a binomial p."""
    if successes >= trials:
        return 1.0
    return float(beta.ppf(1 - alpha, successes + 1, trials - successes))


def two_sided_p_value(count_top: int, count_second: int) -> float:
    """Two-sided binomial test of H0: p = 1/2 between the top two classes (Cohen's PREDICT)."""
    total = count_top + count_second
    if total == 0:
        return 1.0
    return float(binomtest(count_top, total, 0.5, alternative="two-sided").pvalue)


def gaussian_radius(sigma: float, p_lower: float) -> float:
    """Cohen et al.'s L2 radius sigma * Phi^-1(p_lower); only meaningful for p_lower > 1/2."""
    if p_lower >= 1.0:
        return math.inf
    return float(sigma * norm.ppf(p_lower))


def min_samples_to_certify(alpha: float) -> int:
    """Smallest N for which N hits out of N give a lower bound of at least 1/2.

    The all-hit bound is alpha ** (1/N), which reaches 1/2 exactly when N >= log2(1/alpha).
    """
    n = max(1, math.ceil(math.log2(1.0 / alpha)))
    return n if clopper_pearson_lower(n, n, alpha) >= 0.5 else n + 1  # guard float rounding


def min_samples_to_predict(alpha: float) -> int:
    """Smallest N for which an N-to-0 split rejects p = 1/2 two-sidedly at level alpha.

    The two-sided p-value of N out of N is 2 * 2**-N, at most alpha when N >= log2(2/alpha).
    """
    n = max(1, math.ceil(math.log2(2.0 / alpha)))
    return n if two_sided_p_value(n, 0) <= alpha else n + 1  # guard float rounding
