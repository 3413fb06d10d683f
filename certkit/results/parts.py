"""Per-rank part files of a distributed certification run, and merging them into the results file.

Under torchrun each rank appends its images to ``<results>.rank<R>`` (with its own sidecar);
rank 0 merges the parts into ``<results>`` when all ranks are done. Rows are identical to a
one-process run (per-image noise streams), so the merge is a union sorted by image index. A kill
at any moment leaves parts that the next run (on any number of ranks, or one process) merges
first: the merged file is written atomically before the parts are removed, and a row found both
in the results file and in a part is kept once.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from certkit.errors import ResultsError
from certkit.fileio import atomic_path
from certkit.results.writer import identity_differences, sidecar_path, write_json_atomic

_FIX = "Pass --out to write a new file, or --overwrite to replace it (and its part files)."


def part_path(results: Path, rank: int) -> Path:
    return results.with_name(f"{results.name}.rank{rank}")


def part_files(results: Path) -> list[Path]:
    """Existing part files of ``results``, from a run on any number of ranks."""
    pattern = re.compile(re.escape(results.name) + r"\.rank\d+")
    return sorted(p for p in results.parent.glob(results.name + ".rank*") if pattern.fullmatch(p.name))


def remove_parts(results: Path) -> None:
    for part in part_files(results):
        sidecar_path(part).unlink(missing_ok=True)
        part.unlink(missing_ok=True)


def merge_parts(results: Path) -> int:
    """Merge every part file into ``results`` (which must exist with its sidecar); return how
    many rows the parts added. Parts made under another configuration are refused."""
    parts = part_files(results)
    if not parts:
        return 0
    metadata = _metadata(results)
    header, rows = _rows(results)
    added = 0
    for part in parts:
        other = _metadata(part)
        differences = identity_differences(other, metadata)
        if differences:
            raise ResultsError(f"part file {part} was made with a different configuration than {results} ({', '.join(differences)}).", _FIX)
        part_header, part_rows = _rows(part)
        if part_header != header:
            raise ResultsError(f"part file {part} has other columns than {results}.", _FIX)
        for idx, row in part_rows.items():
            if idx not in rows:
                rows[idx] = row
                added += 1
    with atomic_path(results) as temporary:
        temporary.write_text(header + "".join(rows[idx] for idx in sorted(rows)), encoding="utf-8")
    remove_parts(results)  # only after the merged file is in place
    return added


def completed_indices(results: Path) -> set[int]:
    """Image indices of the complete rows of a results file (read-only)."""
    return set(_rows(results)[1])


def update_metadata(results: Path, **values: object) -> None:
    write_json_atomic(sidecar_path(results), {**_metadata(results), **values})


def _metadata(path: Path) -> dict:
    try:
        return json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ResultsError(f"cannot read {sidecar_path(path)} ({exc}).", _FIX) from None


def _rows(path: Path) -> tuple[str, dict[int, str]]:
    """Header and complete rows by index; a partial last line (a kill mid-write) is left out."""
    text = path.read_text(encoding="utf-8")
    header, _, body = text.partition("\n")
    complete = body[: body.rfind("\n") + 1]
    rows: dict[int, str] = {}
    for line in complete.splitlines(keepends=True):
        rows.setdefault(int(line.split("\t", 1)[0]), line)
    return header + "\n", rows
