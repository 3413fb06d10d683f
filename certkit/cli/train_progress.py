"""Training progress: a bar for the epoch (loss, lr, images/s) and one for the whole run, whose
time-remaining column is the ETA of the run; after each epoch one line with every number the
objective logged and, when the epoch was evaluated, the validation accuracies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

#: summary keys printed in a fixed form at the start of the epoch line
_FIXED = ("epoch", "loss", "lr", "images_per_second")


class EpochProgress:
    """Implements the trainer's TrainProgress protocol."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeRemainingColumn(),
            console=console,
        )
        self._epoch = None
        self._run = None

    def __enter__(self) -> EpochProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def start_run(self, out_dir: Path, first_epoch: int, epochs: int, steps_per_epoch: int) -> None:
        """The run bar counts the steps still to do, so its ETA covers the whole run."""
        self._run = self._progress.add_task("run", total=max(epochs - first_epoch, 0) * steps_per_epoch, detail=f"epochs {first_epoch + 1}-{epochs}")

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        if self._epoch is not None:
            self._progress.remove_task(self._epoch)
        self._epoch = self._progress.add_task(f"epoch {epoch + 1}/{epochs}", total=steps, detail="")

    def step(self, loss: float, lr: float, images_per_second: float) -> None:
        self._progress.update(self._epoch, advance=1, detail=f"loss {loss:.4f}  lr {lr:.2e}  {images_per_second:,.0f} img/s")
        if self._run is not None:
            self._progress.update(self._run, advance=1)

    def end_epoch(self, summary: dict[str, Any]) -> None:
        logged = "  ".join(f"{key} {_number(value)}" for key, value in summary.items() if key not in _FIXED and not key.startswith("val_"))
        line = f"epoch {summary['epoch']}: loss {summary['loss']:.4f}, lr {summary['lr']:.2e}, {summary['images_per_second']:,.0f} img/s" + (f"  |  {logged}" if logged else "")
        if "val_clean_acc" in summary:
            line += f"\n  validation ({summary['val_images']} images): clean {100 * summary['val_clean_acc']:.1f}%"
            if "val_smoothed_acc_r0" in summary:
                line += f", smoothed r=0 {100 * summary['val_smoothed_acc_r0']:.1f}% (N = {summary['val_n']})"
        self.console.print(line, markup=False, highlight=False)

    def note(self, message: str) -> None:
        self.console.print(message, style="yellow", markup=False, highlight=False)


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
