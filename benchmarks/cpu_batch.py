"""Forward passes per second on a CPU by batch size, onnx and torch engines: the measurement behind
the default CPU batch (certkit.engines.DEFAULT_CPU_BATCH, docs/engines.md "Batch size on a CPU").

Each (engine, batch) classifies random images until ``--samples`` samples are done; the cases are
interleaved, rotating who goes first, and the median over ``--rounds`` rounds is printed.

    OMP_NUM_THREADS=1 python benchmarks/cpu_batch.py [--model vit-mini --batches 16,32,64,100,128,256,1000 --rounds 8]
    OMP_NUM_THREADS=1 python benchmarks/cpu_batch.py --model resnet-mini --random   # random weights
    OMP_NUM_THREADS=2 python benchmarks/cpu_batch.py --batches 32,64,128 --rounds 5

With more than one thread, ``onnx`` (certkit's engine: each batch cut into two slices per
thread, a pool of that many threads running them, one ONNX Runtime thread each) is also measured against ``onnx-intra``,
one run per batch with ONNX Runtime's own intra-op threads (what the engine did before).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit-mini")
    parser.add_argument("--sigma", type=float, default=0.25)
    parser.add_argument("--random", action="store_true", help="random weights (for models without a shipped checkpoint)")
    parser.add_argument("--batches", default="16,32,64,100,128,256,1000")
    parser.add_argument("--samples", type=int, default=3200, help="per timing")
    parser.add_argument("--rounds", type=int, default=8)
    options = parser.parse_args()

    from certkit import plugins
    from certkit.engines import TorchEngine
    from certkit.export import export_onnx
    from certkit.models import LoadedClassifier, load_classifier
    from certkit.onnx_engine import CPU_PROVIDER, OnnxEngine, make_session

    if options.random:
        torch.manual_seed(0)
        net = plugins.get("models", options.model).obj()
        loaded = LoadedClassifier(options.model, net, net.input_spec, None, "0" * 64)
    else:
        loaded = load_classifier(options.model, options.sigma)
    threads = torch.get_num_threads()
    engines = {}
    with tempfile.TemporaryDirectory() as folder:
        path = export_onnx(loaded, Path(folder) / "model.onnx").path
        engines["onnx"] = OnnxEngine(path, torch.device("cpu"))
        if threads > 1:
            torch.set_num_threads(1)
            intra = OnnxEngine(path, torch.device("cpu"))  # no slices; its session gets ORT's own threads
            torch.set_num_threads(threads)
            intra.session = make_session(path, [CPU_PROVIDER], threads=threads)
            engines["onnx-intra"] = intra
    engines["torch"] = TorchEngine(loaded.model, torch.device("cpu"))
    spec = loaded.spec
    batches = [int(b) for b in options.batches.split(",")]
    cases = [(name, batch) for name in engines for batch in batches]
    rates: dict[tuple[str, int], list[float]] = {case: [] for case in cases}
    for round_number in range(options.rounds):
        shift = round_number % len(cases)
        for name, batch in cases[shift:] + cases[:shift]:
            images = torch.rand(batch, spec.channels, *spec.image_size)
            calls = max(1, options.samples // batch)
            began = time.perf_counter()
            for _ in range(calls):
                engines[name].classify(images)
            rates[(name, batch)].append(calls * batch / (time.perf_counter() - began))
    print(f"{loaded.name}{' (random weights)' if options.random else ''}, {torch.get_num_threads()} thread(s): samples/s, median of {options.rounds} interleaved rounds of {options.samples}")
    print(f"{'batch':<12}" + "".join(f"{b:>8}" for b in batches))
    for name in engines:
        print(f"{name:<12}" + "".join(f"{statistics.median(rates[(name, b)]):>8,.0f}" for b in batches))


if __name__ == "__main__":
    main()
