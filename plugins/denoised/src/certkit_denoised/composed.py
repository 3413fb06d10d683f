"""Denoiser + classifier as one base classifier: the registered model ``denoised``.

It needs no certkit checkpoint of its own (contract C3: registered with
``needs_checkpoint=False``): certkit calls ``denoised(sigma=<certification sigma>,
checkpoint=<--checkpoint or None>, **<-M options>)``. The two parts are loaded from their own
files, recorded in ``certkit_parts`` (so results name both and their hashes), and the module is
one graph from [0, 1] images to logits, so it exports to ONNX like any classifier.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from certkit import InputSpec, LoadedClassifier

from certkit_denoised.parts import check_fit, load_denoiser, load_part_classifier


class DenoisedClassifier(nn.Module):
    """f(D(x)): the denoiser's clean estimate, classified. Input: noisy [0, 1] images
    ``[B, C, H, W]``; output: logits ``[B, K]``. Carries the classifier's input spec, with the
    sigma the denoiser serves."""

    def __init__(self, denoiser: nn.Module, classifier: nn.Module, spec: InputSpec, parts: list[dict[str, Any]], note: str = "") -> None:
        super().__init__()
        self.denoiser = denoiser
        self.classifier = classifier
        self.input_spec = spec
        self.certkit_parts = parts
        self.note = note  # e.g. the diffusion timestep chosen and its effective sigma

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.denoiser(images))  # [B, C, H, W] -> [B, C, H, W] -> [B, K]


def denoised_classifier(
    sigma: float,
    checkpoint: Path | None = None,
    denoiser: str | None = None,
    classifier: str | None = None,
    classifier_checkpoint: str | None = None,
    classifier_sigma: float | None = None,
    clip: bool = True,
) -> DenoisedClassifier:
    """``-M denoiser=``: ``unet-mini`` (default: the shipped diffusion denoiser, one-shot at
    ``sigma``), ``dncnn-mini`` (the shipped DnCNN for ``sigma``), a certkit weights file of
    either, or a local diffusers model directory; ``--checkpoint`` is the same as ``-M
    denoiser=``. ``-M classifier=``: any registered classifier (default ``vit-mini`` with the
    shipped clean weights), with ``-M classifier_checkpoint=PATH`` or its checkpoint for
    ``-M classifier_sigma=S``. ``-M clip=false`` leaves the diffusion estimate unclipped."""
    loaded = load_part_classifier(classifier, classifier_checkpoint, classifier_sigma)
    part = load_denoiser(denoiser, checkpoint, float(sigma), bool(clip))
    check_fit(part, loaded.name, loaded.spec)
    # The composed model serves the denoiser's sigma and noise: the certification sigma for a
    # diffusion model, the training sigma of a feed-forward one (so certify warns at another
    # sigma), and Gaussian noise (so certify warns under another smoother).
    serves = part.trained_sigma if part.trained_sigma is not None else float(sigma)
    spec = replace(loaded.spec, sigma=serves, noise="gaussian")
    parts = [part.part(), _classifier_part(loaded)]
    return DenoisedClassifier(part.module, loaded.model.eval(), spec, parts, part.note).eval()


def _classifier_part(loaded: LoadedClassifier) -> dict[str, str]:
    return {"role": "classifier", "name": loaded.name, "checkpoint": str(loaded.checkpoint), "checkpoint_sha256": loaded.checkpoint_sha256}
