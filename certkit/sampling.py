"""Monte Carlo vote counting: noisy copies of one image through an engine, counted on device.

Noise comes in blocks of :data:`NOISE_BLOCK` samples, each drawn from a generator seeded by
``(seed, image index, stage, block number)``. The noise an image sees therefore depends on
neither the batch size, nor the order of images, nor how images are split across processes:
same seed, same counts. Batches are filled across block boundaries so the engine always sees
full batches, and memory is bounded by the batch, never by N.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import numpy as np
import torch

from certkit.interfaces import CountSampler, Smoother

NOISE_BLOCK = 100


def stream_seed(seed: int, idx: int, stage: str, block: int) -> int:
    """A 63-bit seed for one noise block; a hash so that nearby inputs give unrelated streams."""
    digest = hashlib.blake2b(f"{seed}/{idx}/{stage}/{block}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


class MonteCarloSampler:
    """Counts an engine's votes over noisy copies of one image at a time."""

    def __init__(self, engine, smoother: Smoother, batch_size: int, seed: int, on_samples: Callable[[int], None] | None = None) -> None:
        self.engine = engine
        self.smoother = smoother
        self.batch_size = batch_size
        self.seed = seed
        self.on_samples = on_samples

    def for_image(self, image: torch.Tensor, idx: int) -> CountSampler:
        """The ``sample(stage, num)`` callable a certifier uses for the image at ``idx``."""
        image = image.to(self.engine.device)
        return lambda stage, num: self.counts(image, idx, stage, num)

    def counts(self, image: torch.Tensor, idx: int, stage: str, num: int) -> np.ndarray:
        device = self.engine.device
        counts = torch.zeros(self.engine.num_classes, dtype=torch.long, device=device)
        capacity = min(self.batch_size, num)
        batch = torch.empty((capacity, *image.shape), dtype=image.dtype, device=device)
        filled = 0
        for block in self._noisy_blocks(image, idx, stage, num):
            used = 0
            while used < len(block):
                take = min(len(block) - used, capacity - filled)
                batch[filled : filled + take] = block[used : used + take]
                filled += take
                used += take
                if filled == capacity:
                    self._vote(batch, counts)
                    filled = 0
        if filled:
            self._vote(batch[:filled], counts)
        return counts.cpu().numpy()  # the only host copy: once per stage

    def _noisy_blocks(self, image: torch.Tensor, idx: int, stage: str, num: int) -> Iterator[torch.Tensor]:
        generator = torch.Generator(device=image.device)
        for block, start in enumerate(range(0, num, NOISE_BLOCK)):
            size = min(NOISE_BLOCK, num - start)
            generator.manual_seed(stream_seed(self.seed, idx, stage, block))
            yield self.smoother.perturb(image.expand(size, *image.shape), generator)

    def _vote(self, batch: torch.Tensor, counts: torch.Tensor) -> None:
        labels = self.engine.classify(batch)
        counts += torch.bincount(labels, minlength=counts.numel())
        if self.on_samples is not None:
            self.on_samples(len(batch))
