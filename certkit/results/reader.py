"""Read per-image results files for reports: certkit's TSV (10 columns, or 11 with ``cut``)
and Cohen et al.'s original format.

Files come from anywhere (Cohen et al.'s published logs, other tools, hand edits), so nothing
is dropped or changed without a word: a partial last line (a run stopped while writing it) and
rows repeating an image with the same results are left out and named in ``notes``; a damaged
line or rows giving one image different results are errors that name the lines. See
:mod:`certkit.results.rows` for the rules, shared with resuming a run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from certkit.errors import ResultsError
from certkit.results.rows import conflict_message, copies_note, describe_indices, describe_lines, parse_time, scan
from certkit.results.writer import COHEN_COLUMNS, COLUMNS, norm_of

CERTKIT_COLUMNS = COLUMNS
_PASS_A_TSV = "Pass a TSV written by `certkit certify` (or by Cohen et al.'s certify.py)."
_FIX_SIDECAR = "Fix the JSON, or delete the sidecar to label the curve by file name."

#: how norms are written in labels, titles and tables
NORM_NAMES = {"l2": "L2", "l1": "L1", "linf": "L∞"}


def norm_name(norm: str) -> str:
    return NORM_NAMES.get(norm, norm)


@dataclass(frozen=True)
class ResultsFile:
    """The rows of one results file as column arrays, plus the run metadata from its sidecar."""

    path: Path
    idx: np.ndarray
    label: np.ndarray
    predict: np.ndarray  # -1 = abstain
    radius: np.ndarray  # NaN where the file says so: such rows count as not certified
    correct: np.ndarray
    time: np.ndarray  # seconds per image
    samples: np.ndarray | None  # noisy samples per image (`n`); None for Cohen's format
    metadata: dict = field(default_factory=dict)
    format: str = "certkit"  # "certkit" | "cohen"
    truncated_last_line: bool = False
    cut: np.ndarray | None = None  # a --stop-if-wrong run: 1 = stopped after selection
    notes: tuple[str, ...] = ()  # what reading settled (dropped lines, repeats, NaN radii)

    def __len__(self) -> int:
        return int(self.idx.shape[0])

    @property
    def norm(self) -> str:
        """The norm of the radii (``l2`` when the sidecar does not say)."""
        return norm_of(self.metadata)

    @property
    def label_text(self) -> str:
        """Legend label: "model σ=sigma" from the sidecar, or "model uniform σ=0.25 (l1)" (smoother,
        its options and the norm) when the smoother is not the plain Gaussian one, as the progress
        bar describes the run; else the file's name."""
        model = self.metadata.get("model")
        sigma = self.metadata.get("sigma")
        if model is None and sigma is None:
            return display_name(self.path)
        shown_sigma = "" if sigma is None else (f"σ={sigma:g}" if isinstance(sigma, (int, float)) else f"σ={sigma}")
        smoother = str(self.metadata.get("smoother") or "gaussian")
        options = self.metadata.get("smoother_options") or {}
        parts = [str(model) if model is not None else display_name(self.path)]
        if smoother == "gaussian" and self.norm == "l2" and not options:
            parts.append(shown_sigma)
        else:
            listed = "".join(f" {k}={v}" for k, v in sorted(options.items())) if isinstance(options, dict) else f" {options}"
            parts.append(f"{smoother}{listed} {shown_sigma} ({self.norm})")
        return " ".join(part for part in parts if part).replace("  ", " ")


def display_name(path: Path) -> str:
    """The file name without an extension of letters (".tsv", ".txt"); a numeric "suffix" is part
    of the name: Cohen et al.'s ``sigma_0.50`` stays ``sigma_0.50``."""
    name = Path(path).name
    stem, dot, suffix = name.rpartition(".")
    return stem if dot and stem and re.fullmatch(r"[A-Za-z]+", suffix) else name


def read_results(path: Path) -> ResultsFile:
    """Read a certkit or Cohen-format TSV (detected by its header, a UTF-8 byte-order mark
    allowed) and its ``.meta.json``."""
    path = Path(path)
    if path.is_dir():
        count = len(list(path.glob("*.tsv")))
        inside = f" (it holds {count} .tsv file{'s' if count != 1 else ''})" if count else ""
        raise ResultsError(f"{path} is a directory, not a results file{inside}.", f"Pass the files in it, e.g. certkit report {path / '*.tsv'}.")
    if not path.exists():
        raise ResultsError(f"Results file {path} does not exist.", "Check the path, or run `certkit certify` first.")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ResultsError(f"Cannot read results file {path}: {error}.", _PASS_A_TSV) from error

    found = scan(data)
    if not found.header:
        raise ResultsError(f"Results file {path} is empty (no header line).", _PASS_A_TSV)
    if found.layout is None:
        raise ResultsError(
            f"{path}:1: unknown results header {found.header[:120]!r}.",
            f"Expected tab-separated certkit columns ({' '.join(CERTKIT_COLUMNS)})"
            f" or Cohen's ({' '.join(COHEN_COLUMNS)}).",
        )
    if found.layout.name == "predict":
        raise ResultsError(f"{path} holds `certkit predict` results: predictions, not certified radii.", "Pass files written by `certkit certify`.")
    if found.damaged:
        line, problem = found.damaged[0]
        more = f" ({len(found.damaged)} damaged lines: {describe_lines([n for n, _ in found.damaged])})" if len(found.damaged) > 1 else ""
        raise ResultsError(
            f"{path}:{line}: {problem}{more}.",
            f"Fix or delete that line, or drop the damaged lines with `certkit report --repair {path}` (it keeps a backup).",
        )
    if found.conflicts:
        raise ResultsError(conflict_message(path, found), "Delete the wrong line; `certkit report` will not choose one.")

    fmt = found.layout.name
    columns = list(zip(*(row.fields for row in found.rows))) if found.rows else [()] * found.layout.width
    radius = np.asarray(columns[3], dtype=np.float64)
    notes = []
    if found.partial is not None:
        notes.append(f"{path}: left out the incomplete last line {found.partial} (a run was stopped while writing it)")
    if found.copies:
        notes.append(copies_note(path, found))
    undefined = np.isnan(radius)
    if undefined.any():
        images = [int(found.rows[i].idx) for i in np.flatnonzero(undefined)]
        notes.append(f"{path}: {len(images)} row{'s' if len(images) != 1 else ''} with radius NaN (images {describe_indices(images)}) count as not certified")
    width = found.layout.width
    return ResultsFile(
        path=path,
        idx=_whole(columns[0]),
        label=_whole(columns[1]),
        predict=_whole(columns[2]),
        radius=radius,
        correct=_whole(columns[4]),
        time=np.asarray([parse_time(t) for t in columns[5]] if fmt == "cohen" else columns[5], dtype=np.float64),
        samples=_whole(columns[7]) if fmt == "certkit" else None,
        metadata=_read_sidecar(path),
        format=fmt,
        truncated_last_line=found.partial is not None,
        cut=_whole(columns[10]) if width == 11 else None,
        notes=tuple(notes),
    )


def _whole(column: tuple[str, ...]) -> np.ndarray:
    """A column of whole numbers (the scan checked them), "3" or "3.0" alike."""
    return np.asarray(column, dtype=np.float64).astype(np.int64)


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
        notes=tuple(note for p in parts for note in p.notes),
    )
