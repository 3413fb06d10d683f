"""certkit hook implementations of the dmae plugin (entry point ``dmae`` in group ``certkit``).

Each hook imports its models, corruption or objective when it is called: certkit loads this
module to list commands (``certkit --help``), which must not import torch or timm.
"""

from __future__ import annotations

from pathlib import Path

from certkit import hookimpl

WEIGHTS = Path(__file__).parent / "weights"
RECIPES = Path(__file__).parent / "recipes"


def _shipped(model: str) -> dict[float | tuple[str, float], Path]:
    """Checkpoints shipped in the package: ``<model>-sigma<sigma>.safetensors`` for Gaussian
    noise, ``<model>-<smoother>-sigma<sigma>.safetensors`` for another smoother's noise."""
    found: dict[float | tuple[str, float], Path] = {}
    for path in sorted(WEIGHTS.glob(f"{model}-*sigma*.safetensors")):
        head, _, sigma = path.stem.rpartition("-sigma")
        noise = head[len(model) + 1 :]
        found[(noise, float(sigma)) if noise else float(sigma)] = path
    return found


@hookimpl
def certkit_register_models(register) -> None:
    from certkit_dmae import classifiers, pretrain_models
    from certkit_dmae.checkpoint_filter import checkpoint_filter_fn

    filters = dict(checkpoint_filter=checkpoint_filter_fn)  # DMAE/MAE/timm checkpoint formats
    register(
        "vit-mini",
        classifiers.vit_mini,
        description="ViT patch 4, dim 64, 4 blocks, for 28 px images (CPU-sized)",
        checkpoints=_shipped("vit-mini"),
        **filters,
    )
    register("vit-b", classifiers.vit_base, aliases=("vit-base",), description="ViT-B/16, 224 px (DMAE paper)", **filters)
    register("vit-l", classifiers.vit_large, aliases=("vit-large",), description="ViT-L/16, 224 px (DMAE paper)", **filters)
    # Encoder-decoders for `certkit pretrain`, not base classifiers: `pretraining=True` tells lists apart.
    pretraining = dict(pretraining=True, **filters)
    register("mae-vit-mini", pretrain_models.mae_vit_mini, description="DMAE encoder-decoder, encoder = vit-mini", **pretraining)
    register("mae-vit-b", pretrain_models.mae_vit_base, description="DMAE ViT-B/16 encoder-decoder (decoder 512/8/16)", **pretraining)
    register("mae-vit-l", pretrain_models.mae_vit_large, description="DMAE ViT-L/16 encoder-decoder (decoder 512/8/16)", **pretraining)


@hookimpl
def certkit_register_corruptions(register) -> None:
    from certkit_dmae.corruption import NoiseMaskCorruption

    register("noise-mask", NoiseMaskCorruption, description="Gaussian noise in [0,1] space + patch mask ratio (masked after patch embedding)")


@hookimpl
def certkit_register_objectives(register) -> None:
    from certkit_dmae.objective import DMAEObjective

    register(
        "dmae",
        DMAEObjective,
        description="DMAE: reconstruct clean images from noisy, 75%-masked ones; MSE over all patches",
        default_model="mae-vit-mini",
    )


@hookimpl
def certkit_register_recipes(register) -> None:
    """The reference's recipes (and the shipped small model's), one YAML file each; the file
    name is the recipe name."""
    for path in sorted(RECIPES.glob("*.yaml")):
        register(path.stem, path)
