"""A DnCNN-style denoiser (Zhang et al. 2017), the architecture of Salman et al.'s denoised
smoothing, in miniature: noisy [0, 1] images in, clean estimates in [0, 1] pixel space out."""

from __future__ import annotations

import torch
from torch import nn

from certkit import InputSpec

from certkit_denoised.diffusion import FASHION_MNIST_DENOISER


class DnCNN(nn.Module):
    """conv-ReLU, (depth - 2) x conv-BN-ReLU, conv, all 3x3 at full resolution; the network
    predicts the noise and the denoiser returns the input minus it (residual learning)."""

    def __init__(self, spec: InputSpec, depth: int = 8, width: int = 32) -> None:
        super().__init__()
        self.input_spec = spec
        layers: list[nn.Module] = [nn.Conv2d(spec.channels, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(width, spec.channels, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        return noisy - self.net(noisy)  # [B, C, H, W]


def dncnn_mini() -> DnCNN:
    """dncnn-mini: depth 8, width 32 (56 k parameters, receptive field 17x17) for 1x28x28 images;
    Salman et al.'s DnCNN is depth 17, width 64."""
    return DnCNN(FASHION_MNIST_DENOISER)
