"""``run.json`` and the resume check: a run directory says exactly how its weights were made.

``run.json`` holds every effective setting (defaults too), where each came from, the recipe, the
command line, the task, the world size, the effective batch and lr. The same identity settings
travel in every checkpoint (``state["run"]``); a resume whose identity settings differ is
refused, naming the keys, unless ``--accept-changes`` is given, which continues and appends the
change to ``run.json``'s ``changes``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from certkit.errors import CheckpointError
from certkit.fileio import atomic_path
from certkit.training.options import identity_differences

RUN_FILE = "run.json"
SUMMARY = "summary.csv"


@dataclass(frozen=True)
class RunRecord:
    """What ``certkit pretrain/finetune`` resolved; ``identity`` is what a resume must keep."""

    recipe: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    identity: dict[str, Any] = field(default_factory=dict)
    command: str = ""  # the command line that started (or resumes) the run


def identity_of(record: RunRecord, effective_batch: int) -> dict[str, Any]:
    """The identity settings plus the effective batch: per-process batch and accumulation may
    change on resume (e.g. on another number of processes) as long as their product does."""
    return {**record.identity, "effective_batch": effective_batch}


def check_resume(previous: dict[str, Any] | None, current: dict[str, Any], out_dir: Path, accept: bool) -> dict[str, list[Any]]:
    """The changed identity settings ``{name: [before, now]}``; refuses them unless ``accept``."""
    if not previous:
        return {}  # a checkpoint of a certkit that did not record settings
    changed = identity_differences(previous, current)
    if changed and not accept:
        shown = ", ".join(f"{name} {_short(previous.get(name))} -> {_short(current.get(name))}" for name in changed)
        raise CheckpointError(
            f"{out_dir} holds a run with other settings ({shown}); nothing was changed.",
            "Resume with the run's settings (see its run.json), pick a new --out-dir, or pass --accept-changes to continue with the new ones (recorded in run.json).",
        )
    return {name: [previous.get(name), current.get(name)] for name in changed}


def write_run_file(out_dir: Path, record: RunRecord, extra: dict[str, Any]) -> None:
    info = {"recipe": record.recipe, "command": record.command, "settings": record.settings, "sources": record.sources, **extra, "changes": []}
    _write(out_dir / RUN_FILE, info)


def append_change(out_dir: Path, record: RunRecord, at_epoch: int, changed: dict[str, list[Any]]) -> None:
    """Record accepted changes; ``settings`` and ``sources`` become the new ones."""
    path = out_dir / RUN_FILE
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        info = {"changes": []}
    info.setdefault("changes", []).append({"from_epoch": at_epoch + 1, "changed": changed, "command": record.command})
    info.update(settings=record.settings, sources=record.sources, recipe=record.recipe)
    _write(path, info)


def _write(path: Path, info: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(info, indent=2) + "\n")


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def write_summary_csv(log_path: Path, path: Path) -> None:
    """One row per evaluated epoch of ``log.jsonl`` (rewritten whole, so it always agrees with
    the log, which a resume trims to the committed epochs)."""
    rows = []
    for line in log_path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if any(key.startswith("val_") for key in entry):
            rows.append(entry)
    if not rows:
        return
    columns = ["epoch", "loss", *sorted({key for row in rows for key in row if key.startswith("val_")})]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())
