"""Option types shared by several commands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
import yaml

from certkit.errors import CertkitError

ConfigFile = Annotated[Optional[Path], typer.Option("--config", help="YAML config file (overrides ./certkit.yaml).", show_default=False)]
Model = Annotated[Optional[str], typer.Option("--model", "-m", help="Registered model name (see 'certkit plugins').", show_default=False)]
Sigma = Annotated[Optional[float], typer.Option("--sigma", help="Noise level in [0,1] pixel units.", show_default=False)]
Data = Annotated[Optional[str], typer.Option("--data", help="Dataset name (config key or registered) or a folder of class folders.", show_default=False)]
DataPath = Annotated[Optional[Path], typer.Option("--data-path", help="Directory of the dataset (overrides datasets.<name>.path).", show_default=False)]
Split = Annotated[Optional[str], typer.Option("--split", help="Dataset split (default: the dataset's evaluation split).", show_default=False)]
Checkpoint = Annotated[Optional[Path], typer.Option("--checkpoint", help="Weights file (default: the model's checkpoint for --sigma).", show_default=False)]
N = Annotated[Optional[int], typer.Option("--n", help="Noisy samples per image.", show_default=False)]
Alpha = Annotated[Optional[float], typer.Option("--alpha", help="Failure probability of each certificate.", show_default=False)]
Batch = Annotated[Optional[int], typer.Option("--batch", help="Noisy samples per forward pass (memory is bounded by it, not by N).", show_default=False)]
Skip = Annotated[Optional[int], typer.Option("--skip", help="Use every k-th image.", show_default=False)]
Max = Annotated[Optional[int], typer.Option("--max", help="At most this many images (after --skip).", show_default=False)]
Seed = Annotated[Optional[int], typer.Option("--seed", help="Noise seed; same seed, same results file.", show_default=False)]
Out = Annotated[Optional[Path], typer.Option("--out", "-o", help="Results TSV (default: <output_dir>/<model>_sigma<s>_<data>_<certifier>.tsv).", show_default=False)]
Device = Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda or cuda:N.", show_default=False)]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing results file instead of resuming it.")]
Smoother = Annotated[Optional[str], typer.Option("--smoother", help="Registered smoothing distribution, e.g. gaussian (L2) or uniform (L1); see 'certkit plugins'.", show_default=False)]
SmootherOption = Annotated[list[str], typer.Option("--smoother-option", "-S", help="Smoother option as key=value (repeatable); part of the results file's identity and name.")]
ModelOption = Annotated[list[str], typer.Option("--model-option", "-M", help="Model factory option as key=value (repeatable), e.g. -M denoiser=PATH for a composed model.")]
Spec = Annotated[Optional[str], typer.Option("--spec", help="Input spec of a weights file that carries none (a foreign state dict): imagenet, cifar10, mnist-like, fashion-mnist, or a .json/.yaml file.", show_default=False)]


def parse_key_values(pairs: list[str], flag: str = "--option", example: str = "mask_ratio=0.6") -> dict:
    """``key=value`` flags as a dict; values are read as YAML scalars (numbers, booleans)."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CertkitError(f"{flag} '{pair}' is not key=value.", f"Pass e.g. {flag} {example}.")
        options[key.replace("-", "_")] = yaml.safe_load(value)
    return options
