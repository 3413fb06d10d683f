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
IDENTITY_KEYS = ("kind", "model", "checkpoint_sha256", "sigma", "smoother", "smoother_options", "certifier", "certifier_options", "n0", "n", "alpha", "seed", "dataset", "precision")


#: The fix for any results file certkit will not append to.
_NEW_FILE_FIX = "Pass --out to write a new file, or --overwrite to replace it."


#: identity keys newer than some results files, with the value such a file implicitly had
_IDENTITY_DEFAULTS: dict[str, Any] = {"smoother_options": {}}


def identity_differences(previous: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The :data:`IDENTITY_KEYS` on which two results files' metadata disagree."""
    def value(meta: Mapping[str, Any], key: str) -> Any:
        return meta.get(key, _IDENTITY_DEFAULTS.get(key))

    return [key for key in IDENTITY_KEYS if value(previous, key) != value(current, key)]


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
        _check_location(self.path)
        if self.path.exists() and not overwrite:
            self._prepare_resume()
        else:
            self._prepare_new()
        self._handle = open(self.path, "a", encoding="utf-8")

    def _prepare_new(self) -> None:
        # Each step leaves a state a rerun handles: the old rows go before the new sidecar is
        # written (never old rows under new metadata), and the header appears whole or not at all
        # (a file cut inside its header would not resume).
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        write_json_atomic(self.meta_path, self.metadata)
        with atomic_path(self.path) as tmp:
            tmp.write_text("\t".join(self.columns) + "\n", encoding="utf-8")

    def _prepare_resume(self) -> None:
        previous = self._read_previous_metadata()
        differences = identity_differences(previous, self.metadata)
        if differences:
            shown = ", ".join(f"{k} {previous.get(k)!r} vs {self.metadata.get(k)!r}" for k in differences[:3])
            raise ResultsError(
                f"{self.path} was made with a different configuration ({shown}).", _NEW_FILE_FIX
            )
        self.done = self._complete_rows()
        # Keep the first start time; list when each resume began.
        resumed = previous.get("resumed", [])
        if not resumed or resumed[-1] != self.metadata.get("started"):  # a run that reopens its file is one resume
            resumed = [*resumed, self.metadata.get("started")]
        self.metadata["resumed"] = resumed
        self.metadata["started"] = previous.get("started", self.metadata.get("started"))
        write_json_atomic(self.meta_path, self.metadata)

    def _read_previous_metadata(self) -> dict[str, Any]:
        if not self.meta_path.exists():
            raise ResultsError(f"{self.path} exists but has no {self.meta_path.name}, so certkit cannot tell how it was made.", _NEW_FILE_FIX)
        try:
            previous = json.loads(self.meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ResultsError(f"{self.meta_path} is not valid JSON ({exc.msg} at line {exc.lineno}).", _NEW_FILE_FIX) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ResultsError(f"cannot read {self.meta_path} ({exc}).", _NEW_FILE_FIX) from None
        if not isinstance(previous, dict):
            raise ResultsError(f"{self.meta_path} is not a JSON object, so certkit cannot tell how {self.path.name} was made.", _NEW_FILE_FIX)
        return previous

    def _complete_rows(self) -> set[int]:
        """Indices of complete rows; a partial last line (a crash mid-write) is cut off."""
        data = self.path.read_bytes()
        header = ("\t".join(self.columns) + "\n").encode()
        if not data.startswith(header):
            raise ResultsError(f"{self.path} does not start with the expected header.", _NEW_FILE_FIX)
        keep = data.rfind(b"\n") + 1
        rows = data[len(header) : keep].split(b"\n")[:-1]  # complete rows only
        done = {self._row_index(row, number) for number, row in enumerate(rows, start=2)}
        if keep < len(data):
            with open(self.path, "r+b") as handle:
                handle.truncate(keep)
        return done

    def _row_index(self, row: bytes, number: int) -> int:
        """The idx of one complete row. Every field must be a number: a damaged row in the
        middle is not a crash's partial line, and resuming would bury it among new rows."""
        where = f"{self.path}:{number}"
        try:
            fields = row.decode("utf-8").split("\t")
        except UnicodeDecodeError:
            raise ResultsError(f"{where} is not UTF-8 text.", _NEW_FILE_FIX) from None
        if len(fields) != len(self.columns):
            raise ResultsError(f"{where} has {len(fields)} fields, expected {len(self.columns)}.", _NEW_FILE_FIX)
        for name, text in zip(self.columns, fields):
            if not _is_number(text):
                raise ResultsError(f"{where}: {name} {text!r} is not a number.", _NEW_FILE_FIX)
        if not fields[0].strip().isdigit():
            raise ResultsError(f"{where}: idx {fields[0]!r} is not an image index.", _NEW_FILE_FIX)
        return int(fields[0])

    def write(self, line: str) -> None:
        """Append one complete row and push it to disk, so a kill loses at most the images in flight."""
        self._handle.write(line)
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def sort_rows(self) -> None:
        """Put the rows in index order (atomically), so a finished file does not depend on the
        order in which images finished; a no-op when they already are."""
        self._handle.flush()
        header, *rows = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
        keys = [int(row.split("\t", 1)[0]) for row in rows]
        if keys == sorted(keys):
            return
        self._handle.close()
        with atomic_path(self.path) as temporary:
            temporary.write_text(header + "".join(row for _, row in sorted(zip(keys, rows), key=lambda pair: pair[0])), encoding="utf-8")
        self._handle = open(self.path, "a", encoding="utf-8")

    def close(self, **final: Any) -> None:
        self._handle.close()
        self.metadata.update(final)
        write_json_atomic(self.meta_path, self.metadata)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_location(path: Path) -> None:
    """Refuse a results path that can never be a file before anything is written."""
    if path.is_dir():
        raise ResultsError(f"results file {path} is a directory.", f"Pass --out with a file name, e.g. --out {path / 'results.tsv'}.")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ResultsError(f"cannot create {path}: {parent} is a file, not a directory.", "Pass --out with a path inside a directory.")
