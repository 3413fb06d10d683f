"""Ctrl-C during long work: one line saying what is saved and the exact command that resumes.

Rows and checkpoints are written as work finishes, so an interrupted run loses at most the
work in progress; the user needs to know that, and how to continue, not a traceback.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from certkit.cli.options import command_line

#: exit status of a process ended by SIGINT (128 + 2), what shells report for Ctrl-C
EXIT_INTERRUPTED = 130

#: flags a resume must not repeat: --overwrite would throw away what was just saved
NOT_REPEATED = ("--overwrite",)

#: set by ``--nproc-per-node``'s launcher for the processes it starts: the user's command line
#: (each process only sees its own, without ``--nproc-per-node``)
COMMAND_ENV = "CERTKIT_LAUNCHED_BY"


def typed_command() -> list[str]:
    """The command line the user typed, as ``certkit ...`` or ``python -m certkit ...``."""
    launched = os.environ.get(COMMAND_ENV)
    if launched:
        return shlex.split(launched)
    program, arguments = command_line() or ("certkit", sys.argv[1:])
    return [*program.split(), *arguments]


def resume_command(drop: Iterable[str] = NOT_REPEATED) -> str:
    """The command the user typed without the flags in ``drop``, quoted for a POSIX shell."""
    dropped = set(drop)
    return shlex.join(a for a in typed_command() if a not in dropped)


@contextlib.contextmanager
def on_interrupt(saved: Callable[[], str], drop: Iterable[str] = NOT_REPEATED) -> Iterator[None]:
    """Turn Ctrl-C inside the block into one line on stderr, ``interrupted: <saved()>; resume
    with: <command>``, and exit status 130. ``saved`` is called after the block's own cleanup
    (files closed), so it can count what is on disk."""
    try:
        yield
    except KeyboardInterrupt:
        if os.environ.get("RANK", "0") == "0":  # one line, not one per process of a distributed run
            line = f"interrupted: {saved()}; resume with: {resume_command(drop)}"
            sys.stderr.write(line + "\n")  # literal text: paths and arguments are never markup
            sys.stderr.flush()
        raise SystemExit(EXIT_INTERRUPTED) from None


def images_saved(results: Path | None) -> str:
    """"12 images are saved in results/x.tsv" (rows of a results or predict file, with the part
    files of a distributed run), or "no image is saved yet"."""
    if results is None or not results.exists():
        return "no image is saved yet"
    count = len(_saved_indices(results))
    return f"{count} image{'' if count == 1 else 's'} {'is' if count == 1 else 'are'} saved in {results}"


def _saved_indices(results: Path) -> set[int]:
    from certkit.results.store import part_files

    indices: set[int] = set()
    for path in (results, *part_files(results)):
        indices |= _row_indices(path)
    return indices


def _row_indices(path: Path) -> set[int]:
    """Image indices of the complete rows (after the header); a partial last line is not saved."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return set()
    body = text.partition("\n")[2]
    indices = set()
    for line in body[: body.rfind("\n") + 1].splitlines():
        first = line.split("\t", 1)[0]
        if first.strip().isdigit():
            indices.add(int(first))
    return indices
