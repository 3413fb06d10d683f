"""A rich progress bar for image-by-image work: images done, ETA, noisy samples per second."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text


class _SamplesPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        rate = task.fields.get("rate")
        return Text(f"{rate:,.0f} samples/s" if rate else "– samples/s", style="cyan")


class ImageProgress:
    """Implements the workflows' Progress protocol on a rich progress bar."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress = Progress(
            TextColumn("{task.description}", markup=False),  # model and data names, printed as they are
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TextColumn("images"),
            _SamplesPerSecond(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
        )
        self._task = None
        self._samples = 0
        self._began = 0.0

    def __enter__(self) -> ImageProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def start(self, total: int, already_done: int, description: str) -> None:
        if already_done:
            self.console.print(f"resuming: {already_done} of {total} images already in the results file", markup=False)
        self._task = self._progress.add_task(description, total=total, completed=already_done, rate=None)
        self._began = time.perf_counter()

    def samples(self, count: int) -> None:
        self._samples += count

    def image_done(self) -> None:
        elapsed = max(time.perf_counter() - self._began, 1e-9)
        self._progress.update(self._task, advance=1, rate=self._samples / elapsed)

    def note(self, message: str) -> None:
        self.console.print(message, style="yellow", markup=False, emoji=False, highlight=False)
