"""Tables, paired sign tests and plots for docs/dmae-in-miniature.md, from the results files of
tools/miniature.sh (``RUNS/certify/<setting>-<method>-sigma<s>.tsv``).

For every sigma and setting (full labels, 10 % labels): certified accuracy at r = 0 ... 1.0 and
ACR of DMAE, MAE and scratch (and the model shipped before, when certified); then, per pair of
methods and radius, the images certified by one but not the other and the two-sided sign-test
p-value (scipy.stats.binomtest on the discordant images, p = 1/2). Plots via `certkit report`.

    python tools/miniature_report.py [RUNS_DIR]      (default runs/miniature)
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from certkit.results.metrics import average_certified_radius, certified_accuracy
from certkit.results.reader import read_results

RADII = (0.0, 0.25, 0.5, 0.75, 1.0)
METHODS = {"dmae": "DMAE", "mae": "MAE (σ=0)", "scratch": "scratch"}
SETTINGS = {"full": "all 6,000 labels", "scarce": "10 % of the labels (600)"}


def certified_at(results, radius: float) -> dict[int, bool]:
    """image index -> certified correctly at ``radius``."""
    return {int(i): bool(c == 1 and r >= radius) for i, c, r in zip(results.idx, results.correct, results.radius)}


def main() -> None:
    runs = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/miniature")
    folder = runs / "certify"
    for sigma in ("0.25", "0.5"):
        print(f"\n### σ = {sigma}\n")
        print("| labels | method | " + " | ".join(f"r = {r:g}" for r in RADII) + " | ACR |")
        print("|---|---|" + "---:|" * (len(RADII) + 1))
        found = {}
        for setting, setting_text in SETTINGS.items():
            for method, method_text in METHODS.items():
                path = folder / f"{setting}-{method}-sigma{sigma}.tsv"
                if not path.exists():
                    print(f"| {setting_text} | {method_text} | " + " | ".join("not run" for _ in RADII) + " | |")
                    continue
                results = found[(setting, method)] = read_results(path)
                accuracy = certified_accuracy(results, RADII) * 100
                print(f"| {setting_text} | {method_text} | " + " | ".join(f"{a:.1f}" for a in accuracy) + f" | {average_certified_radius(results):.3f} |")
        before = folder / f"shipped-before-sigma{sigma}.tsv"
        if before.exists():
            results = found[("shipped", "before")] = read_results(before)
            accuracy = certified_accuracy(results, RADII) * 100
            print("| all 6,000 labels | shipped before (DMAE 60 + 20, no augmentation) | " + " | ".join(f"{a:.1f}" for a in accuracy) + f" | {average_certified_radius(results):.3f} |")
        print("\nPaired sign tests (images certified at r by only one of the two; two-sided):\n")
        print("| labels | pair | " + " | ".join(f"r = {r:g}" for r in RADII) + " |")
        print("|---|---|" + "---|" * len(RADII))
        pairs = [(s, a, b) for s in SETTINGS for a, b in itertools.combinations(METHODS, 2)] + [("full", "dmae", ("shipped", "before"))]
        for setting, first, second in pairs:
            key_a = (setting, first)
            key_b = second if isinstance(second, tuple) else (setting, second)
            if key_a not in found or key_b not in found:
                continue
            cells = []
            for radius in RADII:
                a, b = certified_at(found[key_a], radius), certified_at(found[key_b], radius)
                assert a.keys() == b.keys(), "the two files certify different images"
                only_a = sum(a[i] and not b[i] for i in a)
                only_b = sum(b[i] and not a[i] for i in a)
                p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
                cells.append(f"{only_a} vs {only_b} (p = {p:.2g})")
            name_b = "shipped before" if isinstance(second, tuple) else METHODS[second]
            print(f"| {SETTINGS[setting]} | {METHODS[first]} vs {name_b} | " + " | ".join(cells) + " |")
    plots(runs)


def plots(runs: Path) -> None:
    """One plot per setting with both sigmas, through `certkit report`."""
    for setting in SETTINGS:
        files, labels = [], []
        for sigma in ("0.25", "0.5"):
            for method, text in METHODS.items():
                path = runs / "certify" / f"{setting}-{method}-sigma{sigma}.tsv"
                if path.exists():
                    files.append(str(path))
                    labels += ["--label", f"{text} σ={sigma}"]
        if files:
            subprocess.run(["certkit", "report", *files, *labels, "--radii", "0,0.25,0.5,0.75,1.0", "--out-dir", str(runs / "certify"), "--name", f"miniature-{setting}"], check=True, stdout=subprocess.DEVNULL)
            print(f"\nplot: {runs / 'certify' / f'miniature-{setting}.png'}")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
