"""The looks of a sequential run: where to look, what each bound spends, and how the schedule
is chosen per image to minimise the expected number of forward passes on the radius grid.

A plan is a list of looks n_1 < ... < n_T = N (cumulative estimation samples) and the level of
each bound. Only the lower bounds need alpha (they make the certificate); the upper bounds
only decide when to stop and run at ``stop_alpha`` each, charged to nothing.

- ``cp``: a Clopper-Pearson lower bound at every look; the union bound over looks needs the
  levels to sum to alpha: ``final_share`` of alpha at N, the rest split evenly over the others.
- ``betting``: the early looks share one betting confidence sequence (valid at every sample size
  at once) at (1 - final_share) alpha, so they cost no extra alpha however many there are; the
  last look is Clopper-Pearson at final_share alpha, as tight as CERTIFY's bound at N.

**Choosing the schedule.** The selection samples are independent of the estimation stream,
so a schedule picked from them is fixed in advance as far as the estimation samples are
concerned, and the guarantee is unchanged. For each candidate geometric schedule (``first``,
``growth``) the expected estimation samples of an image whose candidate has probability p are

    E[samples] = n_1 + sum_{t<T} (n_{t+1} - n_t) P(no stop at looks <= t)
               <= n_1 + sum_{t<T} (n_{t+1} - n_t) P(k_t in C_t),

where C_t is the set of counts at look t that leave a grid threshold inside [L_t, U_t] (exact
binomial probabilities, from count thresholds of the bounds). The bound is averaged over the
Jeffreys posterior of p given the selection counts, Beta(k0 + 1/2, n0 - k0 + 1/2), at
:data:`POSTERIOR_POINTS` quantiles, and the candidate with the smallest value is used. Results
depend only on k0, so each run computes at most n0 + 1 choices.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from certkit.sampling import NOISE_BLOCK
from certkit.stats import betting_log_wealth, betting_lower, betting_upper, clopper_pearson_lower, clopper_pearson_upper

BOUNDS = ("cp", "betting")

#: Candidate schedules: the first look, and the ratio between looks. First looks below one noise
#: block (20 to 70 samples) serve a radius that a unanimous selection certifies after a few dozen
#: samples (e.g. r = sigma, p > 0.84: 44 hits out of 44 at level 0.0005); later looks are whole
#: blocks. The sampler serves any request size with the same numbers (a block is drawn whole
#: and handed out in parts).
FIRST_LOOKS = (20, 30, 50, 70, 100, 200, 300, 500, 700, 1000, 1500, 2000, 3000, 5000, 7000, 10_000, 15_000, 20_000, 30_000, 50_000)
GROWTHS = (1.25, 1.5, 2.0, 3.0, 4.0)
POSTERIOR_POINTS = 16


@dataclass(frozen=True)
class SequentialPlan:
    """The looks of one image's run and the level of each bound."""

    looks: tuple[int, ...]  # cumulative estimation samples at each look; the last is N
    lower: tuple[float, ...]  # level of the lower bound at each look
    stop_alpha: float  # level of every upper bound (they only decide when to stop)
    bound: str = "cp"  # "cp" | "betting" (the early looks' bound; the last look is always Clopper-Pearson)

    def lower_bound(self, look: int, count: int, drawn: int) -> float:
        if self.lower[look] <= 0:  # final_share = 1: the early looks certify nothing
            return 0.0
        if self.bound == "betting" and look < len(self.looks) - 1:
            return betting_lower(count, drawn, self.lower[look])
        return clopper_pearson_lower(count, drawn, self.lower[look])

    def upper_bound(self, look: int, count: int, drawn: int) -> float:
        if self.bound == "betting":
            return betting_upper(count, drawn, self.stop_alpha)
        return clopper_pearson_upper(count, drawn, self.stop_alpha)


def plan_looks(n: int, first: int, growth: float) -> tuple[int, ...]:
    """n_1 = first, then x growth (rounded up to whole noise blocks), ending exactly at n."""
    looks: list[int] = []
    size = min(first, n)
    while size < n:
        looks.append(size)
        size = min(n, NOISE_BLOCK * math.ceil(size * growth / NOISE_BLOCK))
    looks.append(n)
    return tuple(looks)


def spend_alpha(alpha: float, looks: int, final_share: float, bound: str = "cp") -> tuple[float, ...]:
    """The level of the lower bound at each look. ``cp``: they sum to alpha (union bound).
    ``betting``: the early looks are one confidence sequence at (1 - final_share) alpha. A single
    look is Cohen's CERTIFY at alpha."""
    if looks == 1:
        return (alpha,)
    early = alpha * (1 - final_share)
    if bound == "cp":
        early /= looks - 1
    return (*([early] * (looks - 1)), alpha * final_share)


def make_plan(n: int, alpha: float, first: int, growth: float, final_share: float, stop_alpha: float, bound: str) -> SequentialPlan:
    looks = plan_looks(n, first, growth)
    return SequentialPlan(looks, spend_alpha(alpha, len(looks), final_share, bound), stop_alpha, bound)


def decided(lower: float, upper: float, grid: Sequence[float]) -> bool:
    """True when no grid threshold lies in [lower, upper]: given p in [lower, upper], more samples
    cannot change which grid radii the image certifies (a threshold q counts once lower > q)."""
    above = bisect.bisect_left(grid, lower)  # first threshold not certified (q >= lower)
    return above == len(grid) or upper < grid[above]


# -- count thresholds: at look n, which counts certify past q, which exclude q -------------


def certify_counts(n: int, thresholds: np.ndarray, level: float, bound: str) -> np.ndarray:
    """Per threshold q, the smallest count k with a lower bound L(k) > q (n + 1 if none)."""
    if level <= 0:
        return np.full(len(thresholds), n + 1, dtype=np.int64)
    if bound == "cp":
        # L(k) > q  <=>  P_q(X >= k) < level; binom.isf gives the largest k with P_q(X > k) <= level.
        from scipy.stats import binom  # on use: scipy.stats takes ~0.8 s to import (certkit.stats)

        return np.minimum(binom.isf(level, n, thresholds) + 1, n + 1).astype(np.int64)
    target = math.log(1.0 / level)
    low = np.floor(thresholds * n).astype(np.int64) + 1  # the bound only passes q once k/n > q
    high = np.full_like(low, n + 1)
    # log M_n(q) grows with k above q n: bisect for the first k where it reaches log(1/level).
    reach = betting_log_wealth(n, n, thresholds) >= target
    while True:
        open_ = low < high
        if not open_.any():
            break
        middle = (low + high) // 2
        passes = betting_log_wealth(np.minimum(middle, n), n, thresholds) >= target
        high = np.where(open_ & passes, middle, high)
        low = np.where(open_ & ~passes, middle + 1, low)
    return np.where(reach, np.minimum(low, n + 1), n + 1)


def exclude_counts(n: int, thresholds: np.ndarray, level: float, bound: str) -> np.ndarray:
    """Per threshold q, the largest count k with an upper bound U(k) < q (-1 if none)."""
    if bound == "cp":
        # U(k) < q  <=>  P_q(X <= k) < level; binom.ppf gives the smallest k with P_q(X <= k) >= level.
        from scipy.stats import binom

        return (binom.ppf(level, n, thresholds) - 1).astype(np.int64)
    misses = certify_counts(n, 1.0 - thresholds, level, bound)  # U(k) < q <=> the misses' lower bound > 1 - q
    return n - misses


@dataclass(frozen=True)
class _Candidate:
    plan: SequentialPlan
    gaps: np.ndarray  # n_{t+1} - n_t for t < T
    low: np.ndarray  # [T-1, J]: continue when low < k < high for some j (merged intervals, padded)
    high: np.ndarray


class ScheduleChooser:
    """Picks, per selection count, the candidate schedule with the smallest expected passes."""

    def __init__(self, n: int, alpha: float, grid: Sequence[float], final_share: float, stop_alpha: float, bound: str) -> None:
        self.n, self.alpha, self.grid = n, alpha, np.asarray(grid, dtype=float)
        self.final_share, self.stop_alpha, self.bound = final_share, stop_alpha, bound
        self._chosen: dict[tuple[int, int], SequentialPlan] = {}

    @cached_property
    def candidates(self) -> list[_Candidate]:
        seen: set[tuple[int, ...]] = set()
        found = []
        for first in FIRST_LOOKS:
            for growth in GROWTHS:
                plan = make_plan(self.n, self.alpha, first, growth, self.final_share, self.stop_alpha, self.bound)
                if plan.looks in seen:
                    continue
                seen.add(plan.looks)
                found.append(self._candidate(plan))
        return found

    def _candidate(self, plan: SequentialPlan) -> _Candidate:
        looks = plan.looks[:-1]  # the last look stops whatever it sees
        width = max(1, len(self.grid))
        low = np.zeros((len(looks), width), dtype=np.int64)
        high = np.zeros((len(looks), width), dtype=np.int64)  # empty intervals by default
        for t, n_t in enumerate(looks):
            if not len(self.grid):
                continue
            certify = certify_counts(n_t, self.grid, plan.lower[t], self.bound)
            exclude = exclude_counts(n_t, self.grid, plan.stop_alpha, self.bound)
            merged: list[list[int]] = []
            for u, c in zip(exclude, certify):  # open intervals (u, c), sorted by threshold
                if c - u <= 1:
                    continue
                if merged and u < merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], int(c))
                else:
                    merged.append([int(u), int(c)])
            for j, (u, c) in enumerate(merged):
                low[t, j], high[t, j] = u, c
        gaps = np.diff(np.asarray(plan.looks, dtype=float))
        return _Candidate(plan, gaps, low, high)

    def expected_samples(self, candidate: _Candidate, p: np.ndarray) -> np.ndarray:
        """The upper bound on expected estimation samples at each p (see the module docstring)."""
        plan = candidate.plan
        if len(plan.looks) == 1:
            return np.full(p.shape, float(plan.looks[0]))
        n_t = np.asarray(plan.looks[:-1])[:, None, None]
        p = p[None, None, :]
        from scipy.stats import binom

        inside = binom.cdf(candidate.high[:, :, None] - 1, n_t, p) - binom.cdf(candidate.low[:, :, None], n_t, p)
        inside = np.where((candidate.high > candidate.low)[:, :, None], inside, 0.0).sum(axis=1)  # [T-1, P]
        return plan.looks[0] + (candidate.gaps[:, None] * np.clip(inside, 0.0, 1.0)).sum(axis=0)

    @staticmethod
    def posterior(n0: int, k0: int) -> np.ndarray:
        """Equally likely points of the Jeffreys posterior of p after k0 hits out of n0."""
        quantiles = (np.arange(POSTERIOR_POINTS) + 0.5) / POSTERIOR_POINTS
        from scipy.stats import beta as beta_distribution

        return beta_distribution.ppf(quantiles, k0 + 0.5, n0 - k0 + 0.5)

    def cost(self, candidate: _Candidate, points: np.ndarray) -> float:
        """The objective: the expected-samples bound averaged over posterior points."""
        return float(self.expected_samples(candidate, points).mean())

    def choose(self, n0: int, k0: int) -> SequentialPlan:
        key = (n0, k0)
        if key not in self._chosen:
            points = self.posterior(n0, k0)
            costs = [self.cost(c, points) for c in self.candidates]
            self._chosen[key] = self.candidates[int(np.argmin(costs))].plan
        return self._chosen[key]
