"""Reading and writing model weights without ever running code from a file.

certkit's own weights are safetensors files whose metadata names the model and carries its
input spec, so ``certkit certify`` needs nothing else. Foreign PyTorch checkpoints (e.g. the
DMAE releases, ``{'model': state_dict, 'args': Namespace}``) load with ``weights_only=True``,
allowing exactly ``argparse.Namespace`` beyond tensors and containers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from certkit.errors import CheckpointError
from certkit.fileio import atomic_path
from certkit.interfaces import InputSpec

SAFETENSORS_SUFFIX = ".safetensors"


@dataclass(frozen=True)
class Weights:
    """A state dict plus what its file says about itself."""

    state_dict: dict[str, torch.Tensor]
    model_name: str | None
    input_spec: InputSpec | None
    path: Path
    sha256: str
    model_options: dict[str, Any] = field(default_factory=dict)  # structural factory options (e.g. linear_probe)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_weights(path: Path) -> Weights:
    """Load weights from a safetensors file or a PyTorch checkpoint, safely."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist.", "Check the path, or pass --checkpoint with an existing file.")
    sha = sha256_of(path)
    with open(path, "rb") as handle:
        head = handle.read(9)
    # safetensors: an 8-byte header length, then the JSON header itself.
    if path.suffix == SAFETENSORS_SUFFIX or head[8:9] == b"{":
        return _read_safetensors(path, sha)
    return _read_torch(path, sha)


def _read_safetensors(path: Path, sha: str) -> Weights:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is not a readable safetensors file ({exc}).", "Re-download or re-export it.") from None
    spec = InputSpec.from_dict(json.loads(metadata["input_spec"])) if "input_spec" in metadata else None
    options = json.loads(metadata.get("model_options", "{}"))
    return Weights(state, metadata.get("model"), spec, path, sha, options)


def _read_torch(path: Path, sha: str) -> Weights:
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsupported content"
        raise CheckpointError(
            f"refused to load {path}: it holds objects other than tensors and plain containers ({first[:160]}).",
            "Only load checkpoints from sources you trust; convert them to safetensors.",
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"checkpoint {path} is truncated or not a PyTorch file ({str(exc).splitlines()[0][:160]}).", "Re-download it.") from None
    state = payload
    if isinstance(payload, dict):
        for key in ("model", "state_dict", "model_ema"):
            if isinstance(payload.get(key), dict):
                state = payload[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {path} holds no state dict of tensors.", "Pass a file saved from a model's state_dict().")
    return Weights(dict(state), None, None, path, sha)


def write_weights(path: Path, model: torch.nn.Module, model_name: str, spec: InputSpec, extra: dict[str, str] | None = None) -> None:
    """Save a model as safetensors with its name and input spec, atomically (no half files)."""
    from safetensors.torch import save_file

    metadata = {"model": model_name, "input_spec": json.dumps(spec.to_dict()), **(extra or {})}
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)


def load_into(model: torch.nn.Module, state_dict: dict[str, Any], source: Path) -> None:
    """Strictly load ``state_dict``; a key or shape mismatch is a one-line CheckpointError."""
    own = model.state_dict()
    for key, tensor in state_dict.items():
        if key in own and tuple(own[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"checkpoint {source} does not fit the model: '{key}' has shape {list(tensor.shape)}, the model expects {list(own[key].shape)}.",
                "Pass the --model this checkpoint was trained as.",
            )
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise CheckpointError(
            f"checkpoint {source} does not fit the model: {detail} ({len(missing)} missing, {len(unexpected)} unexpected keys).",
            "Pass the --model this checkpoint was trained as.",
        )
    model.load_state_dict(state_dict, strict=True)
