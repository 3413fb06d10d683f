"""Exporting a base classifier to one self-contained ONNX file, verified against PyTorch.

The graph takes [0,1] images ``[batch, C, H, W]`` (float32, dynamic batch) and returns logits
``[batch, num_classes]``; normalization is inside it, as in the PyTorch model. The file's
``metadata_props`` carry what certification needs (see :mod:`certkit.onnx_engine`), so
``certkit certify --onnx FILE`` runs it with neither the plugin nor the checkpoint installed.

Size: protobuf cannot serialize a message over 2 GiB. A model whose parameters take more than
:data:`SINGLE_FILE_LIMIT` bytes is saved with its weights in one external-data file beside
it, ``<FILE>.onnx.data``; keep the two together (onnxruntime finds the data file by its
relative name). The report says when that happened. ViT-B (87M parameters, ~350 MB) and
ViT-L (304M, ~1.2 GB) fit in one file.

Exporter: torch's TorchScript-based exporter (``dynamo=False``): it needs nothing beyond
torch, and gives a single file with a dynamic batch axis. The torch.export-based exporter
(torch's default since 2.9) needs the ``onnxscript`` package, which certkit does not depend on.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from certkit import __version__
from certkit.errors import CertkitError
from certkit.fileio import atomic_path
from certkit.models import LoadedModel
from certkit.onnx_engine import (
    CPU_PROVIDER,
    META_CHECKPOINT,
    META_CHECKPOINT_SHA256,
    META_CLASS_NAMES,
    META_INPUT_SPEC,
    META_MODEL,
    META_SIGMA,
    META_VERSION,
    make_session,
)

DEFAULT_OPSET = 17
#: Parameter bytes above which weights go to an external-data file (protobuf's limit is 2 GiB).
SINGLE_FILE_LIMIT = 1_900_000_000
VERIFY_BATCH_SIZES = (1, 7)
TOLERANCE = 1e-4
INPUT_NAME = "images"
OUTPUT_NAME = "logits"


@dataclass(frozen=True)
class ExportReport:
    """What ``export_onnx`` wrote and how closely it matches PyTorch."""

    path: Path
    model: str
    sigma: float | None
    opset: int
    size_bytes: int  # the .onnx file plus its external data, if any
    max_abs_diff: dict[int, float]  # batch size -> max |logit difference| against PyTorch
    provider: str  # the onnxruntime provider that ran the verification
    external_data: Path | None = None


def export_onnx(
    loaded: LoadedModel,
    path: Path,
    sigma: float | None = None,
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
    batch_sizes: tuple[int, ...] = VERIFY_BATCH_SIZES,
    tolerance: float = TOLERANCE,
) -> ExportReport:
    """Export ``loaded`` (moved to the CPU, float32) to ``path``, atomically.

    ``sigma`` (default: the model's input spec) is recorded as the sigma to certify at.
    With ``verify``, onnxruntime (CPU) and PyTorch classify the same random noisy images at
    each of ``batch_sizes``; a max absolute logit difference above ``tolerance`` raises
    :class:`CertkitError` and leaves no file behind.
    """
    try:
        import onnx
    except ImportError:
        raise CertkitError("exporting to ONNX needs the 'onnx' package, which is not installed.", "pip install onnx") from None
    path = Path(path).expanduser()
    sigma = loaded.spec.sigma if sigma is None else float(sigma)
    model = loaded.model.eval().to("cpu", torch.float32)
    external = parameter_bytes(model) > SINGLE_FILE_LIMIT
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.export-") as work:
        raw = Path(work) / "raw.onnx"  # a private folder: the exporter may write data files beside it
        _trace(model, loaded.spec, raw, opset)
        proto = onnx.load(str(raw))
    _add_metadata(proto, loaded, sigma)
    data_path = path.with_name(path.name + ".data") if external else None
    diffs: dict[int, float] = {}
    try:
        with atomic_path(path) as tmp:
            if data_path is not None:
                onnx.save_model(proto, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True, location=data_path.name)
            else:
                onnx.save_model(proto, str(tmp))
            del proto
            try:
                onnx.checker.check_model(str(tmp))
            except onnx.checker.ValidationError as error:
                raise CertkitError(f"the exported ONNX graph of '{loaded.name}' fails onnx.checker ({str(error).splitlines()[0][:200]}).", "Report this as a certkit bug; no file was written.") from None
            if verify:
                diffs = verify_against_torch(model, tmp, loaded.spec, sigma, batch_sizes)
                worst = max(diffs, key=diffs.get)
                if not diffs[worst] <= tolerance:  # also catches NaN
                    raise CertkitError(
                        f"the ONNX export of '{loaded.name}' does not match PyTorch: max |logit difference| {diffs[worst]:.3g} at batch size {worst} (tolerance {tolerance:g}).",
                        "No file was written; report this as a certkit bug with the model name.",
                    )
    except BaseException:
        if data_path is not None and data_path.exists():
            data_path.unlink()
        raise
    size = path.stat().st_size + (data_path.stat().st_size if data_path is not None else 0)
    return ExportReport(path, loaded.name, sigma, opset, size, diffs, CPU_PROVIDER, data_path)


def parameter_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def _trace(model: torch.nn.Module, spec, out: Path, opset: int) -> None:
    example = torch.rand(2, spec.channels, *spec.image_size)  # batch 2, so no size-1 special case is traced
    with warnings.catch_warnings():
        # The TorchScript exporter warns that it is the legacy path, and timm's shape asserts
        # warn that they become constants: both are expected (image size is fixed by the spec).
        warnings.simplefilter("ignore")
        with torch.no_grad():
            torch.onnx.export(
                model,
                (example,),
                str(out),
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                do_constant_folding=True,
            )


def _add_metadata(proto, loaded: LoadedModel, sigma: float | None) -> None:
    spec = loaded.spec
    values = {
        META_MODEL: loaded.name,
        META_INPUT_SPEC: json.dumps(spec.to_dict()),
        META_SIGMA: "" if sigma is None else repr(float(sigma)),
        META_CHECKPOINT_SHA256: loaded.checkpoint_sha256,
        META_CHECKPOINT: Path(loaded.checkpoint).name if loaded.checkpoint is not None else loaded.checkpoint_label,
        META_CLASS_NAMES: json.dumps(list(spec.class_names)),
        META_VERSION: __version__,
    }
    del proto.metadata_props[:]
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    size = "x".join(str(s) for s in spec.image_size)
    proto.doc_string = (
        f"certkit export of '{loaded.name}' (sigma {sigma}): input '{INPUT_NAME}' float32 [batch, {spec.channels}, {size}] "
        f"in [0,1] pixel space (normalization is inside the graph), output '{OUTPUT_NAME}' float32 [batch, {spec.num_classes}]."
    )


def verify_against_torch(model: torch.nn.Module, onnx_path: Path, spec, sigma: float | None, batch_sizes: tuple[int, ...]) -> dict[int, float]:
    """Max |logit difference| between PyTorch and onnxruntime (CPU) per batch size, on random
    [0,1] images plus Gaussian noise at ``sigma``: the inputs certification feeds the model."""
    session = make_session(onnx_path, [CPU_PROVIDER], threads=torch.get_num_threads())
    generator = torch.Generator().manual_seed(0)
    diffs = {}
    for size in batch_sizes:
        images = torch.rand((size, spec.channels, *spec.image_size), generator=generator)
        if sigma:
            images = images + sigma * torch.randn(images.shape, generator=generator)
        with torch.inference_mode():
            expected = model(images).float()
        (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})
        if tuple(got.shape) != tuple(expected.shape):
            raise CertkitError(f"the ONNX export gives logits of shape {list(got.shape)} at batch size {size}, PyTorch {list(expected.shape)}.", "Report this as a certkit bug; no file was written.")
        diffs[size] = float((torch.from_numpy(got) - expected).abs().max())
    return diffs
