"""Sequential CERTIFY: Cohen's certificate, with sampling stopped once the answer is known.

Like Cohen et al., N0 samples choose the candidate class. The N estimation samples are then
drawn in growing looks n_1 < n_2 < ... < n_T = N (one noise stream, so look t sees the first
n_t samples). At look t a lower bound L_t and an upper bound U_t on the candidate's probability
p are computed. Only the lower bounds spend alpha: with probability >= 1 - alpha they hold at
every look at once (Clopper-Pearson at levels summing to alpha, union bound; or, with
``bound=betting``, one anytime-valid betting confidence sequence for the early looks plus
Clopper-Pearson at N), so whatever look the run stops at, its L is a valid bound there and the
radius computed from it is valid. The upper bounds only decide when to stop; a wrong one stops
the run early with a smaller radius (a loss of power, never a wrong certificate), so they
run at ``stop_alpha`` each and are charged to nothing.

The run stops at the first look where no threshold of the user's radius grid lies in
[L_t, U_t]: thresholds q_k, the smallest p whose radius reaches r_k, plus 1/2 (abstain or
not) when the grid holds radius 0. Then more samples could move the radius, but not across a
grid radius: the certified accuracy at every grid radius is already decided. Thresholds no run
of N samples can reach are left out. The looks are chosen per image from its selection counts
to minimise the expected samples (:mod:`certkit.certifiers.schedule`). docs/sequential.md
gives the proof.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from certkit.certifiers.cohen import CohenCertifier
from certkit.certifiers.schedule import BOUNDS, ScheduleChooser, SequentialPlan, decided, make_plan
from certkit.config_schema import DEFAULT_RADII  # report.radii's default: the grid when none is given
from certkit.errors import CertkitError
from certkit.interfaces import ABSTAIN, Certificate, CertifyProcess, CertifySettings, CountSampler, Smoother
from certkit.sampling import drive
from certkit.stats import clopper_pearson_lower

DEFAULT_BOUND = "cp"
FIXED_FIRST, FIXED_GROWTH = 1000, 2.0  # fixed looks when only one of first/growth is given
DEFAULT_FINAL_SHARE = 0.5  # share of alpha for the Clopper-Pearson lower bound at the last look (N samples)
# The upper bounds' level is not a validity level, so it does not follow --alpha: it bounds, per
# look, the chance of stopping below a grid radius the image would reach. 1% per look measured
# the same certified accuracy as CERTIFY at N = 100,000 (docs/sequential.md, replay benchmark).
DEFAULT_STOP_ALPHA = 0.01
OPTIONS = ("bound", "first", "growth", "final_share", "stop_alpha")
_EXAMPLE = "Pass e.g. -O bound=betting -O final_share=0.5 (or fixed looks: -O first=1000 -O growth=2)."


@dataclass(frozen=True)
class SequentialOptions:
    bound: str
    first: int | None  # fixed looks when set (with growth); chosen per image when None
    growth: float | None
    final_share: float
    stop_alpha: float


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
    """Sorted probability thresholds of the grid, without those no run can reach. 1/2 (abstain
    or not) is a threshold only when the grid holds radius 0: above 0 only the radius counts."""
    wanted = {radius_threshold(radius_of, r) for r in radii}
    return tuple(sorted(p for p in wanted if p < reachable))


class SequentialCertifier:
    """Cohen's CERTIFY with early stopping once the grid radius is decided.

    Options (``certkit certify --certifier sequential -O key=value``): ``bound`` (``cp``:
    Clopper-Pearson at every look, alpha split by the union bound; ``betting``: one betting
    confidence sequence for the early looks), ``final_share`` (share of alpha for the lower
    bound at N, default 0.5), ``stop_alpha`` (level of the upper bounds that decide when to stop,
    default 0.01 per look, charged to nothing), ``first`` and ``growth`` (fixed looks, 1000 and 2 for the one
    not given; by default the looks are chosen per image to minimise the expected samples). The grid is ``--radii``.

    With probability at least 1 - alpha, a returned class is the smoothed classifier's
    prediction at x, and it is constant within the returned radius.
    """

    name = "sequential"
    uses_radii = True  # the workflow passes the --radii grid in settings.extra["radii"]

    def __init__(self) -> None:
        self._cohen = CohenCertifier()
        self._runs: dict[tuple, tuple[Smoother, tuple[float, ...], ScheduleChooser | None]] = {}

    def check(self, settings: CertifySettings) -> None:
        self._cohen.check(CertifySettings(settings.n0, settings.n, settings.alpha))
        options = self._options(settings)
        final_level = settings.alpha * options.final_share
        if clopper_pearson_lower(settings.n, settings.n, final_level) <= 0.5:
            raise CertkitError(
                f"n = {settings.n} can never certify with {options.final_share:g} of alpha = {settings.alpha} kept for the last look.",
                "Use a larger --n, or -O final_share=0.9.",
            )

    def check_reach(self, smoother: Smoother, settings: CertifySettings) -> None:
        """Refuse a grid none of whose radii N samples can reach (radii above the largest
        reachable one are shown as unreachable in tables, but some must be reachable)."""
        radii = [float(r) for r in settings.extra.get("radii", DEFAULT_RADII)]
        options = self._options(settings)
        largest = smoother.radius(clopper_pearson_lower(settings.n, settings.n, settings.alpha * options.final_share))
        if radii and min(radii) > 0 and all(r > largest for r in radii):
            raise CertkitError(
                f"no radius of the grid ({', '.join(f'{r:g}' for r in radii)}) can be certified with n = {settings.n} at alpha = {settings.alpha}: "
                f"the largest reachable radius is {largest:.4g}.",
                "Pass --radii with radii up to that, or a larger --n.",
            )

    @staticmethod
    def _options(settings: CertifySettings) -> SequentialOptions:
        extra = settings.extra
        unknown = sorted(set(extra) - {*OPTIONS, "radii"})
        if unknown:
            raise CertkitError(f"unknown option {unknown[0]!r} of certifier 'sequential'.", f"Known options: {', '.join(OPTIONS)} (and --radii).")
        bound = str(extra.get("bound", DEFAULT_BOUND))
        if bound not in BOUNDS:
            raise CertkitError(f"bound {bound!r} of certifier 'sequential' is not one of {', '.join(BOUNDS)}.", _EXAMPLE)
        fixed = "first" in extra or "growth" in extra  # fixed looks; otherwise chosen per image
        try:
            first = int(extra.get("first", FIXED_FIRST)) if fixed else None
            growth = float(extra.get("growth", FIXED_GROWTH)) if fixed else None
            final_share = float(extra.get("final_share", DEFAULT_FINAL_SHARE))
            stop_alpha = float(extra.get("stop_alpha", DEFAULT_STOP_ALPHA))
        except (TypeError, ValueError) as exc:
            raise CertkitError(f"bad option of certifier 'sequential': {exc}.", _EXAMPLE) from None
        if (first is not None and first < 1) or (growth is not None and growth <= 1) or not 0 < final_share <= 1 or not 0 < stop_alpha < 1:
            given = ", ".join(f"{key}={extra[key]}" for key in OPTIONS if key in extra and key != "bound")
            raise CertkitError(f"sequential needs first >= 1, growth > 1, 0 < final_share <= 1 and 0 < stop_alpha < 1; got {given}.", _EXAMPLE)
        return SequentialOptions(bound, first, growth, final_share, stop_alpha)

    def _run(self, smoother: Smoother, settings: CertifySettings, options: SequentialOptions) -> tuple[tuple[float, ...], ScheduleChooser | None]:
        """The grid thresholds and the schedule chooser of a run: the same for every image."""
        radii = tuple(float(r) for r in settings.extra.get("radii", DEFAULT_RADII))
        key = (id(smoother), radii, settings.n0, settings.n, settings.alpha, options)
        if key not in self._runs:
            reachable = clopper_pearson_lower(settings.n, settings.n, settings.alpha * options.final_share)
            grid = grid_thresholds(radii, smoother.radius, reachable)
            chooser = None
            if options.first is None:
                chooser = ScheduleChooser(settings.n, settings.alpha, grid, options.final_share, options.stop_alpha, options.bound)
            self._runs[key] = (smoother, grid, chooser)  # holding the smoother keeps its id unique
        return self._runs[key][1:]

    def plan(self, settings: CertifySettings, options: SequentialOptions, chooser: ScheduleChooser | None, k0: int) -> SequentialPlan:
        if chooser is None:
            return make_plan(settings.n, settings.alpha, options.first, options.growth, options.final_share, options.stop_alpha, options.bound)
        return chooser.choose(settings.n0, k0)

    def certify(self, sample: CountSampler, smoother: Smoother, settings: CertifySettings) -> Certificate:
        return drive(self.process(smoother, settings), sample)

    def process(self, smoother: Smoother, settings: CertifySettings) -> CertifyProcess:
        options = self._options(settings)
        grid, chooser = self._run(smoother, settings, options)
        selection = yield "selection", settings.n0
        candidate = int(np.argmax(selection))
        plan = self.plan(settings, options, chooser, int(selection[candidate]))
        count, drawn, last = 0, 0, len(plan.looks) - 1
        for look, size in enumerate(plan.looks):
            estimation = yield "estimation", size - drawn  # continues the same noise stream
            count, drawn = count + int(estimation[candidate]), size
            p_lower = plan.lower_bound(look, count, drawn)
            if look == last or decided(p_lower, plan.upper_bound(look, count, drawn), grid):
                break
        samples = settings.n0 + drawn
        if p_lower <= 0.5:
            return Certificate(ABSTAIN, 0.0, p_lower, samples, drawn, count, int(selection[candidate]), getattr(smoother, "norm", "l2"))
        return Certificate(candidate, smoother.radius(p_lower), p_lower, samples, drawn, count, int(selection[candidate]), getattr(smoother, "norm", "l2"))
