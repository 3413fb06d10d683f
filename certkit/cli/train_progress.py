"""A rich progress bar for training: one bar per epoch with loss, lr and images/s."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class EpochProgress:
    """Implements the trainer's TrainProgress protocol."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}  {task.fields[ips]:,.0f} img/s"),
            TimeRemainingColumn(),
            console=console,
        )
        self._task = None

    def __enter__(self) -> EpochProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)
        self._task = self._progress.add_task("", total=steps, epoch=f"{epoch + 1}/{epochs}", loss=float("nan"), lr=0.0, ips=0.0)

    def step(self, loss: float, lr: float, images_per_second: float) -> None:
        self._progress.update(self._task, advance=1, loss=loss, lr=lr, ips=images_per_second)

    def end_epoch(self, summary: dict[str, Any]) -> None:
        self.console.print(f"epoch {summary['epoch']}: loss {summary['loss']:.4f}, lr {summary['lr']:.2e}, {summary['images_per_second']:,.0f} img/s")

    def note(self, message: str) -> None:
        self.console.print(f"[yellow]{message}[/yellow]")
