"""What the anytime certifiers share: options from ``-O key=value``, the target probability of
a radius, and certificates that carry the smoother's norm."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from certkit import Certificate, CertkitError, Smoother


def read_options(certifier: str, extra: Mapping[str, Any], known: Mapping[str, Callable[[Any], Any]], defaults: Mapping[str, Any], example: str) -> dict[str, Any]:
    """``extra`` (the ``-O`` options) converted by ``known``, with ``defaults`` for the rest.
    An unknown or malformed option is refused with the list of valid ones."""
    unknown = sorted(set(extra) - set(known))
    if unknown:
        raise CertkitError(f"unknown option {unknown[0]!r} of certifier '{certifier}'.", f"Known options: {', '.join(known)}.")
    values = dict(defaults)
    for key, value in extra.items():
        try:
            values[key] = known[key](value)
        except (TypeError, ValueError) as exc:
            raise CertkitError(f"bad option {key}={value!r} of certifier '{certifier}': {exc}.", example) from None
    return values


def target_radius(certifier: str, extra: Mapping[str, Any], example: str) -> float:
    """The required ``radius`` option: the radius the certifier decides about."""
    if "radius" not in extra:
        raise CertkitError(f"certifier '{certifier}' decides one target radius, and none was given.", example)
    try:
        radius = float(extra["radius"])
    except (TypeError, ValueError):
        raise CertkitError(f"radius {extra['radius']!r} of certifier '{certifier}' is not a number.", example) from None
    if not radius > 0:
        raise CertkitError(f"the target radius of certifier '{certifier}' must be > 0, got {radius:g}.", example)
    return radius


def steps(text: Any) -> tuple[int, ...]:
    """``"100,1000,10000,120000"`` (or one number) as sample sizes."""
    parts = [int(part) for part in str(text).replace(" ", "").split(",") if part]
    if not parts or min(parts) < 1:
        raise ValueError("steps are sample sizes >= 1, e.g. 100,1000,10000,120000")
    return tuple(parts)


def probability_for(smoother: Smoother, radius: float) -> float:
    """The smallest p whose certified radius reaches ``radius``: bisection, so any smoother
    whose radius grows with p works (Gaussian: Phi(radius / sigma))."""
    low, high = 0.5, 1.0
    for _ in range(100):
        middle = (low + high) / 2
        if smoother.radius(middle) >= radius:
            high = middle
        else:
            low = middle
    return high


def certificate(smoother: Smoother, prediction: int, radius: float, p_lower: float, samples: int, n: int, count: int, selection_count: int) -> Certificate:
    """A certificate in the norm of the smoother's radius (L2 for a smoother that names none)."""
    return Certificate(prediction, radius, p_lower, samples, n, count, selection_count, norm=getattr(smoother, "norm", "l2"))
