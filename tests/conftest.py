"""Shared fixtures: a tiny real model registered through a throwaway plugin."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from certkit import InputSpec, Normalize, hookimpl, plugins
from certkit.checkpoints import write_weights

TINY_SPEC = InputSpec(image_size=(28, 28), channels=1, mean=(0.286,), std=(0.353,), num_classes=10, sigma=0.25)


class TinyCNN(nn.Module):
    """A small real CNN for 1x28x28 images: fast enough for many noisy samples in CI."""

    def __init__(self, spec: InputSpec = TINY_SPEC) -> None:
        super().__init__()
        self.input_spec = spec
        self.normalize = Normalize(spec.mean, spec.std)
        self.net = nn.Sequential(
            nn.Conv2d(spec.channels, 8, 5, stride=2), nn.ReLU(), nn.Conv2d(8, 16, 5, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 4 * 4, spec.num_classes)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(images))


def make_tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    write_weights(path, TinyCNN(), "tiny-cnn", TINY_SPEC)
    return path


class TinyPlugin:
    def __init__(self, checkpoint: Path) -> None:
        self.checkpoint = checkpoint

    @hookimpl
    def certkit_register_models(self, register) -> None:
        register("tiny-cnn", lambda spec=None: TinyCNN(spec or TINY_SPEC), description="test model", checkpoints={0.25: self.checkpoint})


@pytest.fixture
def tiny_model(tmp_path_factory: pytest.TempPathFactory):
    """Registers 'tiny-cnn' (random but fixed weights, sigma 0.25 checkpoint) for one test."""
    checkpoint = make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny.safetensors")
    host = plugins.host()
    host.register_plugin(TinyPlugin(checkpoint), name="test-tiny")
    try:
        yield checkpoint
    finally:
        host.unregister_plugin("test-tiny")
