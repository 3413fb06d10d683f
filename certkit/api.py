"""certkit from Python: smooth any ``torch.nn.Module`` and certify tensors in memory.

    import certkit
    smoothed = certkit.SmoothedClassifier.from_registry("vit-mini", sigma=0.25)
    images, labels = certkit.load_images("fashion-mnist-mini", indices=range(5))
    for certificate in smoothed.certify(images, n=1000, index=range(5)):
        print(certificate.prediction, certificate.radius, certificate.norm)

Certification runs exactly as ``certkit certify`` does (the same sampler, certifiers, engines and
noise streams): the noise of image ``index`` comes from the seeded streams of that index, so
``index=k`` with the same seed and settings gives the numbers of row ``k`` of a ``certkit
certify`` results file. Without ``index``, images are numbered 0, 1, ... in the order given.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from certkit import plugins
from certkit.config_schema import DEFAULT_RADII
from certkit.engines import TorchEngine, resolve_device
from certkit.errors import CertkitError
from certkit.interfaces import Certificate, CertifySettings, InputSpec, Prediction, Smoother
from certkit.models import LoadedClassifier, load_classifier
from certkit.normalize import Normalize
from certkit.sampling import MonteCarloSampler
from certkit.smoothers import build_smoother
from certkit.specs import resolve_input_spec

#: How far outside [0, 1] an input may stray (float rounding of a conversion) before it is refused.
_RANGE_SLACK = 1e-4


class _WithSpec(nn.Module):
    """Gives a plain module an input spec (and, if asked, normalization as its first step)
    without changing the caller's module."""

    def __init__(self, model: nn.Module, spec: InputSpec, normalize: bool) -> None:
        super().__init__()
        self.input_spec = spec
        self.normalize = Normalize(spec.mean, spec.std) if normalize else nn.Identity()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalize(images))


@dataclass(frozen=True)
class _Run:
    certifier: Any
    settings: CertifySettings


class SmoothedClassifier:
    """The smoothed classifier g(x) = argmax_c P(f(x + e) = c) of a base classifier f.

    ``model`` is any ``torch.nn.Module`` mapping [0, 1] images ``[B, C, H, W]`` to logits, or a
    :class:`certkit.LoadedClassifier`. Its input spec comes from ``spec`` (an
    :class:`certkit.InputSpec`, a preset name such as ``"cifar10"``, or a spec file) or from the
    module's own ``input_spec``. certkit passes [0, 1] images; a module that expects normalized
    inputs gets the spec's mean/std applied first with ``normalize=True``. ``smoother`` is a
    registered smoother name (with ``smoother_options``) or a smoother object; ``sigma`` is its
    noise level. ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``), ``precision`` (``fp32``,
    ``bf16``, ``fp16``), ``seed`` and ``batch`` are the defaults of every call.
    """

    def __init__(
        self,
        model: nn.Module | LoadedClassifier,
        sigma: float | None = None,
        smoother: str | Smoother = "gaussian",
        *,
        spec: InputSpec | str | None = None,
        normalize: bool = False,
        smoother_options: Mapping[str, Any] | None = None,
        device: str = "auto",
        precision: str = "fp32",
        seed: int = 0,
        batch: int = 1000,
    ) -> None:
        module = model.model if isinstance(model, LoadedClassifier) else model
        if not isinstance(module, nn.Module):
            raise CertkitError(f"model must be a torch.nn.Module or a certkit.LoadedClassifier, got {type(model).__name__}.", "Pass the module itself.")
        given = resolve_input_spec(spec)
        attached = getattr(module, "input_spec", None)
        if given is None and not isinstance(attached, InputSpec):
            raise CertkitError("the model has no input spec.", "Pass spec=certkit.InputSpec(...) or a preset name such as spec='cifar10'.")
        self.spec: InputSpec = given or attached
        if normalize or given is not None:
            module = _WithSpec(module, self.spec, normalize)
        sigma = sigma if sigma is not None else (self.spec.sigma if isinstance(smoother, str) else smoother.sigma)
        if sigma is None:
            raise CertkitError("no sigma was given and the model records none.", "Pass sigma=0.25 (or the noise level to certify at).")
        if smoother_options and not isinstance(smoother, str):
            raise CertkitError("smoother_options apply to a smoother given by name.", "Build the smoother object with its options instead.")
        self.smoother: Smoother = build_smoother(smoother, sigma, smoother_options) if isinstance(smoother, str) else smoother
        self.seed, self.batch = seed, batch
        self._engine = TorchEngine(module, resolve_device(device), precision)

    @classmethod
    def from_registry(cls, name: str, sigma: float, checkpoint: Path | str | None = None, smoother: str = "gaussian", **kwargs: Any) -> SmoothedClassifier:
        """A registered model (``"vit-mini"``, ``"timm/resnet18"``, ...) with its checkpoint for ``sigma``."""
        spec = kwargs.pop("spec", None)
        options = kwargs.pop("model_options", None)
        return cls(load_classifier(name, sigma, checkpoint, spec=spec, options=options, noise=smoother), sigma, smoother, **kwargs)

    @property
    def device(self) -> torch.device:
        return self._engine.device

    def certify(
        self,
        images: torch.Tensor,
        n0: int = 100,
        n: int = 10_000,
        alpha: float = 0.001,
        *,
        batch: int | None = None,
        certifier: str = "cohen",
        certifier_options: Mapping[str, Any] | None = None,
        radii: Sequence[float] = DEFAULT_RADII,
        seed: int | None = None,
        index: int | Iterable[int] | None = None,
    ) -> Certificate | list[Certificate]:
        """CERTIFY each image (``[C, H, W]`` gives one :class:`certkit.Certificate`, ``[B, C, H, W]``
        a list). With probability at least 1 - alpha, a certificate that does not abstain is
        correct: the smoothed classifier returns ``prediction`` everywhere within ``radius``
        (in ``norm``) of the image."""
        certifier_obj = plugins.get("certifiers", certifier).obj()
        extra = dict(certifier_options or {})
        if getattr(certifier_obj, "uses_radii", False):
            extra["radii"] = list(radii)
        settings = CertifySettings(n0=n0, n=n, alpha=alpha, extra=extra)
        certifier_obj.check(settings)
        return self._run(images, batch, seed, index, lambda sample: certifier_obj.certify(sample, self.smoother, settings), _process_of(certifier_obj, self.smoother, settings))

    def predict(self, images: torch.Tensor, n: int = 1000, alpha: float = 0.001, *, batch: int | None = None, seed: int | None = None, index: int | Iterable[int] | None = None) -> Prediction | list[Prediction]:
        """Cohen's PREDICT: the smoothed classifier's class, or ABSTAIN; with probability at least
        1 - alpha a returned class is g(x)."""
        from certkit.certifiers.cohen import check_predict, predict_process

        check_predict(n, alpha)
        return self._run(images, batch, seed, index, None, lambda: predict_process(n, alpha))

    def _run(self, images: torch.Tensor, batch: int | None, seed: int | None, index: Any, certify_one: Any, make_process: Any) -> Any:
        stacked, single = self._check_images(images)
        indices = _indices(index, len(stacked))
        batch = batch or self.batch
        if batch < 1:
            raise CertkitError(f"batch must be >= 1, got {batch}.", "Pass e.g. batch=1000.")
        sampler = MonteCarloSampler(self._engine, self.smoother, batch, self.seed if seed is None else seed)
        if make_process is not None:
            work = ((idx, image, make_process()) for idx, image in zip(indices, stacked))
            found = {idx: result for idx, result, _ in sampler.run(work)}
            results = [found[idx] for idx in indices]
        else:
            results = [certify_one(sampler.for_image(image, idx)) for idx, image in zip(indices, stacked)]
        return results[0] if single else results

    def _check_images(self, images: Any) -> tuple[torch.Tensor, bool]:
        spec = self.spec
        expected = f"[C, H, W] or [B, C, H, W] = [{spec.channels}, {spec.image_size[0]}, {spec.image_size[1]}] floats in [0, 1]"
        if not isinstance(images, torch.Tensor):
            raise CertkitError(f"images must be a torch.Tensor, got {type(images).__name__}.", f"Pass {expected}.")
        if not images.is_floating_point():
            raise CertkitError(f"images must be floating point in [0, 1], got dtype {images.dtype}.", "Convert with images.float() / 255 for 8-bit pixels.")
        if images.dim() not in (3, 4):
            raise CertkitError(f"images must have 3 or 4 dimensions, got shape {list(images.shape)}.", f"Pass {expected}.")
        single = images.dim() == 3
        stacked = images.unsqueeze(0) if single else images
        if tuple(stacked.shape[1:]) != (spec.channels, *spec.image_size):
            raise CertkitError(f"images of shape {list(stacked.shape[1:])} do not fit the model, which expects {[spec.channels, *spec.image_size]}.", f"Pass {expected}.")
        if stacked.numel() and (float(stacked.min()) < -_RANGE_SLACK or float(stacked.max()) > 1 + _RANGE_SLACK):
            raise CertkitError(
                f"image values lie in [{float(stacked.min()):.3g}, {float(stacked.max()):.3g}], not in [0, 1].",
                "Pass unnormalized pixels in [0, 1]: certkit adds noise there and normalization is the model's first step (normalize=True).",
            )
        return stacked.float(), single


def _process_of(certifier: Any, smoother: Smoother, settings: CertifySettings) -> Any:
    """A factory of the certifier's per-image process, or None for one that only has ``certify``
    (then images go one at a time, as in ``certkit certify``)."""
    make = getattr(certifier, "process", None)
    return None if make is None else (lambda: make(smoother, settings))


def _indices(index: int | Iterable[int] | None, count: int) -> list[int]:
    if index is None:
        return list(range(count))
    indices = [int(index)] if isinstance(index, int) else [int(i) for i in index]
    if len(indices) != count or len(set(indices)) != count or min(indices, default=0) < 0:
        raise CertkitError(f"index must give {count} distinct non-negative numbers, one per image; got {indices[:5]}.", "Pass index=range(len(images)) or the dataset indices of the images.")
    return indices


def load_images(name: str = "fashion-mnist-mini", split: str | None = None, indices: Iterable[int] | None = None, path: Path | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``[B, C, H, W]`` in [0, 1] and labels ``[B]`` of a dataset certkit knows (a
    registered one, a ``datasets`` entry of certkit.yaml, or a folder of class folders)."""
    from certkit.config import load_settings
    from certkit.workflows.resolve import open_dataset, resolve_dataset

    settings, _ = load_settings()
    dataset = open_dataset(resolve_dataset(name, None if path is None else Path(path), split, dict(settings.datasets)))
    chosen = list(range(len(dataset))) if indices is None else list(indices)
    pairs = [dataset[i] for i in chosen]
    if not pairs:
        raise CertkitError("no images were selected.", "Pass indices within the dataset.")
    return torch.stack([image for image, _ in pairs]), torch.tensor([label for _, label in pairs])
