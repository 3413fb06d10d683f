"""Sequential vs fixed-N certification: same model, images, N, alpha, seed and grid, one run.

Certifies the same images with Cohen et al.'s CERTIFY (fixed N) and with the sequential
certifier, in alternating chunks of images (so a machine whose load drifts favours neither),
then prints certified accuracy at every grid radius for both, the largest difference, and the
ratios of forward passes and of wall time. The results files land in --out-dir, so
``certkit report`` can show them again.

    python benchmarks/sequential.py --sigma 0.5 --images 50 --n 100000          # the CIFAR-10 protocol's N
    python benchmarks/sequential.py --sigma 0.25 --images 50 --n 10000 --device cpu
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit-mini")
    parser.add_argument("--sigma", type=float, default=0.5)
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the model's checkpoint for --sigma")
    parser.add_argument("--images", type=int, default=50, help="embedded test images (spread over the test set)")
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--alpha", type=float, default=0.001)
    parser.add_argument("--radii", default="0:1.5:0.25", help="grid; radii no run of N samples can reach are dropped")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=10, help="images per turn when alternating the two certifiers")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=Path("runs/benchmark-sequential"))
    options = parser.parse_args()

    from certkit.results.metrics import certified_accuracy, parse_radii
    from certkit.results.reader import read_results
    from certkit.smoothers import GaussianSmoother
    from certkit.stats import clopper_pearson_lower
    from certkit.workflows.certify import CertifyJob, run_certify

    # The grid stops at the largest radius N samples can certify (all N hits, at the last
    # look's share of alpha); above it both methods certify nothing and the row says nothing.
    reachable = GaussianSmoother(options.sigma).radius(clopper_pearson_lower(options.n, options.n, options.alpha / 2))
    radii = [r for r in parse_radii(options.radii) if r <= reachable]
    total = 1000  # the embedded test split
    skip = max(1, total // options.images)
    selected = list(range(0, total, skip))[: options.images]
    out = options.out_dir / f"{options.model}-sigma{options.sigma:g}-n{options.n}"
    out.mkdir(parents=True, exist_ok=True)
    files = {name: out / f"{name}.tsv" for name in ("cohen", "sequential")}
    for path in files.values():  # a benchmark measures a fresh run, never a resumed one
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".meta.json").unlink(missing_ok=True)

    seconds = {name: 0.0 for name in files}
    for first in range(0, len(selected), options.chunk):
        count = min(options.chunk, len(selected) - first)
        for name in (("cohen", "sequential") if (first // options.chunk) % 2 == 0 else ("sequential", "cohen")):
            job = CertifyJob(
                model=options.model, sigma=options.sigma, data="fashion-mnist-mini", n0=options.n0, n=options.n,
                alpha=options.alpha, batch=options.batch, seed=options.seed, checkpoint=options.checkpoint,
                certifier=name, skip=skip, max=first + count, device=options.device, out=files[name],
                radii=tuple(radii),
            )
            began = time.perf_counter()
            run_certify(job, {})  # resumes the file: certifies only this chunk's images
            seconds[name] += time.perf_counter() - began

    results = {name: read_results(path) for name, path in files.items()}
    accuracy = {name: certified_accuracy(result, radii) * 100 for name, result in results.items()}
    passes = {name: int(np.sum(result.samples)) for name, result in results.items()}
    print(f"{options.model} sigma {options.sigma:g}: {len(selected)} images, N0 {options.n0}, N {options.n:,}, alpha {options.alpha}, batch {options.batch}")
    print(f"{'radius':>8}{'cohen %':>10}{'sequential %':>14}{'difference':>12}")
    for i, radius in enumerate(radii):
        print(f"{radius:>8g}{accuracy['cohen'][i]:>10.1f}{accuracy['sequential'][i]:>14.1f}{accuracy['sequential'][i] - accuracy['cohen'][i]:>+12.1f}")
    worst = float(np.max(np.abs(accuracy["sequential"] - accuracy["cohen"])))
    per_image = results["sequential"].samples
    print(f"largest difference: {worst:.1f} points (one image is {100 / len(selected):.1f})")
    print(f"forward passes: cohen {passes['cohen']:,}, sequential {passes['sequential']:,} "
          f"(per image: median {np.median(per_image):,.0f}, min {np.min(per_image):,}, max {np.max(per_image):,}) -> {passes['cohen'] / passes['sequential']:.2f}x fewer")
    print(f"wall time: cohen {seconds['cohen']:.1f} s, sequential {seconds['sequential']:.1f} s -> {seconds['cohen'] / seconds['sequential']:.2f}x less")
    print(f"results: {files['cohen']} and {files['sequential']} (certkit report {out}/*.tsv)")
    if not math.isfinite(worst):
        raise SystemExit("no results")


if __name__ == "__main__":
    main()
