"""The image progress bar stays on one line at 80 columns, numbers intact, with any description."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

import certkit.cli.progress as progress_module
from certkit.cli.progress import ImageProgress

LONG = "[bold]my-model[/bold] uniform σ=0.25 (l1) on my-photos-with-a-long-name (rank 0 of 2: 500 of 1000 images to do)"


class OneSecond:
    """A clock on which every image takes one second, so the rate is exactly the samples given."""

    now = 0.0

    @classmethod
    def perf_counter(cls) -> float:
        cls.now += 1.0
        return cls.now


def rendered(width: int, description: str, samples_per_second: int) -> list[str]:
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    progress = ImageProgress(console)
    progress.start(1000, 10, description)
    progress.samples(samples_per_second)
    progress.image_done()
    console.print(progress._progress.get_renderable())
    return console.file.getvalue().splitlines()


@pytest.fixture(autouse=True)
def one_second_per_image(monkeypatch):
    monkeypatch.setattr(progress_module, "time", OneSecond)


@pytest.mark.parametrize("width", [80, 100])
@pytest.mark.parametrize("samples", [0, 10**7])
def test_bar_is_one_line_with_every_number_at_80_columns(width, samples):
    lines = rendered(width, LONG, samples)
    bar = lines[-1]
    assert all(len(line) <= width for line in lines), lines
    assert "11/1000 images" in bar and (f"{samples:,} samples/s" if samples else "– samples/s") in bar and "ETA" in bar
    assert bar.startswith("[bold]my-model") and "…" in bar  # literal text, cut with an ellipsis
    full = " ".join(" ".join(lines[:-1]).split())  # the whole description was printed once above the bar
    assert "(rank 0 of 2: 500 of 1000 images to do)" in full


def test_short_description_is_shown_whole_and_not_repeated():
    lines = rendered(80, "vit-mini σ=0.25 on mnist", 5000)
    assert [line for line in lines if "vit-mini" in line] == [lines[-1]] and "…" not in lines[-1]


@pytest.mark.parametrize("terminal", [True, False])
def test_early_bar_says_nothing_and_leaves_nothing_when_the_run_is_refused(terminal):
    """certify shows the bar before the model loads (final=False): it prints no resume line, and
    a refusal that follows (a bad checkpoint) leaves the error alone, with no bar above it."""
    console = Console(file=io.StringIO(), width=80, force_terminal=terminal, color_system=None)
    progress = ImageProgress(console)
    with pytest.raises(RuntimeError), progress:
        progress.start(100, 40, "vit-mini σ=0.25 on mnist", final=False)
        raise RuntimeError("checkpoint missing")
    text = console.file.getvalue()
    assert "resuming" not in text and not progress._progress.tasks  # the bar was taken down
    if not terminal:  # a log file gets no bar at all (a terminal saw it drawn, then erased)
        assert "images" not in text


def test_final_start_updates_the_early_bar_and_says_what_is_resumed():
    console = Console(file=io.StringIO(), width=80, force_terminal=True, color_system=None)
    progress = ImageProgress(console)
    with progress:
        progress.start(100, 40, "vit-mini σ=0.25 on mnist", final=False)
        progress.start(100, 41, "vit-mini σ=0.25 on mnist")  # the file held one more row than peeked
        progress.samples(1000)
        progress.image_done()
        console.print(progress._progress.get_renderable())
    text = console.file.getvalue()
    assert text.count("resuming: 41 of 100 images already in the results file") == 1
    assert "42/100 images" in text and len(progress._progress.tasks) == 1
