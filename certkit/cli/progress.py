"""A rich progress bar for image-by-image work: images done, ETA, noisy samples per second.

The bar stays on one line at any terminal width from 80 columns up: the numbers keep their
width and the description is cut with an ellipsis to what they leave (printed in full once,
above the bar, when it had to be cut).
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TimeRemainingColumn
from rich.table import Column
from rich.text import Text

BAR_WIDTH = 10
ETA_WIDTH = len("ETA 0:00:00")


class _Description(ProgressColumn):
    """The task's description as literal text, at most the width the other columns leave."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console
        self.reserved = 0  # the other columns' widths and the gaps between columns

    def available(self) -> int:
        return max(self.console.width - self.reserved, 10)

    def get_table_column(self) -> Column:
        return Column(no_wrap=True, overflow="ellipsis", max_width=self.available())

    def render(self, task: Task) -> Text:
        return Text(task.description, no_wrap=True, overflow="ellipsis")


class _Images(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.completed:.0f}/{task.total:.0f} images", style="green")


def _rate_text(rate: float | None) -> str:
    return f"{rate:,.0f} samples/s" if rate else "– samples/s"


class _SamplesPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(_rate_text(task.fields.get("rate")), style="cyan")


class _Eta(TimeRemainingColumn):
    def render(self, task: Task) -> Text:
        remaining = super().render(task)
        return Text.assemble("ETA ", remaining)


class ImageProgress:
    """Implements the workflows' Progress protocol on a rich progress bar."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._description = _Description(console)
        self._progress = Progress(
            self._description,
            BarColumn(bar_width=BAR_WIDTH),
            _Images(table_column=Column(no_wrap=True)),
            _SamplesPerSecond(table_column=Column(no_wrap=True)),
            _Eta(table_column=Column(no_wrap=True)),
            console=console,
        )
        self._task = None
        self._images_width = 0
        self._samples = 0
        self._began = 0.0
        self._finished = 0
        self._provisional = False
        #: the file rows are being written to, once the workflow has opened it (for Ctrl-C)
        self.results_path: Path | None = None

    def __enter__(self) -> ImageProgress:
        self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None and self._task is not None and not self._finished:
            # Stopped before any image of this run finished (a bad checkpoint found while the
            # model loaded, Ctrl-C): no bar is left above the message that follows.
            self._progress.remove_task(self._task)
        self._progress.stop()

    def start(self, total: int, already_done: int, description: str, final: bool = True) -> None:
        """Show the bar. A first call with ``final=False`` shows it while the model loads and
        prints nothing (the run may yet be refused); the final call sets the real numbers and
        prints the resume line and the full description. Rates count from the last call."""
        if final and already_done:
            self.console.print(f"resuming: {already_done} of {total} images already in the results file", markup=False)
        self._images_width = max(self._images_width, len(f"{total}/{total} images"))
        self._reserve(rate=None)
        if final and len(description) > self._description.available():
            self.console.print(description, markup=False, highlight=False)  # in full once; the bar shows its start
        if self._task is not None and self._provisional:  # the same run's bar, now with final numbers
            self._progress.update(self._task, description=description, total=total, completed=already_done, rate=None)
        else:  # a run's first bar (`certkit compare` runs several, one bar each)
            self._task = self._progress.add_task(description, total=total, completed=already_done, rate=None)
        self._provisional = not final
        self._samples = 0
        self._finished = 0  # images finished since the last start
        self._began = time.perf_counter()

    def results_file(self, path: Path) -> None:
        self.results_path = path

    def samples(self, count: int) -> None:
        self._samples += count

    def image_done(self) -> None:
        self._finished += 1
        elapsed = max(time.perf_counter() - self._began, 1e-9)
        rate = self._samples / elapsed
        self._reserve(rate)
        self._progress.update(self._task, advance=1, rate=rate)

    def _reserve(self, rate: float | None) -> None:
        """Leave the description what the numbers do not need (they never shrink)."""
        widths = (BAR_WIDTH, self._images_width, len(_rate_text(rate)), ETA_WIDTH)
        self._description.reserved = sum(widths) + len(widths)  # + one space between columns

    def note(self, message: str) -> None:
        self.console.print(message, style="yellow", markup=False, emoji=False, highlight=False)
