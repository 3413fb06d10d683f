"""Monte Carlo vote counting: noisy copies of images through an engine, counted on device.

Noise comes in blocks of :data:`NOISE_BLOCK` samples, each drawn from a generator seeded by
``(seed, image index, stage, block number)``. A stage is a stream: asking the same stage of an
image again continues where the last request stopped, so a sequential certifier that asks for
1,000 then 1,000 more sees exactly the noise of one request for 2,000. The noise an image sees
therefore depends on neither the batch size, nor the order of images, nor how images are split
across processes, nor which other images share its batches: same seed, same counts.

:class:`MonteCarloSampler` serves one image at a time (``for_image``) or, through
:meth:`MonteCarloSampler.run`, many images at once: certifiers written as generators
(:data:`certkit.interfaces.CertifyProcess`) ask for samples when they need them, and batches are
packed with samples of several images, so the engine sees full batches even when images stop
at different times. Memory is bounded by the batch and the number of images in flight, never by N.

Per-block cost. Each block needs its own seeded draw (torch has no call that draws from many
generators at once, and reproducing torch's per-device RNG kernels in our own would tie results
to torch internals), so the work around that draw is kept small:
- a whole block that lands inside a batch is drawn straight into the batch rows, and the image is
  added once per run of such rows, when the smoother offers ``draw_noise``/``add_noise`` (the
  built-in ones do): one kernel per block instead of four (draw, scale, add, copy). The rows are
  bit-identical to ``perturb``'s, which a check on the first image confirms (else ``perturb`` is
  used, as for blocks split across batches);
- votes are accumulated on the device with ``scatter_add_`` (``bincount`` on CUDA waits for the
  GPU to size its output), and the per-row image slots travel host-to-device without waiting, so
  on a GPU the host prepares the next batch while the current one runs. The only waits are the
  one host copy of counts per finished request.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from certkit.interfaces import CertifyProcess, CountSampler, Smoother

NOISE_BLOCK = 100


def stream_seed(seed: int, idx: int, stage: str, block: int) -> int:
    """A 63-bit seed for one noise block; a hash so that nearby inputs give unrelated streams."""
    digest = hashlib.blake2b(f"{seed}/{idx}/{stage}/{block}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


class NoiseStream:
    """The noisy copies of one image in one stage, in stream order.

    Block ``k`` (rows ``k * NOISE_BLOCK`` to ``(k + 1) * NOISE_BLOCK``) is always drawn whole from
    a generator seeded by ``stream_seed(seed, idx, stage, k)``, so row j of the stream is the same
    however the stream is cut into requests and batches. With ``direct``, a block that fits
    whole into the rows being filled is drawn straight into them (see the module docstring).
    """

    def __init__(self, image: torch.Tensor, idx: int, stage: str, seed: int, smoother: Smoother, direct: bool = False) -> None:
        self.image, self.idx, self.stage, self.seed, self.smoother = image, idx, stage, seed, smoother
        self.direct = direct
        self.position = 0  # rows handed out so far
        self._block_number = -1
        self._block: torch.Tensor | None = None
        self._generator = torch.Generator(device=image.device)

    def fill(self, out: torch.Tensor) -> None:
        """Write the next ``len(out)`` rows of the stream into ``out`` (contiguous rows)."""
        done, raw = 0, None  # raw: the rows drawn as bare noise, to which the image is added once
        while done < len(out):
            number, offset = divmod(self.position, NOISE_BLOCK)
            rows = min(len(out) - done, NOISE_BLOCK - offset)
            target = out[done : done + rows]
            if self.direct and rows == NOISE_BLOCK:
                self.smoother.draw_noise(target, self._seeded(number))
                raw = (done if raw is None else raw[0], done + rows)  # whole blocks are consecutive
            else:
                target.copy_(self._cached_block(number)[offset : offset + rows])
                if offset + rows == NOISE_BLOCK:
                    # Used up: let it go, so that the images in flight hold at most a partial block
                    # each (a block of 100 ImageNet-sized rows is 60 MB).
                    self._block, self._block_number = None, -1
            self.position += rows
            done += rows
        if raw is not None:
            self.smoother.add_noise(out[raw[0] : raw[1]], self.image)

    def _seeded(self, number: int) -> torch.Generator:
        return self._generator.manual_seed(stream_seed(self.seed, self.idx, self.stage, number))

    def _cached_block(self, number: int) -> torch.Tensor:
        """Block ``number`` through the smoother's ``perturb``, kept while it is handed out in parts."""
        if number != self._block_number:
            self._block = self.smoother.perturb(self.image.expand(NOISE_BLOCK, *self.image.shape), self._seeded(number))
            self._block_number = number
        return self._block


def draws_directly(smoother: Smoother, image: torch.Tensor) -> bool:
    """Whether ``smoother`` can draw blocks straight into batch rows with the very numbers of its
    ``perturb``: it must have ``draw_noise(out, generator)`` and ``add_noise(noisy, image)``, and
    they must reproduce ``perturb`` bit for bit on one block of ``image`` (checked here, so a
    smoother whose two paths disagree is never used directly)."""
    if not (callable(getattr(smoother, "draw_noise", None)) and callable(getattr(smoother, "add_noise", None))):
        return False
    generator = torch.Generator(device=image.device)
    expected = smoother.perturb(image.expand(NOISE_BLOCK, *image.shape), generator.manual_seed(12345))
    direct = torch.empty_like(expected)
    smoother.draw_noise(direct, generator.manual_seed(12345))
    smoother.add_noise(direct, image)
    return bool(torch.equal(direct, expected))


@dataclass
class _Image:
    """One image in flight: its certifier process, its streams and its outstanding request."""

    order: int  # position in the input, for emitting results in input order
    idx: int
    image: torch.Tensor
    process: CertifyProcess
    streams: dict[str, NoiseStream] = field(default_factory=dict)
    stage: str = ""
    to_draw: int = 0  # samples of the request not yet put into a batch
    to_count: int = 0  # samples of the request not yet counted
    seconds: float = 0.0  # this image's share of batch wall time
    result: Any = None
    done: bool = False


class MonteCarloSampler:
    """Counts an engine's votes over noisy copies of images.

    ``direct_noise``: draw whole blocks straight into batch rows when the smoother can (see
    :func:`draws_directly`; the default); False forces ``perturb`` for every block. Both give
    the same numbers; False exists to show that (tests, benchmarks/sampler.py).
    """

    def __init__(self, engine, smoother: Smoother, batch_size: int, seed: int, on_samples: Callable[[int], None] | None = None, direct_noise: bool = True) -> None:
        self.engine = engine
        self.smoother = smoother
        self.batch_size = batch_size
        self.seed = seed
        self.on_samples = on_samples
        self.direct_noise = direct_noise
        self._direct: bool | None = None  # decided on the first image (the check needs one)
        self._ones: torch.Tensor | None = None  # scatter_add_ source: a vote of 1 per row

    def _stream(self, image: torch.Tensor, idx: int, stage: str) -> NoiseStream:
        if self._direct is None:
            self._direct = self.direct_noise and draws_directly(self.smoother, image)
        return NoiseStream(image, idx, stage, self.seed, self.smoother, self._direct)

    # -- one image at a time -------------------------------------------------------------

    def for_image(self, image: torch.Tensor, idx: int) -> CountSampler:
        """The ``sample(stage, num)`` callable a certifier uses for the image at ``idx``; asking
        a stage again continues its stream."""
        image = image.to(self.engine.device)
        streams: dict[str, NoiseStream] = {}

        def sample(stage: str, num: int) -> np.ndarray:
            if stage not in streams:
                streams[stage] = self._stream(image, idx, stage)
            return self._count_stream(streams[stage], num)

        return sample

    def counts(self, image: torch.Tensor, idx: int, stage: str, num: int) -> np.ndarray:
        """Counts over the first ``num`` samples of a stage (a fresh stream)."""
        return self.for_image(image, idx)(stage, num)

    def _count_stream(self, stream: NoiseStream, num: int) -> np.ndarray:
        device = self.engine.device
        counts = torch.zeros(self.engine.num_classes, dtype=torch.long, device=device)
        batch = torch.empty((min(self.batch_size, num), *stream.image.shape), dtype=stream.image.dtype, device=device)
        while num > 0:
            rows = batch[: min(len(batch), num)]
            stream.fill(rows)
            labels = self._classify(rows)
            counts.scatter_add_(0, labels, self._votes(len(rows)))
            num -= len(rows)
        return counts.cpu().numpy()  # the only host copy: once per request

    def _votes(self, rows: int) -> torch.Tensor:
        if self._ones is None or len(self._ones) < rows:
            self._ones = torch.ones(max(rows, self.batch_size), dtype=torch.long, device=self.engine.device)
        return self._ones[:rows]

    def _classify(self, batch: torch.Tensor) -> torch.Tensor:
        labels = self.engine.classify(batch)
        if self.on_samples is not None:
            self.on_samples(len(batch))
        return labels

    # -- many images, packed batches -----------------------------------------------------

    def run(self, work: Iterable[tuple[int, torch.Tensor, CertifyProcess]], in_flight: int | None = None) -> Iterator[tuple[int, Any, float]]:
        """Drive certifier processes over many images; yield ``(idx, result, seconds)`` as
        each image finishes (finishing order, not input order).

        Each batch is packed with the outstanding requests of up to ``in_flight`` images, so
        an image that stops early frees its place for the next one instead of leaving the
        batch half empty. ``seconds`` is the image's share of the wall time of the batches it
        was in (by samples), so the times of all images add up to the run's time.
        """
        in_flight = in_flight or max(2, 2 * math.ceil(self.batch_size / NOISE_BLOCK))
        device = self.engine.device
        num_classes = self.engine.num_classes
        pending = iter(enumerate(work))
        active: list[_Image] = []
        exhausted = False
        batch: torch.Tensor | None = None
        tally = torch.zeros(in_flight * num_classes, dtype=torch.long, device=device)
        slot_of: dict[int, int] = {}  # order -> slot row in ``tally``
        free_slots = list(range(in_flight))[::-1]
        clock = time.perf_counter()
        while True:
            # Admit new images while there is room; each starts by asking for its first request.
            while not exhausted and len(active) < in_flight:
                try:
                    order, (idx, image, process) = next(pending)
                except StopIteration:
                    exhausted = True
                    break
                item = _Image(order, idx, image.to(device), process)
                slot_of[order] = free_slots.pop()
                self._advance(item, None)
                if item.done:
                    free_slots.append(slot_of.pop(order))
                    yield item.idx, item.result, item.seconds
                else:
                    active.append(item)
            if not active:
                return
            # Fill one batch from the requests of the images in flight, in admission order.
            if batch is None:
                batch = torch.empty((self.batch_size, *active[0].image.shape), dtype=active[0].image.dtype, device=device)
            filled, segments = 0, []
            for item in active:
                if filled == self.batch_size:
                    break
                take = min(item.to_draw, self.batch_size - filled)
                if take == 0:
                    continue
                if item.stage not in item.streams:
                    item.streams[item.stage] = self._stream(item.image, item.idx, item.stage)
                item.streams[item.stage].fill(batch[filled : filled + take])
                filled += take
                item.to_draw -= take
                segments.append((item, take))
            labels = self._classify(batch[:filled])
            # Row r's vote goes to its image's slot: offsets built on the host, sent without waiting.
            rows = torch.repeat_interleave(torch.tensor([slot_of[item.order] * num_classes for item, _ in segments]), torch.tensor([take for _, take in segments]))
            rows = rows.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else rows.to(device)
            tally.scatter_add_(0, rows + labels, self._votes(filled))
            now = time.perf_counter()
            elapsed, clock = now - clock, now
            # Requests counted in full go back to their certifier, which asks again or finishes.
            for item, take in segments:
                item.seconds += elapsed * take / filled
                item.to_count -= take
                if item.to_count == 0:
                    row = slot_of[item.order] * num_classes
                    counts = tally[row : row + num_classes].cpu().numpy().copy()  # one host copy per request (a copy: on a CPU .cpu() is a view)
                    tally[row : row + num_classes] = 0
                    self._advance(item, counts)
            for item in [item for item in active if item.done]:
                active.remove(item)
                free_slots.append(slot_of.pop(item.order))
                yield item.idx, item.result, item.seconds
            clock = time.perf_counter()  # time spent by the consumer is not the images' time

    @staticmethod
    def _advance(item: _Image, counts: np.ndarray | None) -> None:
        """Send counts to the certifier process (None to start it) and take its next request."""
        try:
            stage, num = item.process.send(counts) if counts is not None else next(item.process)
        except StopIteration as finished:
            item.result, item.done = finished.value, True
            return
        if num < 1:
            raise ValueError(f"a certifier asked for {num} samples of stage '{stage}'")
        item.stage, item.to_draw, item.to_count = stage, num, num


def drive(process: CertifyProcess, sample: CountSampler) -> Any:
    """Run a certifier process against a one-image ``sample`` callable; return its result."""
    try:
        request = next(process)
        while True:
            request = process.send(sample(*request))
    except StopIteration as finished:
        return finished.value
