"""Paired sign tests between methods certified on the same images (docs/denoised.md).

For each pair of results files and each radius r, an image is *discordant* when one method
certifies it correctly at radius >= r and the other does not. Under "the two methods are
equally good at r", each discordant image is a fair coin; the p-value is the two-sided
binomial test of the split (scipy.stats.binomtest). Images both certify, or neither does,
carry no information about which is better and are left out (McNemar's exact test).

    python tools/paired_sign_tests.py LABEL=FILE.tsv LABEL=FILE.tsv ... [--radii 0,0.5,1,1.5,2]

Prints a Markdown table; the files must hold the same image indices.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from certkit.results.metrics import parse_radii
from certkit.results.reader import ResultsFile, read_results


def certified_at(result: ResultsFile, radii: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Image indices (sorted) and a [len(radii), images] bool array: certified correctly at r."""
    order = np.argsort(result.idx)
    radius = np.where(result.correct[order] == 1, result.radius[order], -np.inf)
    return result.idx[order], radius[None, :] >= np.asarray(radii)[:, None]


def sign_test(a: np.ndarray, b: np.ndarray) -> tuple[int, int, float]:
    """Images only ``a`` certifies, images only ``b`` certifies, and the two-sided p of that split."""
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    return only_a, only_b, binomtest(only_a, only_a + only_b).pvalue if only_a + only_b else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", metavar="LABEL=FILE")
    parser.add_argument("--radii", default="0,0.5,1,1.5,2")
    options = parser.parse_args()
    radii = parse_radii(options.radii)
    methods = {}
    for entry in options.files:
        label, _, path = entry.partition("=")
        methods[label] = certified_at(read_results(Path(path)), radii)
    print("| r | A | B | only A | only B | p (two-sided) |\n|---:|---|---|---:|---:|---:|")
    for (label_a, (idx_a, a)), (label_b, (idx_b, b)) in itertools.combinations(methods.items(), 2):
        if not np.array_equal(idx_a, idx_b):
            raise SystemExit(f"{label_a} and {label_b} hold different images; certify both on the same ones.")
        for i, r in enumerate(radii):
            only_a, only_b, p = sign_test(a[i], b[i])
            print(f"| {r:g} | {label_a} | {label_b} | {only_a} | {only_b} | {p:.2g} |")


if __name__ == "__main__":
    main()
