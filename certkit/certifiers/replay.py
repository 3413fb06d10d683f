"""Class counts drawn from known class probabilities, in place of a model's forward passes.

A base classifier under noise is, for one image, a categorical distribution over classes: each
noisy forward pass is one draw. :class:`CategoricalSampler` draws those votes directly from
given probabilities, so certifiers can be run with *exact* probabilities (guarantee tests: is
the failure rate at most alpha when p is known?) and at N = 100,000 in seconds (the replay
benchmark, whose probabilities were measured once on a real model).

Draws come in blocks of :data:`REPLAY_BLOCK` votes from a generator seeded by
``(seed, image index, stage, block)``, like the noise of :class:`certkit.sampling.NoiseStream`:
asking a stage again continues its stream, so a sequential certifier that asks for 1,000 and
then 1,000 more sees the votes of one request for 2,000, and at its last look it has exactly the
counts Cohen's CERTIFY gets with the same seed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from certkit.interfaces import CertifyProcess, CountSampler
from certkit.sampling import drive, stream_seed

REPLAY_BLOCK = 1000


class _VoteStream:
    """The votes of one image in one stage, in stream order."""

    def __init__(self, cumulative: np.ndarray, idx: int, stage: str, seed: int) -> None:
        self.cumulative, self.idx, self.stage, self.seed = cumulative, idx, stage, seed
        self.position = 0
        self._block_number = -1
        self._block: np.ndarray | None = None

    def count(self, num: int) -> np.ndarray:
        counts = np.zeros(len(self.cumulative), dtype=np.int64)
        while num > 0:
            number, offset = divmod(self.position, REPLAY_BLOCK)
            if number != self._block_number:
                uniform = np.random.default_rng(stream_seed(self.seed, self.idx, self.stage, number)).random(REPLAY_BLOCK)
                self._block = np.minimum(np.searchsorted(self.cumulative, uniform, side="right"), len(self.cumulative) - 1)
                self._block_number = number
            rows = min(num, REPLAY_BLOCK - offset)
            counts += np.bincount(self._block[offset : offset + rows], minlength=len(counts))
            self.position += rows
            num -= rows
        return counts


class CategoricalSampler:
    """Serves ``sample(stage, num)`` for images given as class probabilities."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def for_image(self, probabilities: np.ndarray, idx: int) -> CountSampler:
        probabilities = np.asarray(probabilities, dtype=float)
        if probabilities.ndim != 1 or (probabilities < 0).any() or not np.isclose(probabilities.sum(), 1.0):
            raise ValueError(f"class probabilities must be a non-negative vector summing to 1, got {probabilities}")
        cumulative = np.cumsum(probabilities)
        streams: dict[str, _VoteStream] = {}

        def sample(stage: str, num: int) -> np.ndarray:
            if num < 1:
                raise ValueError(f"a certifier asked for {num} samples of stage '{stage}'")
            stream = streams.setdefault(stage, _VoteStream(cumulative, idx, stage, self.seed))
            return stream.count(num)

        return sample

    def run(self, work: Iterable[tuple[int, np.ndarray, CertifyProcess]]) -> Iterator[tuple[int, Any]]:
        """Drive each image's certifier process; yield ``(idx, result)`` in input order."""
        for idx, probabilities, process in work:
            yield idx, drive(process, self.for_image(probabilities, idx))


def certify_many(certifier: Any, smoother: Any, settings: Any, probabilities: np.ndarray, trials: int, seed: int) -> list:
    """``trials`` certificates of one image with known class probabilities; each trial is another
    image index, hence independent votes."""
    sampler = CategoricalSampler(seed)
    return [drive(certifier.process(smoother, settings), sampler.for_image(probabilities, i)) for i in range(trials)]


def two_classes(p_top: float) -> np.ndarray:
    """Class 0 with probability ``p_top``, class 1 otherwise."""
    return np.array([p_top, 1.0 - p_top])
