"""certkit hook implementations of the gaussian plugin (entry point ``gaussian`` in group ``certkit``).

Each hook imports what it registers when it is called: certkit loads this module to list
commands (``certkit --help``), which must not import torch or timm.
"""

from __future__ import annotations

from pathlib import Path

from certkit import hookimpl

WEIGHTS = Path(__file__).parent / "weights"


def _shipped(model: str) -> dict[float, Path]:
    """Checkpoints shipped in the package, one per sigma: ``<model>-sigma<sigma>.safetensors``."""
    return {float(path.stem.split("-sigma")[-1]): path for path in sorted(WEIGHTS.glob(f"{model}-sigma*.safetensors"))}


@hookimpl
def certkit_register_models(register) -> None:
    from certkit_gaussian.models import cnn_mini, resnet_mini
    from certkit_gaussian.timm_models import check_arch, checkpoint_filter, timm_model

    register("cnn-mini", cnn_mini, description="small residual CNN for 28-32 px images (CPU-sized)", checkpoints=_shipped("cnn-mini"))
    register("resnet-mini", resnet_mini, description="pre-activation ResNet-20 for 28-32 px images (-M depth=110: Cohen et al.'s CIFAR model)", checkpoints=_shipped("resnet-mini"))
    # A family: "timm/resnet18", "timm/vit_tiny_patch16_224", ... the factory gets arch="resnet18".
    register(
        "timm/",
        timm_model,
        description="any timm architecture by name, e.g. timm/resnet18 (random init; never downloads)",
        prefix=True,
        check_name=check_arch,
        checkpoint_filter=checkpoint_filter,
    )


@hookimpl
def certkit_register_objectives(register) -> None:
    from certkit_gaussian.stability import StabilityTraining

    register(
        "stability",
        StabilityTraining,
        description="stability training (Li et al. 2019): CE(f(x), y) + gamma * KL(f(x) || f(x + noise)), gamma 2",
        supervised=True,
    )
