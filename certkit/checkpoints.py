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
import re
import struct
import warnings
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
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, not a weights file.", "Pass --checkpoint with the .safetensors or .pth file itself.")
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


#: How torch's weights-only unpickler names what a file refers to beyond tensors and plain
#: containers: a global it will not import, a function it will not call, a class it will not build.
_CODE_REFERENCE = re.compile(r"GLOBAL (\S+)|unrecognized function (\S+)|but got <class '([^']+)'>")
_REFUSED_FIX = "Only load checkpoints from sources you trust; convert them to safetensors."


def _refused_name(message: str) -> str | None:
    """The global a refused pickle refers to, or None when the pickle is merely malformed."""
    match = _CODE_REFERENCE.search(message)
    return next(name for name in match.groups() if name) if match else None


def _unreadable(path: Path, reason: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {path} is truncated or not a PyTorch file ({reason}).", "Re-download it, or pass the right file.")


def _torch_reason(exc: BaseException) -> str:
    """The first sentence of what torch says, without the advice it wraps around it."""
    _, marker, detail = str(exc).partition("WeightsUnpickler error:")
    lines = [line.strip() for line in (detail if marker else str(exc)).splitlines() if line.strip()]
    return lines[0].split(". ")[0].rstrip(".")[:160] if lines else type(exc).__name__


def _read_torch(path: Path, sha: str) -> Weights:
    try:
        # A warning about an unusual pickle protocol would be a second line on stderr; the
        # error below (or the refusal) is what the user needs.
        with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        name = _refused_name(str(exc))
        if name is None:
            raise _unreadable(path, _torch_reason(exc)) from None
        raise CheckpointError(f"refused to load {path}: it refers to '{name}', which is neither a tensor nor a plain container.", _REFUSED_FIX) from None
    except EOFError:
        raise _unreadable(path, "it ends early") from None
    except (RuntimeError, zipfile.BadZipFile, OSError) as exc:
        raise _unreadable(path, _torch_reason(exc)) from None
    except (IndexError, KeyError, ValueError, struct.error):
        # The weights-only unpickler trips over garbage bytes in whatever way they lead it.
        raise _unreadable(path, "malformed pickle data") from None
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
