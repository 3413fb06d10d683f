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
"""

from __future__ import annotations

import argparse
import statistics
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
    options = parser.parse_args()

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
