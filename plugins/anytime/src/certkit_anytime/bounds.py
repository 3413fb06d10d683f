"""The statistics of the anytime certifiers: exact binomial bounds and count thresholds.

A *decision* for a target probability q (the p at which the certified radius reaches the target
radius) is made on counts: after n samples with k hits on the candidate class, certify when
k >= ``certify[n]`` and give up when k <= ``give_up[n]``. Both arrays are built once per run.

Each threshold array comes from a one-sided test of "p <= q" that holds at every n at once:
- union bound (Voráček et al.): Clopper-Pearson tests at looks n_t = the first integer above
  ratio^k (k = start + 1, start + 2, ...), at levels alpha_t = 5 alpha / ((t + 4)(t + 5)), t = 1, 2, ...,
  which sum to alpha;
- betting (Voráček et al.): the Krichevsky-Trofimov mixture bettor; its wealth M_n(q) is a
  nonnegative martingale with mean 1 when p = q, so P(exists n: M_n(q) >= 1/alpha) <= alpha
  (Ville's inequality), and the same holds for every p < q because the rejection region is a
  set of counts closed upwards.

Between looks, a threshold is the smallest threshold of any *later* n (a running minimum from
the end): counts never decrease, so a count that already meets a later look's threshold will
meet it there, and deciding now changes no outcome, only when it is known.
"""

from __future__ import annotations

import math

import numpy as np

# The Krichevsky-Trofimov wealth is certkit's own (the sequential certifier's betting option uses
# it too). scipy is imported where it is used: scipy.stats takes ~0.8 s to import, and this module
# is imported when the plugin registers, i.e. by every `certkit` command that loads plugins.
from certkit.stats import KT_PRIOR, betting_log_wealth


def union_looks(n_max: int, ratio: float, start: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample sizes of the union bound's looks up to ``n_max`` and their indices t = 1, 2, ...:
    n is a look when it first exceeds ratio^k, after which k grows by one."""
    looks, k = [], start
    for n in range(1, n_max + 1):
        if n > ratio**k:
            k += 1
            looks.append(n)
    return np.asarray(looks, dtype=np.int64), np.arange(1, len(looks) + 1)


def union_levels(alpha: float, t: np.ndarray) -> np.ndarray:
    """alpha_t = 5 alpha / ((t + 4)(t + 5)); they sum to alpha over t = 1, 2, ..."""
    return 5.0 * alpha / ((t + 4.0) * (t + 5.0))


def _backward_minimum(thresholds: np.ndarray) -> np.ndarray:
    return np.minimum.accumulate(thresholds[::-1])[::-1]


def union_thresholds(q: float, alpha: float, n_max: int, ratio: float, start: int) -> np.ndarray:
    """certify[n] for the union-bound sequence: at a look, the smallest k with
    P_q(X >= k) <= alpha_t; elsewhere that of the next look."""
    never = n_max + 2
    thresholds = np.full(n_max + 1, never, dtype=np.int64)
    looks, t = union_looks(n_max, ratio, start)
    if len(looks):
        from scipy.stats import binom

        thresholds[looks] = binom.ppf(1.0 - union_levels(alpha, t), looks, q).astype(np.int64) + 1
    return _backward_minimum(thresholds)


def betting_thresholds(q: float, alpha: float, n_max: int, prior: float = KT_PRIOR) -> np.ndarray:
    """certify[n] for the betting sequence: the smallest k >= q n with log M_n(q) > log(1/alpha)."""
    never = n_max + 2
    n = np.arange(n_max + 1)
    target = math.log(1.0 / alpha)
    low = np.ceil(q * n).astype(np.int64)
    high = n + 1
    # Above q n the wealth grows with k (log M is convex in k with its minimum near q n).
    while True:
        open_ = low < high
        if not open_.any():
            break
        middle = (low + high) // 2
        passes = betting_log_wealth(np.minimum(middle, n), n, q, prior) > target
        high = np.where(open_ & passes, middle, high)
        low = np.where(open_ & ~passes, middle + 1, low)
    thresholds = np.where(low <= n, low, never)
    thresholds[0] = never
    return _backward_minimum(thresholds)


def decision_thresholds(kind: str, q: float, certify_alpha: float, stop_alpha: float, n_max: int, ratio: float, start: int, prior: float) -> tuple[np.ndarray, np.ndarray]:
    """``(certify, give_up)``: certify once k >= certify[n] (the test of p <= q at
    ``certify_alpha`` rejects); give up once k <= give_up[n] (the same test on the misses, of
    p >= q at ``stop_alpha``, rejects)."""

    def thresholds(target: float, alpha: float) -> np.ndarray:
        if kind == "union":
            return union_thresholds(target, alpha, n_max, ratio, start)
        return betting_thresholds(target, alpha, n_max, prior)

    certify = thresholds(q, certify_alpha)
    misses = thresholds(1.0 - q, stop_alpha)
    give_up = np.maximum.accumulate(np.arange(n_max + 1) - misses)
    return certify, give_up


def largest_reachable(kind: str, alpha: float, n_max: int, ratio: float, start: int, prior: float) -> float:
    """The largest q that n_max samples, all hits, can certify past."""
    if kind == "union":
        looks, t = union_looks(n_max, ratio, start)
        if not len(looks):
            return 0.0
        return float(np.max(union_levels(alpha, t) ** (1.0 / looks)))  # all hits: P_q(X >= n) = q^n <= alpha_t
    from scipy.special import betaln

    n = np.arange(1, n_max + 1, dtype=float)
    log_kt = betaln(n + prior, prior) - betaln(prior, prior)  # all hits: log M_n(q) = log KT(n, n) - n log q
    return float(np.max(np.exp((log_kt - math.log(1.0 / alpha)) / n)))
