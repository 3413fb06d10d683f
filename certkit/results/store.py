"""One results file through its whole life: lock, new file or resume, rows, part files, repair.

A run opens its file with :meth:`ResultsStore.open`: the file is locked (one writer at a time,
see :mod:`certkit.results.lock`), part files a killed distributed run left are merged, and then
either a new file is started or the existing one is checked (same configuration, no damaged or
conflicting rows) and resumed after its last complete row. Rows are appended and flushed one by
one as images finish; :meth:`~ResultsStore.sort_rows` puts them in index order at the end, and
:meth:`~ResultsStore.close` records the final metadata and releases the lock.

Under torchrun, rank 0 opens the results file (and holds its lock for the whole run); every rank
writes its images to a part file ``<results>.rank<R>`` (:meth:`ResultsStore.open_part`), and rank
0 merges the parts when all are done (:meth:`~ResultsStore.merge_parts`). Rows are identical to a
one-process run (per-image noise streams), so the merge is a union sorted by image index. A kill
at any moment leaves parts that the next run (on any number of ranks, or one process) merges
first: the merged file is written atomically before the parts are removed.

Every step leaves a state a rerun handles, and nothing that holds good rows is ever replaced
without them: a damaged row is not buried under new ones, it is reported, and
:func:`repair` drops only the damaged lines, keeping a backup of the file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from certkit.errors import ResultsError
from certkit.fileio import atomic_path
from certkit.results.lock import ResultsLock
from certkit.results.rows import Row, Scan, conflict_message, copies_note, describe_lines, same_result, scan
from certkit.results.writer import COLUMNS, identity_differences, sidecar_path, write_json_atomic

#: The fix for a results file certkit will not append to.
NEW_FILE_FIX = "Pass --out to write a new file, or --overwrite to replace it."
_PARTS_FIX = "Pass --out to write a new file, or --overwrite to replace it (and its part files)."
_BUSY_FIX = "Wait for it to finish, or pass --out to write another file."


def peek_done(path: Path) -> set[int]:
    """The image indices an existing results file already holds, read without lock or checks:
    what a progress bar can show while the model loads. :meth:`ResultsStore.open` decides."""
    try:
        return {row.idx for row in scan(Path(path).read_bytes(), cut_unterminated=True).rows}
    except (OSError, ValueError):
        return set()


def repair_command(path: Path) -> str:
    return f"certkit report --repair {path}"


def _repair_fix(path: Path) -> str:
    return f"Drop the damaged line(s) with `{repair_command(path)}` (it keeps a backup of the file), then rerun."


class ResultsStore:
    """A results file open for writing; build it with :meth:`open` or :meth:`open_part`.

    ``done`` holds the image indices whose rows the file already has (a resumed run skips them);
    ``notes`` what was found and settled on the way (dropped partial line, repeated rows).
    """

    def __init__(self, path: Path, metadata: Mapping[str, Any], columns: tuple[str, ...], lock: ResultsLock | None) -> None:
        self.path = Path(path)
        self.meta_path = sidecar_path(self.path)
        self.metadata = dict(metadata)
        self.columns = columns
        self.done: set[int] = set()
        self.notes: list[str] = []
        self._lock = lock
        self._handle = None

    # --- opening ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path,
        metadata: Mapping[str, Any],
        columns: tuple[str, ...] = COLUMNS,
        overwrite: bool = False,
        note: Callable[[str], None] | None = None,
    ) -> ResultsStore:
        """Lock ``path`` and make it ready for this run's rows: a new file (or ``overwrite``),
        or the existing one checked against ``metadata`` and resumed. ``note`` hears what was
        settled on the way. Everything that can refuse runs before anything is written."""
        path = Path(path)
        _check_location(path)
        store = cls(path, metadata, columns, ResultsLock(path, _BUSY_FIX))
        try:
            if overwrite:
                remove_parts(path)
                store._start_new()
            elif path.exists():
                previous = store._previous_metadata()
                store._check_identity(previous)
                if part_files(path):
                    store._merge(part_files(path))
                store._resume(previous)
            else:
                store._start_new()
                if part_files(path):  # parts of a run whose results file was removed
                    store._merge(part_files(path))
                    store._resume(store.metadata)
        except BaseException:
            store._release()
            raise
        for message in store.notes if note is not None else ():
            note(message)
        return store

    @classmethod
    def open_part(cls, results: Path, metadata: Mapping[str, Any], rank: int, world_size: int, columns: tuple[str, ...] = COLUMNS) -> ResultsStore:
        """Rank ``rank``'s part file of ``results`` (started afresh); ``done`` is the rows the
        results file holds, after rank 0 opened (and merged) it. Rank 0's lock on ``results``
        covers the parts, so a part takes none."""
        store = cls(part_path(results, rank), {**metadata, "part": {"rank": rank, "world_size": world_size}}, columns, None)
        data = Path(results).read_bytes()
        store.done = {row.idx for row in scan(data, cut_unterminated=True).rows}
        store._start_new()
        return store

    def _start_new(self) -> None:
        # The old rows go before the new sidecar is written (never old rows under new metadata),
        # and the header appears whole or not at all (a file cut inside its header would not resume).
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        write_json_atomic(self.meta_path, self.metadata)
        with atomic_path(self.path) as tmp:
            tmp.write_text("\t".join(self.columns) + "\n", encoding="utf-8")

    def _previous_metadata(self) -> dict[str, Any]:
        if not self.meta_path.exists():
            raise ResultsError(f"{self.path} exists but has no {self.meta_path.name}, so certkit cannot tell how it was made.", NEW_FILE_FIX)
        return read_metadata(self.path, NEW_FILE_FIX)

    def _check_identity(self, previous: Mapping[str, Any]) -> None:
        differences = identity_differences(previous, self.metadata)
        if differences:
            shown = ", ".join(f"{k} {previous.get(k)!r} vs {self.metadata.get(k)!r}" for k in differences[:3])
            raise ResultsError(f"{self.path} was made with a different configuration ({shown}).", NEW_FILE_FIX)

    def _resume(self, previous: Mapping[str, Any]) -> None:
        found = self._scan(self.path)
        if found.copies:
            self._write_rows(found.header, found.rows)
        elif found.partial is not None:
            with open(self.path, "r+b") as handle:
                handle.truncate(found.partial_offset)
        self._note_dropped(self.path, found)
        self.done = {row.idx for row in found.rows}
        # Keep the first start time; list when each resume began.
        resumed = list(previous.get("resumed", []))
        if not resumed or resumed[-1] != self.metadata.get("started"):  # a run that reopens its file is one resume
            resumed.append(self.metadata.get("started"))
        self.metadata["resumed"] = resumed
        self.metadata["started"] = previous.get("started", self.metadata.get("started"))
        write_json_atomic(self.meta_path, self.metadata)

    def _note_dropped(self, path: Path, found: Scan) -> None:
        if found.partial is not None:
            self.notes.append(f"{path}: dropped the incomplete last line {found.partial} (a run was stopped while writing it); that image is certified again")
        if found.copies:
            self.notes.append(copies_note(path, found))

    def _scan(self, path: Path) -> Scan:
        """The rows of a certkit-written file; an unterminated last line is partial (cut inside
        its last number, maybe). Damaged or conflicting rows are refused: resuming would bury
        them among new rows."""
        found = scan(path.read_bytes(), cut_unterminated=True)
        if found.layout is None or found.layout.columns != self.columns:
            raise ResultsError(f"{path} does not start with the expected header.", NEW_FILE_FIX)
        if found.damaged:
            line, problem = found.damaged[0]
            others = f" ({len(found.damaged)} damaged lines: {describe_lines([n for n, _ in found.damaged])})" if len(found.damaged) > 1 else ""
            raise ResultsError(f"{path}:{line}: {problem}{others}.", _repair_fix(path))
        if found.conflicts:
            raise ResultsError(conflict_message(path, found), "Delete the wrong line (or both, to certify the image again), or pass --overwrite to start again.")
        return found

    # --- part files of a distributed run ---------------------------------------------------

    def merge_parts(self) -> int:
        """Merge every part file into the results file (rank 0, once all ranks are done);
        return how many rows the parts added."""
        self._close_handle()
        return self._merge(part_files(self.path))

    def _merge(self, parts: list[Path]) -> int:
        if not parts:
            return 0
        found = self._scan(self.path)
        self._note_dropped(self.path, found)
        rows = {row.idx: row for row in found.rows}
        added = 0
        for part in parts:
            differences = identity_differences(read_metadata(part, _PARTS_FIX), self.metadata)
            if differences:
                raise ResultsError(f"part file {part} was made with a different configuration than {self.path} ({', '.join(differences)}).", _PARTS_FIX)
            found_part = scan(part.read_bytes(), cut_unterminated=True)  # a killed rank's last line
            if found_part.layout is None or found_part.layout.columns != self.columns:
                raise ResultsError(f"part file {part} has other columns than {self.path}.", _PARTS_FIX)
            self._note_dropped(part, found_part)
            if found_part.damaged:
                line, problem = found_part.damaged[0]
                raise ResultsError(f"part file {part}:{line}: {problem}.", _PARTS_FIX)
            if found_part.conflicts:
                raise ResultsError(conflict_message(part, found_part), _PARTS_FIX)
            for row in found_part.rows:
                kept = rows.get(row.idx)
                if kept is None:
                    rows[row.idx] = row
                    added += 1
                elif same_result(kept, row, self.columns):
                    continue  # a kill between writing the merged file and removing the parts
                else:
                    raise ResultsError(
                        f"image {row.idx} has different results in {self.path} (line {kept.line}) and {part} (line {row.line}).",
                        _PARTS_FIX,
                    )
        self._write_rows(found.header, [rows[idx] for idx in sorted(rows)])
        remove_parts(self.path)  # only after the merged file is in place
        return added

    # --- rows ------------------------------------------------------------------------------

    def write(self, line: str) -> None:
        """Append one complete row and push it to disk, so a kill loses at most the images in flight."""
        if self._handle is None:
            self._handle = open(self.path, "a", encoding="utf-8")
        self._handle.write(line)
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def sort_rows(self) -> None:
        """Put the rows in index order (atomically), so a finished file does not depend on the
        order in which images finished; a no-op when they already are."""
        self._close_handle()
        header, *rows = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
        keys = [int(row.split("\t", 1)[0]) for row in rows]
        if keys != sorted(keys):
            with atomic_path(self.path) as temporary:
                temporary.write_text(header + "".join(row for _, row in sorted(zip(keys, rows), key=lambda pair: pair[0])), encoding="utf-8")

    def _write_rows(self, header: str, rows: list[Row]) -> None:
        self._close_handle()
        with atomic_path(self.path) as temporary:
            temporary.write_text(header + "\n" + "".join(row.text for row in rows), encoding="utf-8")

    def close(self, **final: Any) -> None:
        """Record ``final`` (e.g. ``finished``) in the sidecar and release the lock."""
        try:
            self._close_handle()
            self.metadata.update(final)
            write_json_atomic(self.meta_path, self.metadata)
        finally:
            self._release()

    def _close_handle(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _release(self) -> None:
        self._close_handle()
        if self._lock is not None:
            self._lock.release()


def read_metadata(path: Path, fix: str) -> dict[str, Any]:
    """The sidecar of ``path`` as a dict; an unreadable or non-object sidecar is refused with ``fix``."""
    meta_path = sidecar_path(path)
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{meta_path} is not valid JSON ({exc.msg} at line {exc.lineno}).", fix) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"cannot read {meta_path} ({exc}).", fix) from None
    if not isinstance(metadata, dict):
        raise ResultsError(f"{meta_path} is not a JSON object, so certkit cannot tell how {path.name} was made.", fix)
    return metadata


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


def _check_location(path: Path) -> None:
    """Refuse a results path that can never be a file before anything is written."""
    if path.is_dir():
        raise ResultsError(f"results file {path} is a directory.", f"Pass --out with a file name, e.g. --out {path / 'results.tsv'}.")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ResultsError(f"cannot create {path}: {parent} is a file, not a directory.", "Pass --out with a path inside a directory.")


# --- repair ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Repaired:
    """What :func:`repair` did to a file."""

    path: Path
    backup: Path | None  # None when nothing needed repair
    dropped: list[tuple[int, str]]  # (line, why): damaged lines and a partial last line
    copies: int  # repeated rows with the same results, dropped

    @property
    def changed(self) -> bool:
        return self.backup is not None

    def describe(self) -> str:
        if not self.changed:
            return f"{self.path}: nothing to repair"
        parts = [f"line {line} ({why})" for line, why in self.dropped[:5]]
        if len(self.dropped) > 5:
            parts.append(f"{len(self.dropped) - 5} more damaged lines")
        if self.copies:
            parts.append(f"{self.copies} repeated {'row' if self.copies == 1 else 'rows'} with the same results")
        return f"{self.path}: dropped {', '.join(parts)}; the original is in {self.backup}"


def repair(path: Path) -> Repaired:
    """Drop the damaged lines, a partial last line and identical repeated rows of a results file
    (any layout certkit reads), keeping every good row and a backup of the original as
    ``<file>.bak`` (``.bak.1``, ... when that exists). Conflicting rows are refused: which one
    is right is the user's call. Takes the file's lock, so a running certify is not disturbed."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"results file {path} does not exist.", "Check the path.")
    lock = ResultsLock(path, _BUSY_FIX)
    try:
        data = path.read_bytes()
        found = scan(data)
        if found.layout is None:
            raise ResultsError(f"{path}:1: unknown results header {found.header[:80]!r}; certkit repairs only files it can read.", "Check the file.")
        if found.conflicts:
            raise ResultsError(conflict_message(path, found), "Delete the wrong line (or both), then report again.")
        dropped = list(found.damaged)
        if found.partial is not None:
            dropped.append((found.partial, "incomplete last line"))
        if not dropped and not found.copies:
            return Repaired(path, None, [], 0)
        backup = _free_backup_name(path)
        shutil.copy2(path, backup)
        with atomic_path(path) as temporary:
            temporary.write_text(found.header + "\n" + "".join(row.text for row in found.rows), encoding="utf-8")
        return Repaired(path, backup, sorted(dropped), len(found.copies))
    finally:
        lock.release()


def _free_backup_name(path: Path) -> Path:
    candidate = path.with_name(path.name + ".bak")
    number = 0
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.name}.bak.{number}")
    return candidate
