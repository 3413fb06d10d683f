"""Evaluation during fine-tuning: a fixed validation subset, clean accuracy and the smoothed
classifier's accuracy at radius 0 (Cohen et al.'s CERTIFY with a small N, through certkit's own
sampler and certifier, so it is the same statistic ``certkit certify`` reports at r = 0).

The subset is every ``stride``-th image of the split starting at ``stride // 2``, so it is
disjoint from the images a ``--skip stride`` certification run uses (those start at 0): with
``eval_images`` 200 on the 1,000 embedded test images it avoids the 200 images of the
``--skip 5`` comparisons; 1,000 of ImageNet's 50,000 validation images avoid DMAE's every-50th.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from certkit.certifiers.cohen import CohenCertifier
from certkit.data import ImageDataset
from certkit.data.training import pil_image
from certkit.data.transforms import eval_transform
from certkit.engines import TorchEngine
from certkit.interfaces import ABSTAIN, CertifySettings, InputSpec, Smoother
from certkit.sampling import MonteCarloSampler

EVAL_ALPHA = 0.001
EVAL_SEED = 0


def subset_indices(length: int, count: int) -> list[int]:
    """``count`` evenly spaced indices, offset by half a stride (see the module docstring)."""
    count = min(count, length)
    stride = max(1, length // max(count, 1))
    return list(range(stride // 2, length, stride))[:count]


@dataclass
class Evaluator:
    """Clean and smoothed (r = 0) accuracy of a classifier on fixed images, as ``uint8``."""

    images: torch.Tensor  # [M, C, H, W] uint8
    labels: torch.Tensor  # [M] int64
    smoother: Smoother | None  # None (a classifier of clean images): clean accuracy only
    n: int
    batch: int = 256

    @classmethod
    def from_dataset(cls, dataset: ImageDataset, spec: InputSpec, smoother: Smoother | None, count: int, n: int) -> Evaluator:
        """Images at the model's size: as the dataset gives them when it already has that size,
        else through the evaluation transform (resize the shorter side by 1/0.875, centre crop)."""
        indices = subset_indices(len(dataset), count)
        same_size = tuple(dataset.info.image_size) == tuple(spec.image_size)
        transform = None if same_size else eval_transform(tuple(spec.image_size), spec.channels)
        images, labels = [], []
        for index in indices:
            if transform is None:
                image, label = dataset[index]
                images.append((image * 255).round().to(torch.uint8))
            else:
                picture, label = pil_image(dataset, index)
                images.append(transform(picture))
            labels.append(int(label))
        return cls(torch.stack(images), torch.tensor(labels, dtype=torch.int64), smoother, n)

    def __call__(self, model: nn.Module, device: torch.device) -> dict[str, Any]:
        was_training = model.training
        try:
            numbers = {"val_images": len(self.labels), "val_clean_acc": self._clean_accuracy(model, device)}
            if self.smoother is not None:
                numbers.update(val_smoothed_acc_r0=self._smoothed_accuracy(model, device), val_n=self.n)
        finally:
            model.train(was_training)
        return numbers

    @torch.inference_mode()
    def _clean_accuracy(self, model: nn.Module, device: torch.device) -> float:
        model.eval()
        correct = 0
        for start in range(0, len(self.labels), self.batch):
            images = self.images[start : start + self.batch].to(device).float().div_(255)
            correct += int((model(images).argmax(1).cpu() == self.labels[start : start + self.batch]).sum())
        return correct / len(self.labels)

    def _smoothed_accuracy(self, model: nn.Module, device: torch.device) -> float:
        """Share of images whose Cohen certificate (N0 = N = ``n``, alpha 0.001) is the label."""
        engine = TorchEngine(model, device)
        sampler = MonteCarloSampler(engine, self.smoother, batch_size=max(self.n, 100), seed=EVAL_SEED)
        certifier, settings = CohenCertifier(), CertifySettings(n0=self.n, n=self.n, alpha=EVAL_ALPHA)
        work = ((i, self.images[i].float().div(255), certifier.process(self.smoother, settings)) for i in range(len(self.labels)))
        correct = sum(1 for idx, result, _ in sampler.run(work) if result.prediction != ABSTAIN and result.prediction == int(self.labels[idx]))
        return correct / len(self.labels)
