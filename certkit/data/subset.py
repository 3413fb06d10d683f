"""Which images a certification run uses.

The papers certify a fixed, deterministic subset: every ``skip``-th image starting at 0,
then at most ``max_items`` of them (Cohen et al.: every 20th CIFAR-10 test image, every
100th ImageNet validation image; DMAE: every 50th ImageNet validation image). Keeping the
rule in one place keeps runs of different models on the same images comparable.
"""

from __future__ import annotations

import operator

from certkit.errors import DataError


def _at_least_one(value: object, what: str, fix: str) -> int:
    try:
        number = operator.index(value)  # ints and numpy ints; not floats, not bools
    except TypeError:
        number = 0
    if isinstance(value, bool) or number < 1:
        raise DataError(f"{what} must be an integer of at least 1, got {value!r}.", fix)
    return number


def select_indices(length: int, skip: int = 1, max_items: int | None = None) -> list[int]:
    """Indices ``i`` in ``range(length)`` with ``i % skip == 0``, the first ``max_items`` of them."""
    skip = _at_least_one(skip, "skip", "Use 1 to take every image, 50 for every 50th.")
    indices = range(0, max(length, 0), skip)
    if max_items is None:
        return list(indices)
    max_items = _at_least_one(max_items, "max", "Leave it unset to take every selected image.")
    return list(indices[:max_items])
