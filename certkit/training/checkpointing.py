"""Training-state checkpoints: ``{'model', 'optimizer', 'epoch', 'scaler', 'args', 'task'}`` as
in DMAE/MAE, written atomically (temporary file, fsync, rename) and read with
``weights_only=True``: ``args`` is a plain dict, so nothing in the file can run code."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from certkit.errors import CheckpointError
from certkit.fileio import atomic_path

LAST = "checkpoint-last.pth"
BEST = "checkpoint-best.pth"  # fine-tuning: the epoch with the best validation numbers


def save_atomic(state: dict[str, Any], path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_training_state(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"refused to load {path}: it holds objects other than tensors and plain values ({str(exc).splitlines()[0][:120]}).", "Resume only from checkpoints certkit wrote.") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"training checkpoint {path} is truncated or unreadable ({str(exc).splitlines()[0][:120]}).", f"Delete it to start over, or resume from an older checkpoint-*.pth renamed to {LAST}.") from None
    if not isinstance(state, dict) or not {"model", "optimizer", "epoch"} <= set(state):
        raise CheckpointError(f"{path} is not a certkit training checkpoint (no model/optimizer/epoch).", "Pass an output directory of 'certkit pretrain' or 'certkit finetune'.")
    return state
