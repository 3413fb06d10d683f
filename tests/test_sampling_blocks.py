"""Noise blocks drawn straight into batches give today's numbers: the same counts as the per-block
``perturb`` path, at every batch size, one image at a time and packed (also on CUDA when present)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from certkit import plugins
from certkit.interfaces import CertifySettings
from certkit.sampling import NOISE_BLOCK, MonteCarloSampler, draws_directly
from certkit.smoothers import GaussianSmoother, UniformSmoother

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


class PixelVote:
    """Class = how many of the first 9 pixels exceed 0.5: every draw moves the votes, no float ties."""

    name = "pixel-vote"
    num_classes = 10

    def __init__(self, device: str = "cpu") -> None:
        self.device = torch.device(device)

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        return (images.flatten(1)[:, :9] > 0.5).sum(1)

    def describe(self) -> dict:
        return {"name": self.name}


def images(device: str = "cpu") -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [(torch.rand(1, 28, 28, generator=generator) * 0.4 + 0.3).to(device) for _ in range(3)]


# Counts printed by certkit before blocks were drawn into batches (commit eda0d78, batch 64, seed 7):
# for each of images() in turn, "selection" 150 samples, then 130 more of the same stream.
TODAY = {
    "gaussian": [[0, 1, 5, 28, 56, 35, 15, 10, 0, 0], [0, 2, 7, 21, 40, 33, 19, 8, 0, 0], [0, 2, 13, 26, 46, 35, 20, 8, 0, 0],
                 [0, 2, 12, 25, 37, 30, 20, 4, 0, 0], [0, 5, 19, 35, 40, 30, 17, 4, 0, 0], [0, 2, 21, 34, 39, 26, 5, 3, 0, 0]],
    "uniform": [[0, 1, 12, 33, 40, 40, 13, 8, 3, 0], [1, 4, 12, 20, 27, 35, 25, 4, 2, 0], [0, 3, 13, 25, 41, 37, 23, 6, 2, 0],
                [0, 2, 14, 21, 33, 30, 17, 8, 5, 0], [0, 6, 13, 30, 33, 44, 15, 8, 1, 0], [0, 4, 11, 28, 43, 24, 14, 2, 4, 0]],
}
SMOOTHERS = {"gaussian": GaussianSmoother(0.25), "uniform": UniformSmoother(0.25)}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(SMOOTHERS))
@pytest.mark.parametrize("batch", [64, 100, 250, 1000])
@pytest.mark.parametrize("direct", [True, False])
def test_counts_are_todays_at_every_batch_size_with_and_without_direct_draws(name, batch, direct, device):
    sampler = MonteCarloSampler(PixelVote(device), SMOOTHERS[name], batch_size=batch, seed=7, direct_noise=direct)
    got = []
    for idx, image in enumerate(images(device)):
        sample = sampler.for_image(image, idx)
        got += [sample("selection", 150).tolist(), sample("selection", 130).tolist()]
    if device == "cpu":  # CUDA draws other numbers than the CPU: there the two paths are compared below
        assert got == TODAY[name]
    assert sampler._direct is (direct and True)  # the built-in smoothers pass the check


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(SMOOTHERS))
def test_packed_certification_gives_the_same_certificates_with_and_without_direct_draws(name, device):
    certifier = plugins.get("certifiers", "cohen").obj()
    settings = CertifySettings(n0=100, n=950, alpha=0.001)
    smoother = SMOOTHERS[name]

    def certify(batch: int, direct: bool) -> list:
        sampler = MonteCarloSampler(PixelVote(device), smoother, batch_size=batch, seed=3, direct_noise=direct)
        work = [(idx, image, certifier.process(smoother, settings)) for idx, image in enumerate(images(device) * 3)]
        return sorted((idx, result) for idx, result, _ in sampler.run(work))

    reference = certify(64, direct=False)  # every block through perturb, as before
    for batch in (100, 333, 1000, 2500):
        assert certify(batch, direct=True) == reference, batch
    assert reference[0][1].n == 950


@dataclass(frozen=True)
class Careless(GaussianSmoother):
    """Its two-step noise does not reproduce its perturb (the image is added twice)."""

    def add_noise(self, noise: torch.Tensor, image: torch.Tensor) -> None:
        noise.mul_(self.sigma).add_(image).add_(image)


@dataclass(frozen=True)
class PerturbOnly:
    """A plugin-style smoother with perturb alone."""

    sigma: float = 0.25
    name: str = "perturb-only"
    norm: str = "l2"

    def perturb(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return images + self.sigma * torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)

    def radius(self, p_lower: float) -> float:
        return 0.0


@pytest.mark.parametrize("smoother", [Careless(0.25), PerturbOnly()], ids=["two steps disagree", "perturb only"])
def test_smoothers_that_cannot_draw_directly_keep_the_perturb_path_and_its_numbers(smoother):
    image = images()[0]
    assert not draws_directly(smoother, image)
    sampler = MonteCarloSampler(PixelVote(), smoother, batch_size=1000, seed=7)
    got = sampler.for_image(image, 0)("selection", 150).tolist()
    assert sampler._direct is False and got == TODAY["gaussian"][0]


def test_a_block_split_across_batches_is_drawn_once_and_handed_out_in_order():
    """Rows 0..NOISE_BLOCK of a stream are the same rows whether asked for at once or in pieces."""
    from certkit.sampling import NoiseStream

    image, smoother = images()[0], SMOOTHERS["gaussian"]
    whole = torch.empty(2 * NOISE_BLOCK + 30, 1, 28, 28)
    NoiseStream(image, 4, "s", 9, smoother, direct=True).fill(whole)
    pieces, stream = [], NoiseStream(image, 4, "s", 9, smoother, direct=False)
    for size in (7, 93, 61, 39, 30):
        out = torch.empty(size, 1, 28, 28)
        stream.fill(out)
        pieces.append(out)
    assert torch.equal(torch.cat(pieces), whole)
