"""Where base-classifier forward passes run. An engine maps a noisy batch to class indices
on its own device; everything around it (noise, counting) stays on that device too.

Every engine has ``name``, ``device``, ``num_classes``, ``classify(images) -> LongTensor[B]``
(on ``device``) and ``describe() -> dict`` (what the results metadata records). Two exist:
:class:`TorchEngine` here and :class:`certkit.onnx_engine.OnnxEngine`.

Precision: a certificate is a statement about one fixed base classifier f. An fp16/bf16
forward pass computes a slightly different function than the fp32 model that gets exported,
published or deployed, and for a noisy sample near a decision boundary the argmax can flip.
The certificate is then valid for the reduced-precision f, not for the fp32 model, and
torch and ONNX results stop agreeing. So ``fp32`` is the default; ``bf16``/``fp16`` are
opt-in speed-ups, recorded in the results metadata (``engine_details.precision``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any, Protocol

import torch
from torch import nn

from certkit.errors import CertkitError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

#: Largest batch :func:`auto_batch_size` tries when asked to fill memory.
AUTO_BATCH_LIMIT = 4096

#: The batch when none is asked for: on CUDA, the largest up to this that fits (auto_batch_size).
DEFAULT_CUDA_BATCH = 1000
#: On a CPU: measured fastest (docs/engines.md, "Batch size on a CPU"). Bigger batches are not
#: faster on a CPU: each op's output outgrows the core's cache, and its fresh pages fault in.
DEFAULT_CPU_BATCH = 32


class Engine(Protocol):
    """What :class:`certkit.sampling.MonteCarloSampler` needs from an engine."""

    name: str
    device: torch.device
    num_classes: int

    def classify(self, images: torch.Tensor) -> torch.Tensor: ...
    def describe(self) -> dict[str, Any]: ...


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when it is usable, else the CPU; never assume CUDA exists."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CertkitError(f"device '{name}' was asked for but CUDA is not available here.", "Use --device cpu or --device auto.")
    return device


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise CertkitError(f"unknown precision '{precision}'.", f"Use one of: {', '.join(PRECISIONS)} (fp32 keeps certificates exact to the fp32 model).")


class TorchEngine:
    """PyTorch forward passes in inference mode, optionally under autocast, channels-last or
    ``torch.compile``. Logits are compared in float32 whatever the autocast dtype."""

    name = "torch"

    def __init__(self, model: nn.Module, device: torch.device, precision: str = "fp32", channels_last: bool = False, compile: bool = False) -> None:
        check_precision(precision)
        self.device = device
        self.precision = precision
        self.channels_last = channels_last
        self.compiled = compile
        self.num_classes = int(model.input_spec.num_classes)
        self.model = model.eval().to(device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # compile wraps, it does not replace: the module above keeps its attributes.
        self._forward: Callable[[torch.Tensor], torch.Tensor] = torch.compile(self.model) if compile else self.model
        dtype = PRECISIONS[precision]
        self._autocast = (lambda: torch.autocast(device_type=device.type, dtype=dtype)) if dtype is not None else nullcontext

    @torch.inference_mode()
    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """Argmax class of each image in ``images`` ([B, C, H, W], [0,1] space) -> ``[B]``."""
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            logits = self._forward(images)
        return logits.float().argmax(dim=1)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "device": str(self.device), "precision": self.precision, "channels_last": self.channels_last, "compile": self.compiled}


def default_batch_size(engine: Engine) -> int:
    """The batch size when the user asks for none: :data:`DEFAULT_CPU_BATCH` on a CPU,
    :data:`DEFAULT_CUDA_BATCH` elsewhere. Results do not depend on it (see :mod:`certkit.sampling`)."""
    return DEFAULT_CPU_BATCH if engine.device.type == "cpu" else DEFAULT_CUDA_BATCH


def _is_out_of_memory(error: Exception) -> bool:
    # torch raises OutOfMemoryError; onnxruntime a RuntimeException whose text names the allocation.
    text = str(error).lower()
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in text or "failed to allocate" in text


def auto_batch_size(engine: Engine, sample_shape: tuple[int, ...], requested: int | None = None, limit: int = AUTO_BATCH_LIMIT, fill: float = 0.8) -> int:
    """The batch size to run ``engine`` at: the largest that fits the device's memory.

    On the CPU there is nothing to probe: ``requested`` (or ``limit``) comes back unchanged.
    On CUDA, batches of zeros of shape ``[b, *sample_shape]`` are classified at doubling
    sizes up to ``requested`` (a cap) or, when None, up to ``limit``; probing stops at the
    first out-of-memory error or when the device's used memory passes ``fill`` of its total,
    and the last size that ran is returned. Results do not depend on the batch size (see
    :mod:`certkit.sampling`), so this only trades memory for speed.
    """
    cap = requested if requested is not None else limit
    if engine.device.type != "cuda":
        return cap
    total = torch.cuda.get_device_properties(engine.device).total_memory
    good = 0
    size = min(32, cap)
    while True:
        try:
            engine.classify(torch.zeros((size, *sample_shape), device=engine.device))
            torch.cuda.synchronize(engine.device)
        except Exception as error:  # noqa: BLE001 - anything but OOM is re-raised below
            if not _is_out_of_memory(error):
                raise
            torch.cuda.empty_cache()
            break
        good = size
        free, _ = torch.cuda.mem_get_info(engine.device)
        if size >= cap or (total - free) > fill * total:
            break
        size = min(size * 2, cap)
    if good == 0:
        raise CertkitError(f"not even a batch of {min(32, cap)} samples fits in {engine.device}'s memory.", "Free GPU memory, or use a smaller model or --device cpu.")
    return good
