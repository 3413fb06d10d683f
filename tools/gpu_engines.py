"""GPU measurements of issue 13 ("The GPU path"), one step per subcommand so that a driver can
give each its own timeout (tools/gpu_engines.sh runs them all on a lent machine):

  utilisation  bf16 forward passes of a random-weight ViT (vit-b, vit-l) as a share of the chip's
               dense bf16 peak, for each variant x batch: autocast eager (certkit's --precision
               bf16), autocast + a CUDA graph, bf16 weights eager (not certkit's: LayerNorm and
               softmax in bf16 too), and torch.compile (default and reduce-overhead = CUDA
               graphs; at one batch size, a compile costs a minute); then certkit's torch engine
               through the sampler at the best autocast batch. FLOPs per sample are counted by
               torch.utils.flop_counter (a multiply-add is 2 FLOPs, as in the peak).
  agreement    certify the shipped vit-mini with --precision fp32 and bf16 (torch engine, same
               seed): same predictions? largest radius and count differences.
  syncs        host-device waits per batch in certkit's sampler (torch.cuda sync debug mode):
               there should be none but the one host copy of counts per finished request.

``--toy`` runs every step at toy size on the CPU (vit-mini for both ViTs, few samples, no CUDA
graphs or compile), to check the script before device time is spent on it.

    python tools/gpu_engines.py utilisation --model vit-b --batches 256,512,1024
    python tools/gpu_engines.py agreement --images 20 --n 10000
    python tools/gpu_engines.py syncs
    python tools/gpu_engines.py --toy utilisation --model vit-b   # on a CPU
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import warnings
from pathlib import Path

import torch

#: Dense (non-sparse) bf16 tensor-core peaks, TFLOP/s, from NVIDIA's data sheets (SXM parts).
PEAK_BF16_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0}


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


def random_vit(name: str, toy: bool) -> tuple[torch.nn.Module, tuple[int, ...]]:
    from certkit import plugins

    torch.manual_seed(0)
    model = plugins.get("models", "vit-mini" if toy else name).obj().eval()
    spec = model.input_spec
    return model, (spec.channels, *spec.image_size)


def flops_per_sample(model: torch.nn.Module, shape: tuple[int, ...], device: torch.device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(torch.rand((2, *shape), device=device))
    return counter.get_total_flops() / 2


def timed_rate(step, batch: int, seconds: float, sync) -> float:
    """Samples per second of ``step()`` (one batch): warm-up, then at least ``seconds`` of calls."""
    for _ in range(3):
        step()
    sync()
    calls, began = 0, time.perf_counter()
    while True:
        step()
        calls += 1
        if calls % 5 == 0:
            sync()
            elapsed = time.perf_counter() - began
            if elapsed >= seconds:
                return calls * batch / elapsed


def variants(model: torch.nn.Module, device: torch.device, shape: tuple[int, ...], toy: bool, compile_modes: list[str]) -> dict:
    """name -> (batch -> one-batch step), built lazily so that a failing variant only loses itself."""

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16)

    def eager(batch: int):
        x = torch.rand((batch, *shape), device=device)

        def step():
            with torch.inference_mode(), autocast():
                model(x)

        return step

    def graphed(batch: int):
        x = torch.rand((batch, *shape), device=device)
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream), torch.inference_mode(), autocast():
            for _ in range(2):
                model(x)  # warm-up on a side stream, as CUDA graph capture asks
        torch.cuda.current_stream(device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), autocast(), torch.cuda.graph(graph):
            model(x)
        return graph.replay

    def compiled(mode: str):
        net = torch.compile(model, mode=None if mode == "default" else mode, dynamic=False)

        def make(batch: int):
            x = torch.rand((batch, *shape), device=device)

            def step():
                with torch.inference_mode(), autocast():
                    net(x)

            return step

        return make

    converted: list[torch.nn.Module] = []

    def bf16_weights(batch: int):
        if not converted:
            converted.append(copy.deepcopy(model).to(torch.bfloat16))
        x = torch.rand((batch, *shape), device=device, dtype=torch.bfloat16)

        def step():
            with torch.inference_mode():
                converted[0](x)

        return step

    found = {"autocast eager (certkit --precision bf16)": eager}
    if not toy:
        found["autocast + CUDA graph"] = graphed
    for mode in compile_modes:
        found[f"autocast + torch.compile {mode}"] = compiled(mode)
    found["bf16 weights eager (not certkit's)"] = bf16_weights
    return found


def utilisation(options: argparse.Namespace) -> dict:
    device = torch.device("cpu" if options.toy else "cuda")
    model, shape = random_vit(options.model, options.toy)
    model = model.to(device)
    flops = flops_per_sample(model, shape, device)
    peak = peak_tflops(device, options.peak_tflops)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    batches = [int(b) for b in options.batches.split(",")]
    print(f"{options.model}{' (toy: vit-mini)' if options.toy else ''}: {flops / 1e9:.2f} GFLOP per sample (flop_counter, 2 per multiply-add); peak {peak} TFLOP/s bf16 dense")
    rows = []
    compile_modes = [m for m in options.compile.split(",") if m]
    for name, make in variants(model, device, shape, options.toy, compile_modes).items():
        for batch in [options.compile_batch] if "compile" in name else batches:  # a compile costs a minute: one batch size
            began = time.perf_counter()
            try:
                rate = timed_rate(make(batch), batch, options.seconds, sync)
            except Exception as error:  # noqa: BLE001 - report the variant as failed, measure the rest
                print(f"  {name}, batch {batch}: failed ({type(error).__name__}: {str(error).splitlines()[0][:120]})", flush=True)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            share = rate * flops / 1e12 / peak if peak else None
            rows.append({"variant": name, "batch": batch, "samples_per_s": rate, "tflops": rate * flops / 1e12, "share_of_peak": share, "setup_and_run_s": time.perf_counter() - began})
            print(f"  {name:<48} batch {batch:>5}: {rate:>10,.0f} samples/s  {rate * flops / 1e12:7.1f} TFLOP/s" + (f"  {share:6.1%} of peak" if share else ""), flush=True)
    rows += sampler_rate(options, rows, flops, peak, device)
    return {"model": options.model, "toy": options.toy, "gflops_per_sample": flops / 1e9, "peak_tflops": peak, "rows": rows}


def sampler_rate(options, rows: list[dict], flops: float, peak: float | None, device: torch.device) -> list[dict]:
    """certkit's torch engine (--precision bf16) through the sampler, at the best autocast-eager batch."""
    from certkit.engines import TorchEngine
    from certkit.sampling import MonteCarloSampler
    from certkit.smoothers import GaussianSmoother

    eager = [r for r in rows if r["variant"].startswith("autocast eager")]
    if not eager:
        return []
    batch = max(eager, key=lambda r: r["samples_per_s"])["batch"]
    model, shape = random_vit(options.model, options.toy)
    sampler = MonteCarloSampler(TorchEngine(model, device, precision="bf16"), GaussianSmoother(0.5), batch, seed=0)
    image = torch.rand(shape, device=device)
    n = batch * (4 if options.toy else 20)
    sampler.counts(image, 0, "warm-up", batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    began = time.perf_counter()
    sampler.counts(image, 1, "estimation", n)
    rate = n / (time.perf_counter() - began)
    share = rate * flops / 1e12 / peak if peak else None
    print(f"  {'certkit torch engine bf16 through the sampler':<48} batch {batch:>5}: {rate:>10,.0f} samples/s  {rate * flops / 1e12:7.1f} TFLOP/s" + (f"  {share:6.1%} of peak" if share else ""))
    return [{"variant": "certkit sampler, torch engine bf16", "batch": batch, "samples_per_s": rate, "tflops": rate * flops / 1e12, "share_of_peak": share}]


def agreement(options: argparse.Namespace) -> dict:
    from certkit.results.reader import read_results
    from certkit.workflows.certify import CertifyJob, run_certify

    device = "cpu" if options.toy else "cuda"
    folder = Path(options.out)
    files = {}
    for precision in ("fp32", "bf16"):
        out = folder / f"certify-{precision}.tsv"
        job = CertifyJob(model="vit-mini", sigma=0.25, data="fashion-mnist-mini", n0=100, n=options.n, alpha=0.001, batch=None, seed=0,
                         engine="torch", precision=precision, max=options.images, out=out, overwrite=True, device=device)
        began = time.perf_counter()
        run_certify(job, {})
        print(f"  certified {options.images} images at {precision} in {time.perf_counter() - began:.1f} s")
        files[precision] = read_results(out)
    a, b = files["fp32"], files["bf16"]
    report = {
        "images": int(len(a.predict)),
        "same_prediction": int((a.predict == b.predict).sum()),
        "max_radius_diff": float(abs(a.radius - b.radius).max()),
        "n": options.n,
    }
    print(f"fp32 vs bf16 ({report['images']} images, N {options.n}): same prediction {report['same_prediction']}/{report['images']}, max |radius difference| {report['max_radius_diff']:.4f}")
    return report


def syncs(options: argparse.Namespace) -> dict:
    """Count the host-device waits while the sampler certifies packed images (cohen, 4 images)."""
    from certkit import plugins
    from certkit.engines import TorchEngine
    from certkit.interfaces import CertifySettings
    from certkit.models import load_classifier
    from certkit.smoothers import GaussianSmoother
    from certkit.sampling import MonteCarloSampler

    if options.toy:
        print("syncs: CUDA only (torch.cuda.set_sync_debug_mode); nothing to count on a CPU")
        return {"toy": True}
    device = torch.device("cuda")
    loaded = load_classifier("vit-mini", 0.25)
    smoother = GaussianSmoother(0.25)
    certifier = plugins.get("certifiers", "cohen").obj()
    settings = CertifySettings(n0=100, n=10_000, alpha=0.001)
    batch = 5000
    sampler = MonteCarloSampler(TorchEngine(loaded.model, device), smoother, batch, seed=0)
    images = [torch.rand(1, 28, 28, device=device) for _ in range(4)]
    list(sampler.run((i, image, certifier.process(smoother, settings)) for i, image in enumerate(images)))  # warm-up
    torch.cuda.set_sync_debug_mode("warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        list(sampler.run((i, image, certifier.process(smoother, settings)) for i, image in enumerate(images)))
    torch.cuda.set_sync_debug_mode(0)
    batches = -(-4 * (settings.n0 + settings.n) // batch)
    waits = [str(w.message).splitlines()[0][:100] for w in caught if "synchroniz" in str(w.message).lower()]
    print(f"syncs: {len(waits)} host-device waits over about {batches} batches and {2 * len(images)} requests (direct block draws: {sampler._direct})")
    for text in sorted(set(waits)):
        print(f"  {waits.count(text)} x {text}")
    return {"waits": len(waits), "batches": batches, "requests": 2 * len(images), "direct": sampler._direct}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toy", action="store_true", help="toy size on the CPU, to test the script")
    parser.add_argument("--json", type=Path, default=None, help="also write the step's numbers here")
    sub = parser.add_subparsers(dest="step", required=True)
    use = sub.add_parser("utilisation")
    use.add_argument("--model", default="vit-b")
    use.add_argument("--batches", default="256,512,1024")
    use.add_argument("--seconds", type=float, default=3.0, help="timed seconds per variant and batch")
    use.add_argument("--compile", default="default,reduce-overhead", help="torch.compile modes to try ('' for none); reduce-overhead = CUDA graphs")
    use.add_argument("--compile-batch", type=int, default=512, help="the one batch size compiled variants run at")
    use.add_argument("--peak-tflops", type=float, default=None, help="default: from the GPU's name (H200, H100, A100)")
    agree = sub.add_parser("agreement")
    agree.add_argument("--images", type=int, default=20)
    agree.add_argument("--n", type=int, default=10_000)
    agree.add_argument("--out", default="/tmp/gpu-engines-agreement")
    sub.add_parser("syncs")
    options = parser.parse_args()
    if options.toy and options.step == "utilisation":
        options.batches, options.seconds, options.compile_batch = "8,16", 0.5, 16
    if options.toy and options.step == "agreement":
        options.images, options.n = min(options.images, 2), min(options.n, 300)
    result = {"utilisation": utilisation, "agreement": agreement, "syncs": syncs}[options.step](options)
    if options.json:
        options.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
