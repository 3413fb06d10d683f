"""Noisy samples per second: certkit's engines against the bare forward pass and a plain loop.

Same model, same N, same images, same batch size for every method, measured interleaved in
one process (per image, a, b, c, d in rotating order; a warm-up round, then the median
over rounds x images):

  (a) bare forward: the model on pre-made noisy batches, nothing else (the ceiling)
  (b) plain loop as in Cohen et al.'s 2019 reference ``Smooth._sample_noise``: repeat the
      image, randn_like, forward, argmax, copy predictions to the host and count there
  (c) certkit's torch engine through its Monte Carlo sampler (noise and counts on device)
  (d) certkit's onnx engine (the model exported to a temporary, verified ONNX file)
On CUDA, (c) is also measured with ``--precision bf16`` (opt-in; fp32 is certkit's default),
and with ``--compile`` also under ``torch.compile``.

    python benchmarks/engines.py [--model vit-mini --sigma 0.25 --n 1000 --images 4 --batch 1000 --rounds 3 --device auto --compile]
    python benchmarks/engines.py --model vit-b --checkpoint random --n 1000 --batch 250   # a paper-sized model, random weights

With ``--peers``, whole certification runs instead (CPU): certkit as ``certkit certify`` runs by
default, against IBM ART's ``PyTorchRandomizedSmoothing.certify`` and Cohen et al.'s reference
``Smooth`` loop (re-implemented in benchmarks/peers.py), same model, images, N0, N and alpha, each
run in a fresh process, the methods interleaved round by round, best of ``--rounds`` (default 2):

    python benchmarks/engines.py --peers [--images 20 --n0 100 --n 10000 --threads 1 --rounds 2]

ART is a benchmark-only dependency: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


def _dataset_images(count: int, spec) -> list[torch.Tensor]:
    """The first images of the shipped dataset when it fits the model, else random ones."""
    from certkit.workflows.resolve import open_dataset, resolve_dataset

    dataset = open_dataset(resolve_dataset("fashion-mnist-mini", None, None, {}))
    if (dataset.info.channels, tuple(dataset.info.image_size)) == (spec.channels, tuple(spec.image_size)):
        return [dataset[i][0] for i in range(count)]
    generator = torch.Generator().manual_seed(0)
    return [torch.rand((spec.channels, *spec.image_size), generator=generator) for _ in range(count)]


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


#: --peers: (label, arguments of benchmarks/peers.py). The first is the one the others are compared with.
PEERS = [
    ("certkit certify, defaults (engine auto, batch auto)", ["certkit"]),
    ("certkit, torch engine, batch 1000 (old defaults)", ["certkit", "--engine", "torch", "--batch", "1000"]),
    ("IBM ART certify, batch 32 (its default)", ["art", "--batch", "32"]),
    ("IBM ART certify, batch 1000", ["art", "--batch", "1000"]),
    ("Cohen et al. Smooth loop, batch 1000 (its default)", ["smooth", "--batch", "1000"]),
]


def run_peers(options: argparse.Namespace) -> None:
    """Whole certification runs, one fresh process each, interleaved, best of ``options.rounds``."""
    work = Path(tempfile.mkdtemp(prefix="certkit-peers-"))
    env = {**os.environ, "OMP_NUM_THREADS": str(options.threads), "MKL_NUM_THREADS": str(options.threads), "PYTHONWARNINGS": "ignore"}
    common = ["--model", options.model, "--sigma", str(options.sigma), "--images", str(options.images), "--n0", str(options.n0), "--n", str(options.n), "--work", str(work)]
    runs: dict[str, list[dict]] = {label: [] for label, _ in PEERS}
    loads = []
    for round_number in range(options.rounds):
        order = PEERS[round_number % len(PEERS) :] + PEERS[: round_number % len(PEERS)]  # rotate who goes first
        for label, arguments in order:
            loads.append(os.getloadavg()[0])
            began = time.perf_counter()
            done = subprocess.run([sys.executable, str(Path(__file__).with_name("peers.py")), *arguments, *common], capture_output=True, text=True, env=env)
            process_seconds = time.perf_counter() - began
            if done.returncode != 0:
                raise SystemExit(f"{label} failed:\n{done.stderr[-2000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            result["process_seconds"] = process_seconds
            runs[label].append(result)
            sampling = f", {result['sampling_seconds']:.1f} s of it sampling" if result.get("sampling_seconds") else ""
            print(f"round {round_number + 1}: {label}: {result['seconds']:.1f} s{sampling} ({process_seconds:.1f} s with start-up), engine {result['engine']}, batch {result['batch']}", flush=True)
    loads.append(os.getloadavg()[0])
    best = {label: min(runs[label], key=lambda r: r["seconds"]) for label in runs}
    samples = options.images * (options.n0 + options.n)
    art = max((best[label] for label in best if label.startswith("IBM ART")), key=lambda r: samples / r["seconds"])
    ours = best[PEERS[0][0]]
    print(f"\nmodel {options.model} sigma {options.sigma}, {options.images} images, N0 {options.n0}, N {options.n}, {options.threads} thread(s), "
          f"best of {options.rounds} fresh processes per method, interleaved; load average (1 min) {min(loads):.1f}..{max(loads):.1f} on {os.cpu_count()} cores")
    print(f"{'method':<52}{'best s':>8}{'samples/s':>11}{'vs best ART':>13}{'rounds (s)':>18}{'same predictions':>18}")
    for label, _ in PEERS:
        result = best[label]
        rate = samples / result["seconds"]
        same = sum(a == b for a, b in zip(result["predictions"], ours["predictions"]))
        rounds = "/".join(f"{r['seconds']:.0f}" for r in runs[label])
        print(f"{label:<52}{result['seconds']:>8.1f}{rate:>11,.0f}{rate / (samples / art['seconds']):>12.2f}x{rounds:>18}{f'{same}/{options.images}':>18}")
    # The load of a shared machine drifts during a run of minutes: the ratio within each round
    # (runs minutes apart, not an hour) says more than ratios of bests taken from different rounds.
    arts = [label for label, _ in PEERS if label.startswith("IBM ART")]
    per_round = [min(runs[label][i]["seconds"] for label in arts) / runs[PEERS[0][0]][i]["seconds"] for i in range(options.rounds)]
    print(f"certkit's default vs the faster ART run, round by round: {', '.join(f'{r:.2f}x' for r in per_round)} (median {statistics.median(per_round):.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit-mini")
    parser.add_argument("--sigma", type=float, default=0.25)
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the model's checkpoint for --sigma; 'random' for random weights")
    parser.add_argument("--n", type=int, default=1000, help="noisy samples per image")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-onnx", action="store_true", help="leave out (d); on CUDA it is left out anyway when onnxruntime has no CUDA provider")
    parser.add_argument("--compile", action="store_true", help="also measure (c) with torch.compile (its warm-up takes about a minute on a CPU)")
    parser.add_argument("--peers", action="store_true", help="whole certification runs against IBM ART and Cohen's loop, fresh processes (CPU)")
    parser.add_argument("--n0", type=int, default=100, help="--peers: selection samples")
    parser.add_argument("--threads", type=int, default=1, help="--peers: OMP_NUM_THREADS of every run")
    options = parser.parse_args()
    if options.peers:
        if options.n == 1000 and options.images == 4:  # the in-process defaults; --peers has the issue's own
            options.n, options.images = 10_000, 20
        options.rounds = 2 if options.rounds == 3 else options.rounds
        run_peers(options)
        return

    from certkit import plugins
    from certkit.engines import TorchEngine, resolve_device
    from certkit.export import export_onnx
    from certkit.models import LoadedModel, load_classifier
    from certkit.onnx_engine import OnnxEngine
    from certkit.sampling import MonteCarloSampler
    from certkit.smoothers import GaussianSmoother

    device = resolve_device(options.device)
    if str(options.checkpoint) == "random":
        torch.manual_seed(0)
        net = plugins.get("models", options.model).obj()
        loaded = LoadedModel(options.model, net, net.input_spec, Path("random"), "random")
    else:
        loaded = load_classifier(options.model, options.sigma, options.checkpoint)
    spec = loaded.spec
    onnx_engine = None
    if not options.no_onnx:
        folder = tempfile.TemporaryDirectory()
        report = export_onnx(loaded, Path(folder.name) / "model.onnx", sigma=options.sigma)  # on the CPU, verified
        onnx_engine = OnnxEngine(report.path, device)
        folder.cleanup()
        if device.type == "cuda" and onnx_engine.describe().get("provider") != "CUDAExecutionProvider":
            print("(d) left out: this onnxruntime has no CUDA provider, and a CPU provider beside a GPU measures nothing useful")
            onnx_engine = None
    model = loaded.model.eval().to(device)
    images = [image.to(device) for image in _dataset_images(options.images, spec)]
    smoother = GaussianSmoother(options.sigma)
    n, batch, sigma = options.n, options.batch, options.sigma
    num_classes = spec.num_classes

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    # Every method works one image (N samples) at a time; interleaving per image keeps a
    # machine whose load drifts from favouring whichever method ran in a quiet moment.
    # (a) the ceiling: forward passes on noisy batches made beforehand, same batch sizes as the others.
    sizes = [min(batch, n - start) for start in range(0, n, batch)]
    premade = [[image + sigma * torch.randn((size, *image.shape), device=device) for size in sizes] for image in images]

    @torch.inference_mode()
    def bare_forward(idx: int) -> None:
        for noisy in premade[idx]:
            model(noisy)

    # (b) Cohen et al. 2019, code/core.py Smooth._sample_noise, with the device as a parameter.
    def plain_loop(idx: int) -> None:
        image = images[idx]
        with torch.no_grad():
            counts = np.zeros(num_classes, dtype=int)
            remaining = n
            for _ in range(int(np.ceil(n / batch))):
                this_batch_size = min(batch, remaining)
                remaining -= this_batch_size
                repeated = image.repeat((this_batch_size, 1, 1, 1))
                noise = torch.randn_like(repeated, device=device) * sigma
                predictions = model(repeated + noise).argmax(1)
                counts += np.bincount(predictions.cpu().numpy(), minlength=num_classes)

    def through_sampler(engine) -> Callable[[int], None]:
        sampler = MonteCarloSampler(engine, smoother, batch, seed=0)
        return lambda idx: sampler.counts(images[idx], idx, "estimation", n)

    methods: dict[str, Callable[[int], None]] = {
        "(a) bare forward (ceiling)": bare_forward,
        "(b) plain loop (Cohen 2019)": plain_loop,
        "(c) certkit torch engine": through_sampler(TorchEngine(model, device)),
    }
    if onnx_engine is not None:
        methods["(d) certkit onnx engine"] = through_sampler(onnx_engine)
    if device.type == "cuda":
        methods["(c) torch engine, bf16 (opt-in)"] = through_sampler(TorchEngine(model, device, precision="bf16"))
    if options.compile:
        methods["(c) torch engine, compiled"] = through_sampler(TorchEngine(model, device, compile=True))

    rates: dict[str, list[float]] = {name: [] for name in methods}
    names = list(methods)
    step = 0
    for round_number in range(options.rounds + 1):  # round 0 warms up and is not counted
        for idx in range(len(images)):
            step += 1
            for name in names[step % len(names) :] + names[: step % len(names)]:
                sync()
                began = time.perf_counter()
                methods[name](idx)
                sync()
                if round_number:
                    rates[name].append(n / (time.perf_counter() - began))

    median = {name: statistics.median(values) for name, values in rates.items()}
    loop, ceiling = median["(b) plain loop (Cohen 2019)"], median["(a) bare forward (ceiling)"]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} torch threads"
    print(f"model {loaded.name} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params), {where}; N = {n} x {len(images)} images, batch {batch}, medians of {options.rounds} x {len(images)} timings")
    if onnx_engine is not None:
        print(f"onnx engine provider: {onnx_engine.provider}")
    print(f"{'method':<34}{'samples/s':>12}{'vs (b)':>9}{'vs (a)':>9}{'min..max samples/s':>24}")
    for name in names:
        low, high = min(rates[name]), max(rates[name])
        print(f"{name:<34}{_rate(median[name]):>12}{median[name] / loop:>8.2f}x{median[name] / ceiling:>8.2f}x{f'{_rate(low)}..{_rate(high)}':>24}")


if __name__ == "__main__":
    main()
