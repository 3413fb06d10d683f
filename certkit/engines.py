"""Where base-classifier forward passes run. An engine maps a noisy batch to class indices
on its own device; everything around it (noise, counting) stays on that device too."""

from __future__ import annotations

import torch
from torch import nn


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when it is usable, else the CPU; never assume CUDA exists."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        from certkit.errors import CertkitError

        raise CertkitError(f"device '{name}' was asked for but CUDA is not available here.", "Use --device cpu or --device auto.")
    return device


class TorchEngine:
    """Eager PyTorch forward passes in inference mode."""

    name = "torch"

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self.model = model.eval().to(device)
        self.device = device
        self.num_classes = int(model.input_spec.num_classes)

    @torch.inference_mode()
    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """Argmax class of each image in ``images`` ([B, C, H, W], [0,1] space) -> ``[B]``."""
        return self.model(images).argmax(dim=1)
