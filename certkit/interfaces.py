"""The contracts between certkit's core and its plugins.

Everything here is small on purpose: a plugin implements one of these protocols and
registers it under a name (see :mod:`certkit.hookspecs`). Images are always float tensors
in [0, 1] pixel space, ``[B, C, H, W]``; noise is added in that space and normalization is
the model's first step, so certified radii are in [0,1]-pixel L2 units.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from certkit.errors import DataError

#: The class index a smoothed classifier reports when it declines to decide.
ABSTAIN = -1

#: The norms a certified radius can be measured in. A smoother declares one; results of
#: different norms never share a table column, a curve axis or an envelope.
NORMS = ("l2", "l1", "linf")


@dataclass(frozen=True)
class InputSpec:
    """What a base classifier expects, carried with the model and its checkpoints.

    ``mean``/``std`` are applied *inside* the model; callers pass [0, 1] images.
    ``sigma`` is the noise level the model was trained for and ``noise`` the smoother it was
    trained for (``"gaussian"``, ``"uniform"``, ...); None when unknown.
    """

    image_size: tuple[int, int]
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    class_names: tuple[str, ...] = ()
    sigma: float | None = None
    noise: str | None = None

    def __post_init__(self) -> None:
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"mean/std need {self.channels} values, got {self.mean}, {self.std}")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputSpec:
        return cls(
            image_size=tuple(data["image_size"]),  # type: ignore[arg-type]
            channels=int(data["channels"]),
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
            num_classes=int(data["num_classes"]),
            class_names=tuple(data.get("class_names") or ()),
            sigma=None if data.get("sigma") is None else float(data["sigma"]),
            noise=None if data.get("noise") is None else str(data["noise"]),
        )

    def check_data(self, channels: int, image_size: tuple[int, int], num_classes: int, source: str) -> None:
        """Refuse data that does not fit the model, instead of silently resizing it."""
        if channels != self.channels or tuple(image_size) != tuple(self.image_size):
            raise DataError(
                f"{source} has {channels}x{image_size[0]}x{image_size[1]} images but the model "
                f"expects {self.channels}x{self.image_size[0]}x{self.image_size[1]}.",
                "Use a dataset that matches the model's input spec, or a model trained for this data.",
            )
        if num_classes > self.num_classes:
            raise DataError(
                f"{source} has {num_classes} classes but the model predicts only {self.num_classes}.",
                "Use a model trained on this dataset.",
            )


@runtime_checkable
class BaseClassifier(Protocol):
    """A model f: [0,1] images ``[B, C, H, W]`` -> logits ``[B, num_classes]``.

    Any ``torch.nn.Module`` with an ``input_spec`` attribute qualifies.
    """

    input_spec: InputSpec

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


class Smoother(Protocol):
    """A smoothing distribution: how noise is drawn and what radius a bound certifies.

    ``norm`` (one of :data:`NORMS`) is the norm in which ``radius`` measures the certificate;
    certkit refuses a smoother without one rather than label its radii as L2. ``sigma`` is the
    per-pixel noise level the user asked for (``--sigma``); how it maps to the distribution's own
    parameter is the smoother's to document. A smoother with options (``-S key=value``) may
    define ``options() -> dict``, recorded with the results: two runs with different options
    never share a results file.
    """

    name: str
    sigma: float
    norm: str

    def perturb(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Return noisy copies of ``images`` ([B, C, H, W], [0,1] space, no clipping)."""
        ...

    def radius(self, p_lower: float) -> float:
        """The certified radius (in ``norm``) for a lower bound ``p_lower`` > 1/2 on the
        top-class probability; it must not decrease as ``p_lower`` grows."""
        ...


#: ``sample(stage, num)`` returns class counts (``np.int64``, length num_classes) of the base
#: classifier over ``num`` fresh noisy copies of one image. ``stage`` names an independent noise
#: stream ("selection", "estimation", ...), so samples of one stage never reuse another's noise;
#: asking for a stage again continues its stream with fresh samples.
CountSampler = Callable[[str, int], np.ndarray]

#: A certifier's work on one image, as a generator: it yields ``(stage, num)`` requests, is sent
#: the class counts of each (as ``sample`` would return them) and returns its result (a
#: :class:`Certificate`). Written this way, the sampler can pack the requests of many images
#: into one batch; :func:`certkit.sampling.drive` runs one against a ``CountSampler``.
CertifyProcess = Generator[tuple[str, int], np.ndarray, Any]


@dataclass(frozen=True)
class Certificate:
    """What a certifier concludes about one image.

    ``prediction`` is ABSTAIN or a class; ``radius`` is 0.0 when abstaining. ``samples`` counts
    every noisy forward pass spent on the image (all stages); ``count`` is how many of the
    ``n`` estimation samples hit the candidate class, ``selection_count`` its hits among the
    selection samples. ``norm`` is the norm ``radius`` is measured in (the smoother's).
    """

    prediction: int
    radius: float
    p_lower: float
    samples: int
    n: int
    count: int
    selection_count: int
    norm: str = "l2"


@dataclass(frozen=True)
class Prediction:
    """Cohen's PREDICT outcome: a class or ABSTAIN, with the test behind it."""

    prediction: int
    samples: int
    count_top: int
    count_second: int
    p_value: float


@dataclass(frozen=True)
class CertifySettings:
    """The Monte Carlo budget and confidence a certifier works with."""

    n0: int
    n: int
    alpha: float
    extra: Mapping[str, Any] = field(default_factory=dict)


class Certifier(Protocol):
    """Turns noisy-sample counts of one image into a certificate.

    A certifier never sees the model: it asks ``sample`` for counts, which keeps it testable
    with base classifiers whose probabilities are known, and lets engines batch across images.
    """

    name: str

    def check(self, settings: CertifySettings) -> None:
        """Raise :class:`certkit.errors.CertkitError` when ``settings`` can never certify."""
        ...

    def certify(self, sample: CountSampler, smoother: Smoother, settings: CertifySettings) -> Certificate: ...

    # Optional: ``process(smoother, settings) -> CertifyProcess``. A certifier that has it gets
    # batches packed across images (much faster when images stop at different times); one that
    # has only ``certify`` is run an image at a time.


@dataclass(frozen=True)
class CorruptedBatch:
    """A corrupted batch: the pixels, plus anything the model needs to see the corruption
    (e.g. a patch mask applied after patch embedding)."""

    images: torch.Tensor
    extras: Mapping[str, torch.Tensor] = field(default_factory=dict)


class Corruption(Protocol):
    """A training-time corruption (noise, masking, ...)."""

    name: str

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> CorruptedBatch: ...


@dataclass
class LossOutput:
    """A training objective's result: the loss to minimise and numbers worth logging."""

    loss: torch.Tensor
    logs: dict[str, float] = field(default_factory=dict)


class PretrainObjective(Protocol):
    """A pretraining objective: how a model learns from corrupted unlabeled images."""

    name: str

    def __call__(self, model: torch.nn.Module, images: torch.Tensor, generator: torch.Generator | None = None) -> LossOutput: ...


class ClassificationObjective(Protocol):
    """A supervised objective: how a base classifier learns from labelled images.

    ``images`` are clean [0, 1] images ``[B, C, H, W]``; the objective adds its own noise (drawn
    from ``generator``, on the images' device), so one objective can train for Gaussian
    smoothing, another for a different corruption. ``labels`` are int64 ``[B]``. Registered
    under the kind ``objectives`` with the detail ``supervised=True``; ``certkit finetune
    --objective NAME`` builds it as ``factory(sigma=..., **options)``.
    """

    name: str

    def __call__(self, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> LossOutput: ...
