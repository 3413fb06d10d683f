"""Certified accuracy, average certified radius (ACR) and the best-over-sigma envelope.

Definitions follow Cohen et al. (2019) and the tables of later papers (DMAE, Carlini et al.):
the certified accuracy at radius r is the fraction of *all* test images that the smoothed
classifier classifies correctly with a certified radius of at least r; abstentions count as
wrong, so abstaining never helps the number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from certkit.errors import ResultsError
from certkit.results.reader import ResultsFile
from certkit.stats import clopper_pearson_lower

_GRID_STEP = 0.25
_MIN_GRID_TOP = 1.0
_RADII_EXAMPLE = "Use e.g. --radii 0,0.25,0.5 or --radii 0:1.5:0.25."
_MAX_RANGE_POINTS = 1000  # a table column per radius: more is a typo, not a request


def certified_accuracy(results: ResultsFile, radii: Sequence[float]) -> np.ndarray:
    """Fraction of all rows with ``correct == 1`` and ``radius >= r``, for each r in ``radii``.

    NaN for a file without rows: there is no accuracy to report, and 0 would be a claim.
    """
    r = np.asarray(radii, dtype=np.float64)
    total = results.radius.shape[0]
    if total == 0:
        return np.full(r.shape, np.nan)
    certified_radius = np.where(results.correct == 1, results.radius, -np.inf)  # wrong/abstain never count
    return (certified_radius[None, :] >= r[:, None]).sum(axis=1) / total


def average_certified_radius(results: ResultsFile) -> float:
    """Mean over all rows of ``radius * correct`` (Zhai et al. 2020); NaN for an empty file.
    A row whose radius is NaN counts as radius 0 (not certified), as in the accuracy."""
    if results.radius.shape[0] == 0:
        return math.nan
    certified = (results.correct == 1) & ~np.isnan(results.radius)
    return float(np.mean(np.where(certified, results.radius, 0.0)))


def envelope(results: Sequence[ResultsFile], radii: Sequence[float]) -> np.ndarray:
    """Best certified accuracy over ``results`` at each radius: the "best sigma per radius" curve."""
    if not results:
        raise ValueError("envelope needs at least one results file")
    return np.nanmax(np.stack([certified_accuracy(r, radii) for r in results]), axis=0)


def largest_certifiable_radius(metadata: Mapping[str, Any]) -> float | None:
    """The largest radius a run with this metadata could ever certify: its smoother's radius at
    the bound N hits out of N give, alpha ** (1 / N) (one-sided Clopper-Pearson). Larger radii
    are unreachable whatever the model: reports show them as such, not as 0 %. None when the
    metadata does not say (Cohen et al.'s files) or the smoother is not installed."""
    try:
        n, alpha, sigma = int(metadata["n"]), float(metadata["alpha"]), float(metadata["sigma"])
    except (KeyError, TypeError, ValueError):
        return None
    if metadata.get("kind", "certify") != "certify" or n < 1 or not 0 < alpha < 1:
        return None
    smoother = _smoother(str(metadata.get("smoother") or "gaussian"), sigma, metadata.get("smoother_options") or {})
    if smoother is None:
        return None
    radius = float(smoother.radius(clopper_pearson_lower(n, n, alpha)))
    return radius if math.isfinite(radius) and radius > 0 else None


def reach_of(results: ResultsFile) -> float | None:
    """:func:`largest_certifiable_radius` of a file, never below a radius the file holds (a
    certifier may spend more than N samples on an image: its rows are not hidden)."""
    bound = largest_certifiable_radius(results.metadata)
    if bound is None:
        return None
    held = results.radius[np.isfinite(results.radius)]
    return max(bound, float(held.max())) if held.size else bound


def _smoother(name: str, sigma: float, options: Mapping[str, Any]) -> Any:
    from certkit import plugins  # the registry loads plugins: only when a report needs it

    try:
        return plugins.get("smoothers", name).obj(sigma, **dict(options))
    except Exception:  # a plugin's smoother that is gone, or its options changed: no bound, no claim
        return None


def max_radius(results: ResultsFile | Sequence[ResultsFile]) -> float:
    """Largest finite certified radius among correct rows of the given files (0.0 if none)."""
    files = [results] if isinstance(results, ResultsFile) else list(results)
    radii = [f.radius[(f.correct == 1) & np.isfinite(f.radius)] for f in files]
    flat = np.concatenate(radii) if radii else np.empty(0)
    return float(flat.max()) if flat.size else 0.0


def default_radius_grid(results: ResultsFile | Sequence[ResultsFile]) -> list[float]:
    """0, 0.25, ... up to the largest multiple of 0.25 not above the max radius (at least up to 1.0)."""
    top = max(_MIN_GRID_TOP, math.floor(max_radius(results) / _GRID_STEP + 1e-9) * _GRID_STEP)
    return _inclusive_range(0.0, top, _GRID_STEP)


def fine_radius_grid(results: ResultsFile | Sequence[ResultsFile], step: float = 0.01) -> np.ndarray:
    """Grid for plotting: from 0 to a little past the max radius, so each curve visibly drops to 0."""
    top = max(max_radius(results), step) * 1.05
    return np.asarray(_inclusive_range(0.0, math.ceil(top / step) * step, step))


def parse_radii(text: str) -> list[float]:
    """Parse ``--radii``: "0,0.25,0.5", "0:1.5:0.25" (start:stop:step, stop included), or a mix.

    Returns sorted, de-duplicated radii; raises ResultsError for anything else.
    """
    values: list[float] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            raise ResultsError(f"--radii {text!r} has an empty item.", _RADII_EXAMPLE)
        if ":" in item:
            pieces = item.split(":")
            if len(pieces) != 3:
                raise ResultsError(f"--radii range {item!r} must be start:stop:step.", _RADII_EXAMPLE)
            start, stop, step = (_parse_radius(p, text) for p in pieces)
            if step <= 0 or stop < start:
                raise ResultsError(
                    f"--radii range {item!r} needs step > 0 and stop >= start.", _RADII_EXAMPLE
                )
            if (stop - start) / step > _MAX_RANGE_POINTS:
                raise ResultsError(
                    f"--radii range {item!r} has more than {_MAX_RANGE_POINTS} points.", "Use a larger step."
                )
            values.extend(_inclusive_range(start, stop, step))
        else:
            values.append(_parse_radius(item, text))
    return sorted(set(values))


def _parse_radius(item: str, text: str) -> float:
    try:
        value = float(item)
    except ValueError:
        raise ResultsError(f"--radii {text!r}: {item.strip()!r} is not a number.", _RADII_EXAMPLE) from None
    if not math.isfinite(value) or value < 0:
        raise ResultsError(
            f"--radii {text!r}: {item.strip()!r} is not a finite radius >= 0.", "L2 radii are non-negative numbers."
        )
    return value


def _inclusive_range(start: float, stop: float, step: float) -> list[float]:
    # Integer counting and rounding avoid float drift (0.1 * 3 != 0.3) dropping the endpoint.
    count = math.floor((stop - start) / step + 1e-9) + 1
    return [round(start + i * step, 10) for i in range(count)]
