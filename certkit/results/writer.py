"""Per-image results files: rows written and flushed as each image finishes, resumable.

The TSV keeps Cohen et al.'s columns first (``idx label predict radius correct time``) so
their tools read it, then adds ``pA_lower``, ``n`` (noisy samples used), ``nA`` and ``n0A``
(hits on the chosen class in the estimation and selection stages). A JSON sidecar
``<file>.meta.json`` says how the file was made. A rerun with the same configuration resumes
after the last complete row; a partial last line left by a crash is dropped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from certkit.errors import ResultsError
from certkit.fileio import atomic_path
from certkit.interfaces import Certificate

COLUMNS = ("idx", "label", "predict", "radius", "correct", "time", "pA_lower", "n", "nA", "n0A")

#: metadata keys that define what a results file means; resuming requires them all equal
IDENTITY_KEYS = ("kind", "model", "checkpoint_sha256", "sigma", "smoother", "certifier", "n0", "n", "alpha", "seed", "dataset", "precision")


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".meta.json")


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def format_row(idx: int, label: int, cert: Certificate, seconds: float) -> str:
    correct = int(cert.prediction == label)
    fields = (idx, label, cert.prediction, f"{cert.radius:.9g}", correct, f"{seconds:.4f}", f"{cert.p_lower:.9g}", cert.samples, cert.count, cert.selection_count)
    return "\t".join(str(f) for f in fields) + "\n"


class ResultsWriter:
    """Appends rows to ``path``; refuses to mix configurations in one file."""

    def __init__(self, path: Path, metadata: Mapping[str, Any], columns: tuple[str, ...] = COLUMNS, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.meta_path = sidecar_path(self.path)
        self.columns = columns
        self.metadata = dict(metadata)
        self.done: set[int] = set()
        if self.path.exists() and not overwrite:
            self._prepare_resume()
        else:
            self._prepare_new()
        self._handle = open(self.path, "a", encoding="utf-8")

    def _prepare_new(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.meta_path, self.metadata)
        with open(self.path, "w", encoding="utf-8") as handle:
            handle.write("\t".join(self.columns) + "\n")

    def _prepare_resume(self) -> None:
        previous = self._read_previous_metadata()
        differences = [key for key in IDENTITY_KEYS if previous.get(key) != self.metadata.get(key)]
        if differences:
            shown = ", ".join(f"{k} {previous.get(k)!r} vs {self.metadata.get(k)!r}" for k in differences[:3])
            raise ResultsError(
                f"{self.path} was made with a different configuration ({shown}).",
                "Pass --out to write a new file, or --overwrite to replace it.",
            )
        self.done = self._complete_rows()
        # Keep the first start time; list when each resume began.
        self.metadata["resumed"] = [*previous.get("resumed", []), self.metadata.get("started")]
        self.metadata["started"] = previous.get("started", self.metadata.get("started"))
        write_json_atomic(self.meta_path, self.metadata)

    def _read_previous_metadata(self) -> dict[str, Any]:
        if not self.meta_path.exists():
            raise ResultsError(f"{self.path} exists but has no {self.meta_path.name}, so certkit cannot tell how it was made.", "Pass --out to write a new file, or --overwrite to replace it.")
        try:
            return json.loads(self.meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise ResultsError(f"{self.meta_path} is not valid JSON ({exc.msg} at line {exc.lineno}).", "Pass --out to write a new file, or --overwrite to replace it.") from None

    def _complete_rows(self) -> set[int]:
        """Indices of complete rows; a partial last line (a crash mid-write) is cut off."""
        data = self.path.read_bytes()
        header = ("\t".join(self.columns) + "\n").encode()
        if not data.startswith(header):
            raise ResultsError(f"{self.path} does not start with the expected header.", "Pass --out to write a new file, or --overwrite to replace it.")
        keep = data.rfind(b"\n") + 1
        done: set[int] = set()
        for number, line in enumerate(data[len(header) : keep].decode().splitlines(), start=2):
            fields = line.split("\t")
            if len(fields) != len(self.columns):
                raise ResultsError(f"{self.path}:{number} has {len(fields)} fields, expected {len(self.columns)}.", "Pass --out to write a new file, or --overwrite to replace it.")
            done.add(int(fields[0]))
        if keep < len(data):
            with open(self.path, "r+b") as handle:
                handle.truncate(keep)
        return done

    def write(self, line: str) -> None:
        """Append one complete row and push it to disk, so a kill loses at most the image in flight."""
        self._handle.write(line)
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self, **final: Any) -> None:
        self._handle.close()
        self.metadata.update(final)
        write_json_atomic(self.meta_path, self.metadata)
