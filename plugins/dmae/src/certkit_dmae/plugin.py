"""certkit hook implementations of the dmae plugin (entry point ``dmae`` in group ``certkit``)."""

from __future__ import annotations

from pathlib import Path

from certkit import hookimpl

from certkit_dmae import classifiers

WEIGHTS = Path(__file__).parent / "weights"


def _shipped(model: str) -> dict[float, Path]:
    """Checkpoints shipped in the package, one per sigma: ``<model>-sigma<sigma>.safetensors``."""
    found = {}
    for path in sorted(WEIGHTS.glob(f"{model}-sigma*.safetensors")):
        found[float(path.stem.split("-sigma")[-1])] = path
    return found


@hookimpl
def certkit_register_models(register) -> None:
    register("vit-mini", classifiers.vit_mini, description="ViT patch 4, dim 64, 4 blocks, for 28 px images (CPU-sized)", checkpoints=_shipped("vit-mini"))
    register("vit-b", classifiers.vit_base, aliases=("vit-base",), description="ViT-B/16, 224 px (DMAE paper)")
    register("vit-l", classifiers.vit_large, aliases=("vit-large",), description="ViT-L/16, 224 px (DMAE paper)")
