"""Read per-image results files: certkit's own TSV and Cohen et al.'s original format.

certkit's certify writes one flushed row per image, so a crashed run can leave a partial
last line; reports drop it silently (and say so through ``truncated_last_line``) because the
row will be rewritten when the run resumes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from certkit.errors import ResultsError
from certkit.results.writer import COLUMNS

CERTKIT_COLUMNS = COLUMNS
CUT_COLUMNS = (*COLUMNS, "cut")  # a --stop-if-wrong run: 1 = image cut after selection
COHEN_COLUMNS = ("idx", "label", "predict", "radius", "correct", "time")
_PASS_A_TSV = "Pass a TSV written by `certkit certify` (or by Cohen et al.'s certify.py)."
_FIX_SIDECAR = "Fix the JSON, or delete the sidecar to label the curve by file name."


@dataclass(frozen=True)
class ResultsFile:
    """The rows of one results file as column arrays, plus the run metadata from its sidecar."""

    path: Path
    idx: np.ndarray
    label: np.ndarray
    predict: np.ndarray  # -1 = abstain
    radius: np.ndarray
    correct: np.ndarray
    time: np.ndarray  # seconds per image
    samples: np.ndarray | None  # noisy samples per image (`n`); None for Cohen's format
    metadata: dict = field(default_factory=dict)
    format: str = "certkit"  # "certkit" | "cohen"
    truncated_last_line: bool = False
    cut: np.ndarray | None = None  # --stop-if-wrong files: 1 where the image was cut after selection

    def __len__(self) -> int:
        return int(self.idx.shape[0])

    @property
    def label_text(self) -> str:
        """Legend label: "model σ=sigma" from the sidecar, else the file stem."""
        model = self.metadata.get("model")
        sigma = self.metadata.get("sigma")
        if model is None and sigma is None:
            return self.path.stem
        parts = [str(model) if model is not None else self.path.stem]
        if sigma is not None:
            parts.append(f"σ={sigma:g}" if isinstance(sigma, (int, float)) else f"σ={sigma}")
        return " ".join(parts)


def read_results(path: Path) -> ResultsFile:
    """Read a certkit or Cohen-format TSV (detected by its header) and its ``.meta.json``."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(
            f"Results file {path} does not exist.", "Check the path, or run `certkit certify` first."
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ResultsError(f"Cannot read results file {path}: {error}.", _PASS_A_TSV) from error

    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise ResultsError(f"Results file {path} is empty (no header line).", _PASS_A_TSV)
    header = tuple(lines[0].strip().split("\t"))
    if header in (CERTKIT_COLUMNS, CUT_COLUMNS):
        fmt = "certkit"
    elif header == COHEN_COLUMNS:
        fmt = "cohen"
    else:
        raise ResultsError(
            f"{path}:1: unknown results header {lines[0].strip()!r}.",
            f"Expected tab-separated certkit columns ({' '.join(CERTKIT_COLUMNS)})"
            f" or Cohen's ({' '.join(COHEN_COLUMNS)}).",
        )

    rows = lines[1:]
    truncated = False
    # A crash mid-write leaves no trailing newline and possibly too few fields; either way the
    # row is incomplete and will be rewritten on resume, so it is not counted.
    if rows and (not text.endswith("\n") or len(rows[-1].split("\t")) != len(header)):
        rows = rows[:-1]
        truncated = True

    parsed = [
        _parse_row(path, number, line, fmt, len(header))
        for number, line in enumerate(rows, start=2)
        if line.strip()
    ]
    columns = list(zip(*parsed)) if parsed else [()] * len(header)
    return ResultsFile(
        path=path,
        idx=np.asarray(columns[0], dtype=np.int64),
        label=np.asarray(columns[1], dtype=np.int64),
        predict=np.asarray(columns[2], dtype=np.int64),
        radius=np.asarray(columns[3], dtype=np.float64),
        correct=np.asarray(columns[4], dtype=np.int64),
        time=np.asarray(columns[5], dtype=np.float64),
        samples=np.asarray(columns[7], dtype=np.int64) if fmt == "certkit" else None,
        metadata=_read_sidecar(path),
        format=fmt,
        truncated_last_line=truncated,
        cut=np.asarray(columns[10], dtype=np.int64) if header == CUT_COLUMNS else None,
    )


def _parse_row(path: Path, number: int, line: str, fmt: str, width: int) -> tuple:
    fields = line.rstrip("\r").split("\t")
    if len(fields) != width:
        raise ResultsError(
            f"{path}:{number}: expected {width} tab-separated fields, found {len(fields)}.", "Fix or delete that line."
        )
    try:
        idx, label, predict = int(fields[0]), int(fields[1]), int(fields[2])
        radius, correct = float(fields[3]), int(fields[4])
        seconds = _parse_time(fields[5]) if fmt == "cohen" else float(fields[5])
        if fmt == "cohen":
            return idx, label, predict, radius, correct, seconds
        p_a_lower, n, n_a, n0_a = float(fields[6]), int(fields[7]), int(fields[8]), int(fields[9])
        return idx, label, predict, radius, correct, seconds, p_a_lower, n, n_a, n0_a, *(int(f) for f in fields[10:])
    except ValueError as error:
        raise ResultsError(f"{path}:{number}: malformed row ({error}).", "Fix or delete that line.") from error


def _parse_time(text: str) -> float:
    """Seconds from ``str(datetime.timedelta)`` ("0:00:01.234567", "1 day, 0:00:01") or a plain number."""
    text = text.strip()
    days = 0.0
    if "day" in text:
        day_part, text = text.split(",", 1)
        days = float(day_part.split()[0])
        text = text.strip()
    if ":" not in text:
        return days * 86400 + float(text)
    hours, minutes, seconds = text.split(":")
    return days * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _read_sidecar(path: Path) -> dict:
    """The run metadata next to the results file; {} when absent (e.g. Cohen's files)."""
    sidecar = Path(str(path) + ".meta.json")
    if not sidecar.is_file():
        return {}
    try:
        metadata = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ResultsError(f"Cannot read metadata {sidecar}: {error}.", _FIX_SIDECAR) from error
    if not isinstance(metadata, dict):
        raise ResultsError(f"Metadata {sidecar} is not a JSON object.", _FIX_SIDECAR)
    return metadata


def combine_parts(results: list[ResultsFile]) -> list[ResultsFile]:
    """Per-rank part files of one distributed run (``X.rank0``, ``X.rank1``, ...) as one results
    file ``X``, in the place of its first part; every other file is left as it is."""
    groups: dict[Path, list[ResultsFile]] = {}
    for result in results:
        part = result.metadata.get("part")
        if isinstance(part, dict) and result.path.suffix.startswith(".rank"):
            groups.setdefault(result.path.with_suffix(""), []).append(result)
    combined: list[ResultsFile] = []
    for result in results:
        base = result.path.with_suffix("")
        if base not in groups:
            combined.append(result)
        elif groups[base][0] is result:
            combined.append(_concatenate(base, groups[base]))
    return combined


def _concatenate(path: Path, parts: list[ResultsFile]) -> ResultsFile:
    order = np.argsort(np.concatenate([p.idx for p in parts]), kind="stable")

    def joined(name: str) -> np.ndarray:
        return np.concatenate([getattr(p, name) for p in parts])[order]

    metadata = {k: v for k, v in parts[0].metadata.items() if k != "part"}
    return ResultsFile(
        path=path, idx=joined("idx"), label=joined("label"), predict=joined("predict"), radius=joined("radius"),
        correct=joined("correct"), time=joined("time"),
        samples=joined("samples") if all(p.samples is not None for p in parts) else None,
        metadata=metadata, format=parts[0].format, truncated_last_line=any(p.truncated_last_line for p in parts),
        cut=joined("cut") if all(p.cut is not None for p in parts) else None,
    )
