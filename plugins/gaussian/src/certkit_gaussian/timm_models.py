"""Any timm architecture as a certkit base classifier: the model family ``timm/<arch>``.

``timm.create_model(arch, pretrained=False, num_classes=K, in_chans=C)`` behind
``certkit.Normalize``; nothing is ever downloaded. Weights come from training
(``certkit finetune --model timm/resnet18``) or from a file (``--init`` / ``--checkpoint``).
"""

from __future__ import annotations

import torch
from torch import nn

from certkit import InputSpec, Normalize
from certkit.errors import PluginError

from certkit_gaussian.models import resolve_spec

FIND_ARCHS = "List them with: python -c \"import timm; print(timm.list_models('*resnet*'))\"."


def check_arch(arch: str) -> None:
    """Refuse a name timm does not know, before anything is built."""
    import timm

    if not timm.is_model(arch):
        raise PluginError(f"unknown timm architecture '{arch}' (model 'timm/{arch}').", FIND_ARCHS)


class TimmClassifier(nn.Module):
    """A timm model that takes [0, 1] images: normalization is its first step.

    The network is ``self.net``, so state-dict keys are timm's with a ``net.`` prefix;
    :func:`checkpoint_filter` adds the prefix to plain timm state dicts.
    """

    def __init__(self, arch: str, spec: InputSpec, **timm_options) -> None:
        super().__init__()
        self.input_spec = spec
        self.arch = arch
        self.normalize = Normalize(spec.mean, spec.std)
        self.net = _create(arch, spec, timm_options)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(images))


def _create(arch: str, spec: InputSpec, options: dict) -> nn.Module:
    import timm

    check_arch(arch)
    common = dict(pretrained=False, num_classes=spec.num_classes, in_chans=spec.channels, **options)
    try:
        # Transformers and MLP-mixers fix their input size at construction; CNNs take any size
        # and refuse the keyword.
        return timm.create_model(arch, img_size=spec.image_size, **common)
    except TypeError as exc:
        if "img_size" not in str(exc):
            raise
    return timm.create_model(arch, **common)


def timm_model(arch: str, spec: InputSpec | str | None = None, **options) -> TimmClassifier:
    """``timm/<arch>``: ``options`` go to ``timm.create_model`` (e.g. ``drop_path_rate``)."""
    return TimmClassifier(arch, resolve_spec(spec), **options)


#: Prefixes training wrappers put before a network's own keys: DistributedDataParallel's
#: ``module.`` and the ``model.`` of scripts that save a wrapper's state dict.
WRAPPER_PREFIXES = ("module.", "model.")


def checkpoint_filter(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """certkit's own files pass unchanged; a plain timm or torchvision state dict (the two share
    key names for ResNets and most CNNs), also one saved through a DDP or model wrapper, gets
    the ``net.`` prefix."""
    if any(key.startswith("net.") for key in state_dict):
        return state_dict
    for prefix in WRAPPER_PREFIXES:
        if state_dict and all(key.startswith(prefix) for key in state_dict):
            state_dict = {key[len(prefix):]: value for key, value in state_dict.items()}
    return {f"net.{key}": value for key, value in state_dict.items()}
