"""How long `certkit` takes to answer, against the imports it cannot avoid, in one run.

Every measurement is a fresh process. The commands are interleaved (one of each per round, so a
machine whose load drifts favours none of them), repeated, and reported as medians, then as
ratios against issue 14's targets:

- ``certkit --version``      <= 1.5 x ``python -c "import typer, rich"`` + 0.1 s (it needs no plugin)
- ``certkit --help``         <= 0.7 x ``python -c "import torch"`` (listing commands needs no torch)
- ``certkit certify`` until its first progress line (the bar, in a terminal) <= torch's import + 1.5 s

``certkit certify --help`` is measured as well (no target), and so is
``python -c "import torch, timm, scipy.stats"``: what certifying the default model imports in
all (its ViT blocks come from timm, which imports torchvision, which imports torch._dynamo; the
bounds come from scipy.stats). certify draws its bar before it loads the model, so only torch
comes before the first progress line; the rest loads under the bar (tests/test_startup.py
checks which modules come first). A ratio <= 1 meets the target.

    python benchmarks/startup.py                 # 7 rounds
    python benchmarks/startup.py --rounds 15
"""

from __future__ import annotations

import argparse
import os
import pty
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PROGRESS_LINE = re.compile(rb"\d+/\d+ images")


def certkit_command() -> list[str]:
    """The console script users run, next to this interpreter (else ``python -m certkit``)."""
    script = Path(sys.executable).parent / "certkit"
    return [str(script)] if script.exists() else [sys.executable, "-m", "certkit"]


def time_to_exit(command: list[str], cwd: Path) -> float:
    began = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - began
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {result.stderr.decode()[-2000:]}")
    return seconds


def time_to_progress_line(command: list[str], cwd: Path, limit: float = 600.0) -> float:
    """Seconds until ``command``, run in a pseudo-terminal (so rich draws its bar), prints its
    first progress line; the command is then killed."""
    leader, follower = pty.openpty()
    began = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, start_new_session=True)
    os.close(follower)
    seen = b""
    try:
        while time.perf_counter() - began < limit:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # the terminal closed: the command ended
                    chunk = b""
                if not chunk:
                    break
                seen += chunk
                if PROGRESS_LINE.search(seen):
                    return time.perf_counter() - began
            elif process.poll() is not None:
                break
        raise SystemExit(f"no progress line from {' '.join(command)}:\n{seen.decode(errors='replace')[-2000:]}")
    finally:
        with_group = process.poll() is None
        if with_group:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        os.close(leader)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="measurements of each command (medians are reported)")
    options = parser.parse_args()

    certkit = certkit_command()
    workdir = Path(tempfile.mkdtemp(prefix="certkit-startup-"))  # no certkit.yaml here: built-in defaults
    # One image, few samples: the time until the bar appears is start-up, not certification.
    certify = [*certkit, "certify", "--max", "1", "--n0", "10", "--n", "100", "--device", "cpu", "--overwrite", "--out", str(workdir / "startup.tsv")]
    measurements: dict[str, Callable[[], float]] = {
        "python -c 'import typer, rich'": lambda: time_to_exit([sys.executable, "-c", "import typer, rich"], workdir),
        "python -c 'import torch'": lambda: time_to_exit([sys.executable, "-c", "import torch"], workdir),
        "python -c 'import torch, timm, scipy.stats'": lambda: time_to_exit([sys.executable, "-c", "import torch, timm, scipy.stats"], workdir),
        "certkit --version": lambda: time_to_exit([*certkit, "--version"], workdir),
        "certkit --help": lambda: time_to_exit([*certkit, "--help"], workdir),
        "certkit certify --help": lambda: time_to_exit([*certkit, "certify", "--help"], workdir),
        "certkit certify (to its first progress line)": lambda: time_to_progress_line(certify, workdir),
    }
    seconds: dict[str, list[float]] = {name: [] for name in measurements}
    try:
        for _ in range(options.rounds):
            for name, measure in measurements.items():
                seconds[name].append(measure())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    median = {name: statistics.median(values) for name, values in seconds.items()}
    print(f"{options.rounds} rounds, fresh processes, interleaved; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    for name, value in median.items():
        spread = f"{min(seconds[name]):.3f}-{max(seconds[name]):.3f}"
        print(f"  {name:48s} median {value:7.3f} s  (range {spread} s)")
    typer_rich, torch = median["python -c 'import typer, rich'"], median["python -c 'import torch'"]
    targets = [
        ("certkit --version", "1.5 x typer+rich import + 0.1 s", 1.5 * typer_rich + 0.1),
        ("certkit --help", "0.7 x torch import", 0.7 * torch),
        ("certkit certify (to its first progress line)", "torch import + 1.5 s", torch + 1.5),
    ]
    floor = median["python -c 'import torch, timm, scipy.stats'"]
    certify_startup = median["certkit certify (to its first progress line)"]
    print(f"certify's first progress line / the imports the whole run needs: {certify_startup:.3f} s / {floor:.3f} s = {certify_startup / floor:.2f}")
    print("ratios against the targets (<= 1 meets the target):")
    for name, rule, target in targets:
        ratio = median[name] / target
        print(f"  {name:48s} {median[name]:7.3f} s / ({rule} = {target:.3f} s) = {ratio:.2f}  {'ok' if ratio <= 1 else 'MISSED'}")


if __name__ == "__main__":
    main()
