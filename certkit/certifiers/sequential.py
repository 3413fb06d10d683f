"""Sequential CERTIFY: Cohen's certificate, with sampling stopped once the answer is known.

Like Cohen et al., N0 samples choose the candidate class. The N estimation samples are then
drawn in growing looks n_1 < n_2 < ... < n_T = N (one noise stream, so look t sees the first
n_t samples). At look t, Clopper-Pearson bounds L_t (at level a_t) and U_t (at level b_t) on the
candidate's probability p are computed, with

    sum_t a_t + sum_t b_t <= alpha,

most of it (``final_share``) kept for a_T, the lower bound at N. By the union bound, with
probability >= 1 - alpha every interval [L_t, U_t] holds p at once, so whatever look the run stops
at, its bound is valid there; the reported radius sigma * Phi^-1(L_tau) is computed from that
bound. (Only the lower bounds matter for the certificate: P(some L_t > p) <= sum_t a_t <= alpha.)

The run stops at the first look where no threshold of the user's radius grid lies between
L_t and U_t: thresholds q_k = Phi(r_k / sigma), plus 1/2 (abstain or not). Then more samples
could move the radius, but not across a grid radius: the certified accuracy at every grid radius
is already decided. Thresholds no run of N samples can reach (even N hits out of N) are left out,
so an image certified past the largest reachable grid radius stops at once. docs/sequential.md
gives the proof in full.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from certkit.certifiers.cohen import CohenCertifier
from certkit.config_schema import DEFAULT_RADII  # report.radii's default: the grid when none is given
from certkit.errors import CertkitError
from certkit.interfaces import ABSTAIN, Certificate, CertifyProcess, CertifySettings, CountSampler, Smoother
from certkit.sampling import NOISE_BLOCK, drive
from certkit.stats import clopper_pearson_lower, clopper_pearson_upper

DEFAULT_FIRST = 1000  # estimation samples at the first look
DEFAULT_GROWTH = 2.0  # each look has this many times the samples of the one before
DEFAULT_FINAL_SHARE = 0.5  # share of alpha for the lower bound at the last look


@dataclass(frozen=True)
class SequentialPlan:
    """The looks and the alpha each bound spends; ``lower[t] + upper[t]`` summed is alpha."""

    looks: tuple[int, ...]  # cumulative estimation samples at each look; the last is N
    lower: tuple[float, ...]  # level of the lower bound at each look
    upper: tuple[float, ...]  # level of the upper bound (0 at the last look: it stops there anyway)


def plan_looks(n: int, first: int, growth: float) -> tuple[int, ...]:
    """n_1 = first, then x growth (rounded up to whole noise blocks), ending exactly at n."""
    looks: list[int] = []
    size = min(first, n)
    while size < n:
        looks.append(size)
        size = min(n, NOISE_BLOCK * math.ceil(size * growth / NOISE_BLOCK))
    looks.append(n)
    return tuple(looks)


def spend_alpha(alpha: float, looks: int, final_share: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``final_share`` of alpha to the last lower bound; the rest split evenly over the lower and
    upper bounds of the earlier looks. A single look is Cohen's CERTIFY at alpha."""
    if looks == 1:
        return (alpha,), (0.0,)
    early = alpha * (1 - final_share) / (2 * (looks - 1))
    return (*([early] * (looks - 1)), alpha * final_share), (*([early] * (looks - 1)), 0.0)


def make_plan(settings: CertifySettings, first: int, growth: float, final_share: float) -> SequentialPlan:
    looks = plan_looks(settings.n, first, growth)
    lower, upper = spend_alpha(settings.alpha, len(looks), final_share)
    return SequentialPlan(looks, lower, upper)


def radius_threshold(radius_of: Callable[[float], float], radius: float) -> float:
    """The smallest p whose certified radius reaches ``radius`` (bisection: any smoother whose
    radius grows with p works; 1/2 for radius 0)."""
    low, high = 0.5, 1.0
    if radius <= 0:
        return 0.5
    for _ in range(100):
        middle = (low + high) / 2
        if radius_of(middle) >= radius:
            high = middle
        else:
            low = middle
    return high


def grid_thresholds(radii: Sequence[float], radius_of: Callable[[float], float], reachable: float) -> tuple[float, ...]:
    """Sorted probability thresholds of the grid (with 1/2), without those no run can reach."""
    return tuple(sorted(p for p in {0.5, *(radius_threshold(radius_of, r) for r in radii)} if p <= reachable))


def decided(lower: float, upper: float, grid: Sequence[float]) -> bool:
    """True when no grid threshold lies in (lower, upper]: more samples cannot change which grid
    radii the image certifies (given that p is in [lower, upper])."""
    above = bisect.bisect_right(grid, lower)  # first threshold not yet certified
    return above == len(grid) or upper < grid[above]


class SequentialCertifier:
    """Cohen's CERTIFY with early stopping once the grid radius is decided.

    Options (``certkit certify --certifier sequential -O key=value``): ``first`` (samples at the
    first look, default 1000), ``growth`` (look size ratio, default 2), ``final_share`` (share of
    alpha for the last lower bound, default 0.5). The grid is ``--radii``.
    """

    name = "sequential"
    uses_radii = True  # the workflow passes the --radii grid in settings.extra["radii"]

    def __init__(self) -> None:
        self._cohen = CohenCertifier()
        self._grids: dict[tuple, tuple[Smoother, tuple[float, ...]]] = {}

    def check(self, settings: CertifySettings) -> None:
        self._cohen.check(CertifySettings(settings.n0, settings.n, settings.alpha))
        options = self._options(settings)
        plan = make_plan(settings, **options)
        if clopper_pearson_lower(settings.n, settings.n, plan.lower[-1]) < 0.5:
            raise CertkitError(
                f"n = {settings.n} can never certify with {options['final_share']:g} of alpha = {settings.alpha} kept for the last look.",
                "Use a larger --n, or -O final_share=0.9.",
            )

    @staticmethod
    def _options(settings: CertifySettings) -> dict[str, float]:
        extra = settings.extra
        known = {"first", "growth", "final_share", "radii"}
        unknown = sorted(set(extra) - known)
        if unknown:
            raise CertkitError(f"unknown option {unknown[0]!r} of certifier 'sequential'.", "Known options: first, growth, final_share (and --radii).")
        try:
            first = int(extra.get("first", DEFAULT_FIRST))
            growth = float(extra.get("growth", DEFAULT_GROWTH))
            final_share = float(extra.get("final_share", DEFAULT_FINAL_SHARE))
        except (TypeError, ValueError) as exc:
            raise CertkitError(f"bad option of certifier 'sequential': {exc}.", "Pass e.g. -O first=1000 -O growth=2 -O final_share=0.5.") from None
        if first < 1 or growth <= 1 or not 0 < final_share < 1:
            raise CertkitError(
                f"sequential needs first >= 1, growth > 1 and 0 < final_share < 1; got first={first}, growth={growth:g}, final_share={final_share:g}.",
                "Pass e.g. -O first=1000 -O growth=2 -O final_share=0.5.",
            )
        return {"first": first, "growth": growth, "final_share": final_share}

    def _grid(self, smoother: Smoother, radii: tuple[float, ...], n: int, final_level: float) -> tuple[float, ...]:
        key = (id(smoother), radii, n, final_level)  # the same for every image of a run: computed once
        if key not in self._grids:
            reachable = clopper_pearson_lower(n, n, final_level)
            self._grids[key] = (smoother, grid_thresholds(radii, smoother.radius, reachable))  # holding the smoother keeps its id unique
        return self._grids[key][1]

    def certify(self, sample: CountSampler, smoother: Smoother, settings: CertifySettings) -> Certificate:
        return drive(self.process(smoother, settings), sample)

    def process(self, smoother: Smoother, settings: CertifySettings) -> CertifyProcess:
        plan = make_plan(settings, **self._options(settings))
        grid = self._grid(smoother, tuple(settings.extra.get("radii", DEFAULT_RADII)), settings.n, plan.lower[-1])
        selection = yield "selection", settings.n0
        candidate = int(np.argmax(selection))
        count, drawn = 0, 0
        for look, lower_level, upper_level in zip(plan.looks, plan.lower, plan.upper):
            estimation = yield "estimation", look - drawn  # continues the same noise stream
            count, drawn = count + int(estimation[candidate]), look
            p_lower = clopper_pearson_lower(count, drawn, lower_level)
            if look == plan.looks[-1] or decided(p_lower, clopper_pearson_upper(count, drawn, upper_level), grid):
                break
        samples = settings.n0 + drawn
        if p_lower < 0.5:
            return Certificate(ABSTAIN, 0.0, p_lower, samples, drawn, count, int(selection[candidate]), smoother.norm)
        return Certificate(candidate, smoother.radius(p_lower), p_lower, samples, drawn, count, int(selection[candidate]), smoother.norm)
