"""``certkit export``: a base classifier as one self-contained, verified ONNX file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from certkit.cli import options as opt
from certkit.config import load_settings
from certkit.export import DEFAULT_OPSET, export_onnx
from certkit.models import load_classifier


def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="The ONNX file to write, e.g. vit-b-sigma0.5.onnx.", show_default=False)],
    model: opt.Model = None,
    sigma: opt.Sigma = None,
    checkpoint: opt.Checkpoint = None,
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset version.")] = DEFAULT_OPSET,
    model_option: opt.ModelOption = [],  # noqa: B006
    spec: opt.Spec = None,
    config_file: opt.ConfigFile = None,
) -> None:
    """Export a model to ONNX (normalization inside, dynamic batch, certkit metadata) and
    verify it against PyTorch; 'certkit certify --onnx FILE' then needs neither plugin nor checkpoint."""
    settings, _ = load_settings(config_file, {"certify.model": model, "certify.sigma": sigma})
    c = settings.certify
    model_config = settings.models.get(c.model)
    loaded = load_classifier(
        c.model, c.sigma, checkpoint, model_config.checkpoints if model_config else None,
        spec=spec or (model_config.spec if model_config else None), options=opt.parse_key_values(model_option, "--model-option", "denoiser=PATH"),
    )
    report = export_onnx(loaded, out, sigma=c.sigma, opset=opset)
    console = Console(soft_wrap=True, markup=False, emoji=False)  # paths are user text: printed literally
    diffs = ", ".join(f"batch {size}: {diff:.2g}" for size, diff in report.max_abs_diff.items())
    console.print(f"exported {report.model} (sigma {report.sigma:g}, checkpoint {loaded.checkpoint.name if loaded.checkpoint else loaded.checkpoint_label}) to {report.path}", highlight=False)
    console.print(f"size {report.size_bytes / 1e6:.1f} MB, opset {report.opset}" + (f", weights in {report.external_data.name} (keep it beside the .onnx file)" if report.external_data else ", one file"), highlight=False)
    console.print(f"verified against PyTorch with onnxruntime {report.provider}: max |logit difference| {diffs}", highlight=False)
