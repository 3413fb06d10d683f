"""One writer per results file: an advisory lock that the operating system releases when its
holder dies.

The lock is ``flock`` on ``<results>.lock`` (not on the results file itself, which is replaced
atomically when rows are sorted or parts merged, so a lock on it would be on a file nobody opens
any more). ``flock`` locks belong to the open file, so the kernel drops the lock when the
process exits for any reason: a ``kill -9`` leaves the lock file behind but never a held lock,
and the next run takes it over. The holder writes its pid into the file, so a refused run can
say who holds it. Two opens in one process conflict too, as two processes do.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

from certkit.errors import ResultsError

#: How long a refused run waits for the holder to write its pid (it locks first, then writes).
_PID_WAIT_SECONDS = 1.0


def lock_path(results: Path) -> Path:
    return results.with_name(results.name + ".lock")


class ResultsLock:
    """An exclusive, non-blocking lock on one results file; :meth:`release` (or the holder's
    death) frees it."""

    def __init__(self, results: Path, fix: str) -> None:
        self.results = Path(results)
        self.path = lock_path(self.results)
        self._fd: int | None = None
        self._owner = os.getpid()
        self._acquire(fix)

    def _acquire(self, fix: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                holder = self._holder()
                raise ResultsError(
                    f"{self.results} is being written by another certkit run ({holder}).", fix
                ) from None
            # The holder before us may have released and removed the file between our open and
            # our lock; then we hold a lock on a file nobody else will open. Start again.
            if self._same_file(fd):
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def _same_file(self, fd: int) -> bool:
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)

    def _holder(self) -> str:
        """"pid N" from the lock file; the holder writes it right after locking."""
        deadline = time.monotonic() + _PID_WAIT_SECONDS
        while True:
            try:
                text = self.path.read_text(encoding="ascii", errors="replace").strip()
            except OSError:
                text = ""
            if text.isdigit():
                return f"pid {text}"
            if time.monotonic() > deadline:
                return "pid not recorded yet"
            time.sleep(0.02)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Remove the lock file, then unlock: a run waiting on the old file sees it gone and
        retries on a new one (see :meth:`_acquire`). Safe to call twice."""
        if self._fd is None or os.getpid() != self._owner:
            return  # a forked child (e.g. a data loader worker) must not free its parent's lock
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None

    def __del__(self) -> None:  # a store dropped without close() must not keep its file locked
        self.release()
