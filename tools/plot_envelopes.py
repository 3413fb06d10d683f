"""The best-sigma envelope of several methods in one table and one plot (docs/denoised.md).

Each method is certified at several sigmas; its envelope at radius r is its best certified
accuracy over those sigmas (``certkit report --envelope`` draws it for one method). This puts
the methods' envelopes side by side, says which sigma gives each value, and runs the paired sign
test (as tools/paired_sign_tests.py) between the files the envelopes use at each radius.

    python tools/plot_envelopes.py LABEL=FILE,FILE,... LABEL=FILE,... --radii 0:2:0.25 \
        --out envelopes.png [--tests 0,0.5,1,1.5,2]

Prints Markdown: the envelope table (accuracy %, best sigma in brackets) and the sign tests.
The sigma is chosen on the same images it is then reported on, so an envelope is a slightly
optimistic summary; at each radius the sign test compares the two chosen files as they are.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from certkit.results.metrics import certified_accuracy, envelope, fine_radius_grid, parse_radii, reach_of
from certkit.results.plot import Curve, plot_certified_accuracy
from certkit.results.reader import ResultsFile, read_results
from paired_sign_tests import certified_at, sign_test  # tools/, beside this script


def best_file(files: list[ResultsFile], radius: float) -> ResultsFile:
    """The file with the highest certified accuracy at ``radius``, among the files that can
    reach it (all of them when none can); the smaller sigma on a tie."""
    reaching = [i for i, f in enumerate(files) if (reach_of(f) or np.inf) >= radius * (1 - 1e-9)] or list(range(len(files)))
    accuracy = {i: certified_accuracy(files[i], [radius])[0] for i in reaching}
    top = max(accuracy.values())
    return files[min((i for i in reaching if accuracy[i] == top), key=lambda i: float(files[i].metadata["sigma"]))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("methods", nargs="+", metavar="LABEL=FILE,FILE,...")
    parser.add_argument("--radii", default="0:2:0.25")
    parser.add_argument("--tests", default="0,0.5,1,1.5,2", help="radii of the sign tests")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--title", default="Best sigma per radius")
    options = parser.parse_args()
    radii, tests = parse_radii(options.radii), parse_radii(options.tests)
    methods: dict[str, list[ResultsFile]] = {}
    for entry in options.methods:
        label, _, paths = entry.partition("=")
        if not paths:
            raise SystemExit(f"{entry!r} is not LABEL=FILE,FILE,...; name each method and its results files.")
        methods[label] = [read_results(Path(path)) for path in paths.split(",")]

    print("| method | " + " | ".join(f"r = {r:g}" for r in radii) + " |")
    print("| --- | " + " | ".join("---:" for _ in radii) + " |")
    curves = []
    for label, files in methods.items():
        reaches = [reach_of(f) for f in files]
        reach = max(reaches) if None not in reaches else None
        cells = []
        for r in radii:
            if reach is not None and r > reach * (1 + 1e-9):
                cells.append("—")
                continue
            best = best_file(files, r)
            cells.append(f"{100 * certified_accuracy(best, [r])[0]:.1f} (σ {float(best.metadata['sigma']):g})")
        print(f"| {label} | " + " | ".join(cells) + " |")
        fine = fine_radius_grid(files)
        curves.append(Curve(label, fine, envelope(files, fine), files[0].norm, reach))
    print("\n— = beyond every sigma's reach with this N and alpha.\n")

    print("| r | A (σ) | B (σ) | only A | only B | p (two-sided) |\n|---:|---|---|---:|---:|---:|")
    for (label_a, files_a), (label_b, files_b) in itertools.combinations(methods.items(), 2):
        for r in tests:
            a, b = best_file(files_a, r), best_file(files_b, r)
            (idx_a, certified_a), (idx_b, certified_b) = certified_at(a, [r]), certified_at(b, [r])
            if not np.array_equal(idx_a, idx_b):
                raise SystemExit(f"{label_a} and {label_b} hold different images; certify both on the same ones.")
            only_a, only_b, p = sign_test(certified_a[0], certified_b[0])
            sigmas = f"{float(a.metadata['sigma']):g}", f"{float(b.metadata['sigma']):g}"
            print(f"| {r:g} | {label_a} ({sigmas[0]}) | {label_b} ({sigmas[1]}) | {only_a} | {only_b} | {p:.2g} |")

    plot_certified_accuracy(options.out, curves, options.title)
    print(f"\nWrote {options.out}")


if __name__ == "__main__":
    main()
