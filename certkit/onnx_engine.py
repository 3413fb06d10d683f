"""Forward passes in ONNX Runtime, from a self-contained file that ``certkit export`` wrote.

The file carries everything a certification run needs in its metadata (model name, input
spec, sigma, class names, checkpoint hash), so running it needs neither the plugin that
defined the model nor its checkpoint: only onnxruntime. The ``onnx`` package is used for
``onnx.checker`` when it is installed, and is not needed otherwise.

Providers: CUDA when the requested device is CUDA and the CUDA execution provider loads,
otherwise the CPU. On CUDA, noisy batches are bound to the session by pointer (IO binding)
and logits land in a torch tensor on the device, so nothing is copied to the host per batch.
If the CUDA provider does not load, the engine says so and runs on the CPU; its ``device``
is then ``cpu``, so noise is generated on the CPU too (never a per-batch device-to-host copy).

On a CPU with several threads, a batch is cut into two slices per thread, and a pool of that
many threads runs the slices, each slice on one thread (``session.run`` releases the GIL and may
be called from several threads at once), instead of ONNX Runtime splitting every operator over
its threads: certification models are small per image and their operators too short to share
well. Two slices per thread rather than one let a thread that got less of the CPU (another
process on its core) take fewer slices, where one slice each would make every batch wait for the
slowest thread. For the shipped vit-mini at batch 32 on 2 cores: 1.30x the samples/s of two
intra-op threads on an idle machine, 1.73x with one busy process beside it (docs/engines.md).
Every row is classified alone either way, so the votes are the same.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from certkit.errors import CheckpointError
from certkit.interfaces import InputSpec

#: ONNX metadata_props keys that certkit writes on export and reads back here.
META_MODEL = "certkit_model"
META_INPUT_SPEC = "certkit_input_spec"
META_SIGMA = "certkit_sigma"
META_CHECKPOINT_SHA256 = "certkit_checkpoint_sha256"
META_CHECKPOINT = "certkit_checkpoint"
META_CLASS_NAMES = "certkit_class_names"
META_VERSION = "certkit_version"
REQUIRED_META = (META_MODEL, META_INPUT_SPEC, META_SIGMA, META_CHECKPOINT_SHA256)

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"

_EXPORT = "'certkit export --model NAME --sigma S -o FILE.onnx'"
_EXPORT_FIX = f"Export the model with {_EXPORT}."
_REEXPORT_FIX = f"Re-export it with {_EXPORT}."
_MISSING_FIX = f"Check the path, or export one with {_EXPORT}."


@dataclass(frozen=True)
class OnnxModelInfo:
    """What an exported file says about itself (its certkit metadata and its signature).

    ``name``, ``spec``, ``checkpoint`` and ``checkpoint_sha256`` mirror
    :class:`certkit.models.LoadedModel`, so results metadata is written the same way for
    both engines; ``checkpoint_sha256`` is the hash of the weights file it was exported from.
    """

    path: Path
    name: str
    spec: InputSpec
    sigma: float | None
    checkpoint_sha256: str
    checkpoint_name: str
    certkit_version: str
    input_name: str
    output_name: str

    @property
    def checkpoint(self) -> Path:
        return self.path

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.spec.class_names


def onnxruntime():
    """Import onnxruntime with its own logging quiet.

    Severity 4 (fatal only) on the default logger, not 3: a CUDA provider that fails to load
    (a machine without a GPU or without CUDA libraries) is logged at *error* level, and for
    certkit that is not an error: we fall back to the CPU provider and say so ourselves.
    Real failures still surface as Python exceptions.
    """
    import onnxruntime as ort

    ort.set_default_logger_severity(4)
    return ort


def make_session(path: Path, providers: list, threads: int | None = None, optimize: bool = True):
    ort = onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=providers)


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]


def _open_for_reading(path: Path):
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"ONNX file {path} does not exist.", _MISSING_FIX)
    try:
        return path, make_session(path, [CPU_PROVIDER], threads=1, optimize=False)
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise CheckpointError(f"{path} is not a readable ONNX model ({_first_line(error)}).", _REEXPORT_FIX) from None


def info_from_session(path: Path, session) -> OnnxModelInfo:
    """Parse certkit's metadata from an open onnxruntime session."""
    meta = session.get_modelmeta().custom_metadata_map
    missing = [key for key in REQUIRED_META if key not in meta]
    if missing:
        raise CheckpointError(f"{path} has no certkit metadata (missing {', '.join(missing)}), so certkit cannot tell its input spec and sigma.", _EXPORT_FIX)
    try:
        spec = InputSpec.from_dict(json.loads(meta[META_INPUT_SPEC]))
        sigma = None if meta[META_SIGMA] in ("", "None", "null") else float(meta[META_SIGMA])
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{path} has malformed certkit metadata ({type(error).__name__}: {_first_line(error)}).", _REEXPORT_FIX) from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    return OnnxModelInfo(
        path=path,
        name=meta[META_MODEL],
        spec=spec,
        sigma=sigma,
        checkpoint_sha256=meta[META_CHECKPOINT_SHA256],
        checkpoint_name=meta.get(META_CHECKPOINT, ""),
        certkit_version=meta.get(META_VERSION, ""),
        input_name=inputs[0].name if inputs else "",
        output_name=outputs[0].name if outputs else "",
    )


def read_onnx_metadata(path: Path) -> OnnxModelInfo:
    """certkit's metadata of an exported file; raises CheckpointError when it has none."""
    path, session = _open_for_reading(path)
    return info_from_session(path, session)


def check_onnx_file(path: Path) -> OnnxModelInfo:
    """Check that ``path`` is an ONNX model certkit can certify, and return its metadata.

    It must exist, parse, pass ``onnx.checker`` (when the onnx package is installed), carry
    certkit metadata, and map one float32 input ``[batch, C, H, W]`` (dynamic batch, C/H/W
    as its input spec says) to one float32 output ``[batch, num_classes]``. Every failure
    is a one-line :class:`CheckpointError`.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"ONNX file {path} does not exist.", _MISSING_FIX)
    try:
        import onnx
    except ImportError:
        onnx = None
    if onnx is not None:
        try:
            onnx.checker.check_model(str(path))  # by path: also handles external-data files
        except Exception as error:  # noqa: BLE001 - protobuf and checker errors alike
            raise CheckpointError(f"{path} is not a valid ONNX model ({_first_line(error)}).", _REEXPORT_FIX) from None
    path, session = _open_for_reading(path)
    info = info_from_session(path, session)
    _check_signature(path, session, info.spec)
    return info


def _check_signature(path: Path, session, spec: InputSpec) -> None:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    expected_in = [spec.channels, *spec.image_size]
    if len(inputs) != 1 or inputs[0].type != "tensor(float)" or len(inputs[0].shape) != 4 or list(inputs[0].shape[1:]) != expected_in:
        got = ", ".join(f"{i.name} {i.type} {i.shape}" for i in inputs) or "none"
        raise CheckpointError(f"{path} must take one float32 input [batch, {', '.join(map(str, expected_in))}] (its input spec), but takes: {got}.", _REEXPORT_FIX)
    if isinstance(inputs[0].shape[0], int):
        raise CheckpointError(f"{path} has a fixed batch size of {inputs[0].shape[0]}; certification needs a dynamic batch axis.", _REEXPORT_FIX)
    if len(outputs) != 1 or outputs[0].type != "tensor(float)" or len(outputs[0].shape) != 2 or outputs[0].shape[1] != spec.num_classes:
        got = ", ".join(f"{o.name} {o.type} {o.shape}" for o in outputs) or "none"
        raise CheckpointError(f"{path} must give one float32 output [batch, {spec.num_classes}] (logits), but gives: {got}.", _REEXPORT_FIX)


class OnnxEngine:
    """onnxruntime forward passes of an exported certkit model; argmax in torch on ``device``."""

    name = "onnx"

    def __init__(self, path: Path, device: torch.device) -> None:
        from certkit.checkpoints import sha256_of

        self.path = Path(path).expanduser()
        wants_cuda = device.type == "cuda"
        if wants_cuda:
            providers = [(CUDA_PROVIDER, {"device_id": device.index or 0}), CPU_PROVIDER]
            self.session = make_session(self.path, providers)
        else:
            # ORT does not read OMP_NUM_THREADS; follow torch's thread count so both engines share
            # the CPU alike: that many slices of each batch at once, one thread each.
            self.session = make_session(self.path, [CPU_PROVIDER], threads=1)
        # None when CUDA was asked for: on a fallback to the CPU, ORT keeps its own threads.
        self.threads = None if wants_cuda else max(1, torch.get_num_threads())
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="certkit-onnx") if self.threads and self.threads > 1 else None
        self.provider = self.session.get_providers()[0]
        self.io_binding = self.provider == CUDA_PROVIDER
        self.device = torch.device("cuda", device.index or 0) if self.io_binding else torch.device("cpu")
        self.note = None
        if wants_cuda and not self.io_binding:
            self.note = f"warning: onnxruntime's CUDA execution provider did not load; running {self.path.name} on the CPU ({self.provider})"
        self.info = info_from_session(self.path, self.session)
        self.num_classes = self.info.spec.num_classes
        self.sha256 = sha256_of(self.path)

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """Argmax class of each image in ``images`` ([B, C, H, W], [0,1] space) -> ``[B]`` on ``device``."""
        if self.io_binding:
            return self._classify_cuda(images)
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()  # no copy for CPU float32 input
        if self._pool is None or len(array) < 4 * self.threads:
            return torch.from_numpy(self._logits(array)).argmax(dim=1)
        slices = np.array_split(array, 2 * self.threads)  # views of consecutive rows: contiguous, no copy
        return torch.from_numpy(np.concatenate(list(self._pool.map(self._logits, slices)))).argmax(dim=1)

    def _logits(self, array: np.ndarray) -> np.ndarray:
        (logits,) = self.session.run([self.info.output_name], {self.info.input_name: array})
        return logits

    def _classify_cuda(self, images: torch.Tensor) -> torch.Tensor:
        """IO binding: ORT reads the noisy batch and writes logits in place, on the GPU."""
        images = images.detach().to(self.device, torch.float32).contiguous()
        logits = torch.empty((images.shape[0], self.num_classes), dtype=torch.float32, device=self.device)
        binding = self.session.io_binding()
        index = self.device.index or 0
        binding.bind_input(self.info.input_name, "cuda", index, np.float32, tuple(images.shape), images.data_ptr())
        binding.bind_output(self.info.output_name, "cuda", index, np.float32, tuple(logits.shape), logits.data_ptr())
        # The noise was written on torch's stream and ORT reads on its own: wait for the writes.
        # ORT synchronizes its stream before run_with_iobinding returns, so logits are ready.
        torch.cuda.current_stream(self.device).synchronize()
        self.session.run_with_iobinding(binding)
        return logits.argmax(dim=1)

    def describe(self) -> dict[str, Any]:
        ort = onnxruntime()
        return {
            "name": self.name,
            "device": str(self.device),
            "provider": self.provider,
            "precision": "fp32",
            "io_binding": self.io_binding,
            **({} if self.threads is None else {"cpu_threads": self.threads}),  # slices of a batch run at once, one ORT thread each
            "onnx_file": str(self.path),
            "onnx_sha256": self.sha256,
            "onnxruntime": ort.__version__,
        }
