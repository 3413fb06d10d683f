"""Peak memory of `certkit certify` on one image at N = 1,000 vs N = 100,000.

Memory must be bounded by the batch, not by N. Each run is a fresh process; its peak resident
set size is read from the kernel (``ru_maxrss`` of that child alone).

    python benchmarks/memory.py [--model vit-mini --sigma 0.25 --batch 1000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile


def peak_rss_mib(args: list[str]) -> float:
    """Run ``certkit`` in a child process; return its peak RSS in MiB."""
    # A wrapper process per run, so RUSAGE_CHILDREN covers exactly one certkit process.
    code = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "certkit", *args], check=True, capture_output=True, text=True)
    return int(out.stdout.strip()) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit-mini")
    parser.add_argument("--sigma", default="0.25")
    parser.add_argument("--batch", default="1000")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for n in (1_000, 100_000):
            out = os.path.join(tmp, f"n{n}.tsv")
            args = ["certify", "--model", options.model, "--sigma", options.sigma, "--n", str(n), "--max", "1", "--batch", options.batch, "--out", out]
            results[n] = peak_rss_mib(args)
            print(f"N = {n:>7,}: peak RSS {results[n]:8.1f} MiB", flush=True)
        ratio = results[100_000] / results[1_000]
        print(f"ratio N=100,000 / N=1,000: {ratio:.3f} ({100 * (ratio - 1):+.1f} %)")


if __name__ == "__main__":
    main()
