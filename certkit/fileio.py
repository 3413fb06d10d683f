"""Crash-safe file writing: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``.

    The temporary file gets ordinary permissions (0666 minus the umask), not mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        # After the writer: some writers (safetensors) recreate the file with mode 0600.
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def safe_name(text: str, fallback: str = "run") -> str:
    """``text`` as one file-name component: letters, digits, '.', '-', '_' only, never '.' or
    '..'. Names from a config file, a plugin or a model ("timm/resnet18", "../x") must not
    steer a write into another directory."""
    name = re.sub(r"[^\w.-]+", "_", text).strip("_")
    return name if name.strip(".") else fallback
