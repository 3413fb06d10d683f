"""The sampler's own cost per noisy sample: noise blocks drawn straight into batch rows (certkit's
default) against every block through the smoother's ``perturb`` and copied (the path before).

The engine is free (it returns class 0 for every row without looking), so what is timed is the
sampler alone: seeding a generator per block of 100 samples (a hash), drawing the noise, adding
the image, filling the batch and counting votes. Both paths give the same numbers (tests/
test_sampling_blocks.py). Interleaved in one process, medians over rounds.

    python benchmarks/sampler.py [--device cpu --rounds 5 --samples 20000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from certkit.sampling import NOISE_BLOCK, MonteCarloSampler, stream_seed
from certkit.smoothers import GaussianSmoother

SHAPES = {"1x28x28 (Fashion-MNIST)": (1, 28, 28), "3x32x32 (CIFAR-10)": (3, 32, 32), "3x224x224 (ImageNet)": (3, 224, 224)}


class FreeEngine:
    """Votes for class 0 without looking: the sampler's cost, with no forward pass."""

    name = "free"
    num_classes = 10

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(images), dtype=torch.long, device=self.device)

    def describe(self) -> dict:
        return {"name": self.name}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=20_000, help="per timing, for 28x28 and 32x32 images (a tenth of it for 224x224)")
    parser.add_argument("--batches", default="32,1000")
    options = parser.parse_args()
    device = torch.device(options.device)
    engine, smoother = FreeEngine(device), GaussianSmoother(0.25)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    began = time.perf_counter()
    hashes = 20_000
    for block in range(hashes):
        stream_seed(0, 17, "estimation", block)
    hash_us = (time.perf_counter() - began) / hashes * 1e6

    cases = [(shape, batch, direct) for shape in SHAPES for batch in map(int, options.batches.split(",")) for direct in (False, True)]
    rates: dict[tuple, list[float]] = {case: [] for case in cases}
    for round_number in range(options.rounds + 1):  # round 0 warms up
        for shape_name, batch, direct in cases[round_number % len(cases) :] + cases[: round_number % len(cases)]:
            shape = SHAPES[shape_name]
            samples = options.samples // (10 if shape[-1] > 100 else 1)
            image = torch.rand(shape, device=device)
            sampler = MonteCarloSampler(engine, smoother, batch, seed=0, direct_noise=direct)
            sync()
            start = time.perf_counter()
            sampler.counts(image, round_number, "estimation", samples)
            sync()
            if round_number:
                rates[(shape_name, batch, direct)].append(samples / (time.perf_counter() - start))

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} torch threads"
    print(f"sampler alone (free engine), {where}, medians of {options.rounds}; a seed hash costs {hash_us:.1f} us per block of {NOISE_BLOCK}")
    print(f"{'image':<24}{'batch':>7}{'perturb + copy':>17}{'direct (default)':>19}{'speed-up':>10}{'us/block before':>17}{'after':>8}")
    for shape_name in SHAPES:
        for batch in map(int, options.batches.split(",")):
            old = statistics.median(rates[(shape_name, batch, False)])
            new = statistics.median(rates[(shape_name, batch, True)])
            print(f"{shape_name:<24}{batch:>7}{old:>15,.0f}/s{new:>17,.0f}/s{new / old:>9.2f}x{NOISE_BLOCK / old * 1e6:>17.0f}{NOISE_BLOCK / new * 1e6:>8.0f}")


if __name__ == "__main__":
    main()
