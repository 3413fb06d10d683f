"""Certifiers side by side (issue 13): certkit's sequential against Cohen's CERTIFY and the anchors
of the literature (Horváth et al. ICLR 2022; Voráček et al. NeurIPS 2024's confidence sequences),
on the same images, seeds, N0, N and alpha, in one run.

Two sample sources:
- ``replay`` (CPU, seconds): each image's class probabilities, measured once on the shipped model
  (``measure``: certkit's sampler, N = 10,000 noisy samples per image, 100 test images, cached in
  benchmarks/certifiers-replay.json), drive exact categorical sampling, so every certifier runs at
  N = 100,000. Numbers from it are labelled "replay" everywhere.
- ``model``: the real model through certkit's packed sampler (small N on a CPU).

Task 1 (Voráček et al.'s): decide "radius >= r" at two radii per sigma (0.5 and 1.0 at sigma 0.5):
mean samples per image, and agreement with Cohen's CERTIFY at N. Task 2 (the grid): certified
accuracy at every grid radius and total forward passes, against Cohen's CERTIFY at N. The
fixed-radius anchors run once per grid radius above 0 for task 2.

    python benchmarks/certifiers.py measure                          # the replay cache (real model; hours on a busy 2-core CPU)
    python benchmarks/certifiers.py run                              # replay, sigma 0.25 and 0.5, N = 100,000
    python benchmarks/certifiers.py run --source model --images 10 --n 2000 --device cpu
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CACHE = Path(__file__).with_name("certifiers-replay.json")
CACHE_FORMAT = 1
REPLAY_IMAGES = 100
REPLAY_N = 10_000
ALPHA, N0 = 0.001, 100
PAPER_STEPS = (100, 1000, 10_000, 120_000)  # Horváth et al.'s steps
TASK1_RADII = {0.5: (0.5, 1.0), 0.25: (0.25, 0.5)}  # the same thresholds Phi(1), Phi(2) at both sigmas


# -- the replay cache -------------------------------------------------------------------------


def measure(model: str, sigma: float, checkpoint: Path | None, images: int, n: int, batch: int, seed: int, device: str, engine_name: str) -> dict:
    """Class counts of ``n`` noisy samples per image, with certkit's own sampler and model
    (forward passes in PyTorch, or in ONNX Runtime from a verified export: faster on a CPU)."""
    import tempfile

    import torch

    from certkit.engines import TorchEngine, resolve_device
    from certkit.models import load_classifier
    from certkit.sampling import MonteCarloSampler
    from certkit.smoothers import GaussianSmoother

    loaded = load_classifier(model, sigma, checkpoint)
    if engine_name == "onnx":
        from certkit.export import export_onnx
        from certkit.onnx_engine import OnnxEngine

        with tempfile.TemporaryDirectory(prefix="certkit-replay-") as folder:
            engine = OnnxEngine(export_onnx(loaded, Path(folder) / f"{loaded.name}.onnx", sigma=sigma).path, resolve_device(device))
    else:
        engine = TorchEngine(loaded.model, resolve_device(device))
    dataset, indices = test_images(images)
    sampler = MonteCarloSampler(engine, GaussianSmoother(sigma), batch_size=batch, seed=seed)

    def count_all():
        counts = yield "estimation", n
        return counts

    counts: dict[int, list[int]] = {}
    began = time.perf_counter()
    with torch.inference_mode():
        for idx, result, _ in sampler.run((idx, dataset[idx][0], count_all()) for idx in indices):
            counts[idx] = [int(c) for c in result]
    return {
        "model": loaded.name, "sigma": sigma, "checkpoint": loaded.checkpoint.name, "checkpoint_sha256": loaded.checkpoint_sha256,
        "dataset": "fashion-mnist-mini", "split": "test", "n": n, "seed": seed, "batch": batch, "engine": f"{engine.name} fp32 on {engine.device}",
        "seconds": round(time.perf_counter() - began, 1),
        "indices": indices, "labels": [int(dataset[i][1]) for i in indices], "counts": [counts[i] for i in indices],
    }


def test_images(images: int):
    from certkit.workflows.resolve import open_dataset, resolve_dataset

    dataset = open_dataset(resolve_dataset("fashion-mnist-mini", None, "test", {}))
    skip = max(1, len(dataset) // images)
    return dataset, list(range(0, len(dataset), skip))[:images]


def save_source(path: Path, source: dict) -> None:
    """Add or replace one (model, sigma) entry of the cache file, atomically."""
    data = json.loads(path.read_text()) if path.exists() else {"format": CACHE_FORMAT, "sources": []}
    data["sources"] = [s for s in data["sources"] if (s["model"], s["sigma"]) != (source["model"], source["sigma"])] + [source]
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    temporary.replace(path)


def load_replay(path: Path, model: str, sigma: float, checkpoint: Path | None) -> dict:
    """The cache entry for ``model`` at ``sigma``; refused (naming the difference) when the cache
    was made for another model, sigma or checkpoint than the one this run would certify."""
    from certkit.checkpoints import sha256_of
    from certkit.errors import CertkitError
    from certkit.models import find_checkpoint

    fix = f"Measure it: python benchmarks/certifiers.py measure --model {model} --sigma {sigma:g}" + (f" --checkpoint {checkpoint}" if checkpoint else "") + f" --cache {path}."
    if not path.is_file():
        raise CertkitError(f"replay cache {path} does not exist.", fix)
    sources = json.loads(path.read_text()).get("sources", [])
    have = ", ".join(f"{s['model']} sigma {s['sigma']:g}" for s in sources) or "nothing"
    entry = next((s for s in sources if s["model"] == model and abs(s["sigma"] - sigma) < 1e-9), None)
    if entry is None:
        raise CertkitError(f"replay cache {path} holds {have}, not {model} at sigma {sigma:g}.", fix)
    wanted = find_checkpoint(model, sigma, checkpoint, None)
    sha = sha256_of(wanted)
    if entry["checkpoint_sha256"] != sha:
        raise CertkitError(
            f"replay cache {path} was measured with checkpoint {entry['checkpoint']} (sha256 {entry['checkpoint_sha256'][:12]}), not {wanted.name} (sha256 {sha[:12]}).", fix
        )
    return entry


# -- running certifiers on a source ---------------------------------------------------------


@dataclass(frozen=True)
class Method:
    """One row of a table: a registered certifier with its options."""

    label: str
    certifier: str
    options: dict
    n: int
    shortcut: bool = False  # --stop-if-wrong


@dataclass
class Outcome:
    labels: np.ndarray
    predictions: np.ndarray
    radii: np.ndarray
    samples: np.ndarray
    cut: np.ndarray

    def certified(self, radius: float) -> np.ndarray:
        return (self.predictions == self.labels) & (self.radii >= radius)


class ReplaySource:
    """Exact categorical sampling from the cached class probabilities."""

    kind = "replay"

    def __init__(self, entry: dict, images: int | None, seed: int) -> None:
        counts = np.asarray(entry["counts"], dtype=float)[:images]
        self.probabilities = counts / counts.sum(axis=1, keepdims=True)
        self.labels = np.asarray(entry["labels"])[:images]
        self.indices = list(entry["indices"])[:images]
        self.seed = seed

    def outcomes(self, make_process: Callable[[int], object]) -> Iterator[tuple[int, object]]:
        from certkit.certifiers.replay import CategoricalSampler

        sampler = CategoricalSampler(self.seed)
        for position, (idx, probabilities) in enumerate(zip(self.indices, self.probabilities)):
            yield position, _drive(make_process(int(self.labels[position])), sampler.for_image(probabilities, idx))


class ModelSource:
    """The real model, batches packed across images by certkit's sampler."""

    kind = "model"

    def __init__(self, model: str, sigma: float, checkpoint: Path | None, images: int, batch: int, seed: int, device: str) -> None:
        from certkit.engines import TorchEngine, resolve_device
        from certkit.models import load_classifier
        from certkit.smoothers import GaussianSmoother

        loaded = load_classifier(model, sigma, checkpoint)
        self.engine = TorchEngine(loaded.model, resolve_device(device))
        self.smoother = GaussianSmoother(sigma)
        self.dataset, self.indices = test_images(images)
        self.labels = np.asarray([int(self.dataset[i][1]) for i in self.indices])
        self.batch, self.seed = batch, seed

    def outcomes(self, make_process: Callable[[int], object]) -> Iterator[tuple[int, object]]:
        from certkit.sampling import MonteCarloSampler

        sampler = MonteCarloSampler(self.engine, self.smoother, batch_size=self.batch, seed=self.seed)
        position = {idx: p for p, idx in enumerate(self.indices)}
        work = ((idx, self.dataset[idx][0], make_process(int(self.labels[position[idx]]))) for idx in self.indices)
        for idx, result, _ in sampler.run(work):
            yield position[idx], result


def _drive(process, sample):
    from certkit.sampling import drive

    return drive(process, sample)


def run_method(source, method: Method, sigma: float) -> Outcome:
    from certkit import plugins
    from certkit.certifiers.shortcut import stop_if_wrong
    from certkit.interfaces import CertifySettings
    from certkit.smoothers import GaussianSmoother

    smoother = GaussianSmoother(sigma) if source.kind == "replay" else source.smoother
    certifier = plugins.get("certifiers", method.certifier).obj()
    settings = CertifySettings(N0, method.n, ALPHA, dict(method.options))
    certifier.check(settings)
    if hasattr(certifier, "check_reach"):
        certifier.check_reach(smoother, settings)

    def make(label: int):
        process = certifier.process(smoother, settings)
        return stop_if_wrong(process, label) if method.shortcut else process

    size = len(source.labels)
    out = Outcome(np.asarray(source.labels), np.zeros(size, int), np.zeros(size), np.zeros(size, int), np.zeros(size, bool))
    for position, result in source.outcomes(make):
        certificate, cut = result if method.shortcut else (result, False)
        out.predictions[position], out.radii[position], out.samples[position], out.cut[position] = certificate.prediction, certificate.radius, certificate.samples, cut
    return out


# -- the two tasks ------------------------------------------------------------------------------


def grid_for(sigma: float, n: int) -> list[float]:
    """0 to 1.5 in steps of 0.25, cut at the largest radius CERTIFY can reach with N samples."""
    from certkit.smoothers import GaussianSmoother
    from certkit.stats import clopper_pearson_lower

    reachable = GaussianSmoother(sigma).radius(clopper_pearson_lower(n, n, ALPHA))
    return [r for r in np.arange(0, 1.5001, 0.25).round(2).tolist() if r <= reachable]


def check_every(source) -> int:
    """The confidence sequences check after every sample on replay, as the reference code does;
    on the real model after every noise block (one request per check)."""
    return 1 if source.kind == "replay" else 100


def horvath_steps(n: int) -> str:
    """The paper's steps at N = 100,000 or more; scaled down with N for a small model run."""
    steps = PAPER_STEPS if n >= 100_000 else tuple(max(10, round(s * n / PAPER_STEPS[-1])) for s in PAPER_STEPS)
    return ",".join(map(str, steps))


def task1(source, sigma: float, n: int, tag: str) -> list[str]:
    lines = [f"Task 1 ({tag}), sigma {sigma:g}: decide radius >= r; mean samples per image (N0 {N0} included), agreement with cohen at N = {n:,}"]
    lines.append(f"{'certifier':<28}" + "".join(f"{'r=' + format(r, 'g') + ' samples':>18}{'agree':>8}{'cert %':>8}" for r in TASK1_RADII[sigma]))
    reference = run_method(source, Method("cohen", "cohen", {}, n), sigma)
    rows: dict[str, list[tuple[float, float, float]]] = {}
    for r in TASK1_RADII[sigma]:
        methods = [
            Method("cohen (fixed N)", "cohen", {}, n),
            Method("sequential cp", "sequential", {"radii": [r]}, n),
            Method("sequential betting", "sequential", {"radii": [r], "bound": "betting"}, n),
            Method("horvath", "horvath", {"radius": r, "steps": horvath_steps(n)}, n),
            Method("cs-union", "cs-union", {"radius": r, "check_every": check_every(source)}, n),
            Method("cs-betting", "cs-betting", {"radius": r, "check_every": check_every(source)}, n),
        ]
        decision = reference.certified(r)
        for method in methods:
            outcome = reference if method.certifier == "cohen" else run_method(source, method, sigma)
            mine = outcome.certified(r)
            rows.setdefault(method.label, []).append((outcome.samples.mean(), (mine == decision).mean() * 100, mine.mean() * 100))
    for label, cells in rows.items():
        lines.append(f"{label:<28}" + "".join(f"{s:>18,.0f}{a:>7.0f}%{c:>8.1f}" for s, a, c in cells))
    anchors = ("horvath", "cs-union", "cs-betting")
    for i, r in enumerate(TASK1_RADII[sigma]):
        best = min(rows[a][i][0] for a in anchors)
        ours = min(rows["sequential cp"][i][0], rows["sequential betting"][i][0])
        lines.append(f"target r={r:g}: sequential within 10% of the best anchor: {ours:,.0f} vs {best:,.0f} -> {'met' if ours <= 1.1 * best else 'NOT met'} ({ours / best:.2f}x)")
    return lines


def task2(source, sigma: float, n: int, tag: str) -> list[str]:
    radii = grid_for(sigma, n)
    lines = [f"Task 2 ({tag}), sigma {sigma:g}: certified accuracy (%) on the grid and forward passes; N = {n:,}, N0 {N0}, alpha {ALPHA}, {len(source.labels)} images"]
    lines.append(f"{'certifier':<34}" + "".join(f"{r:>7g}" for r in radii) + f"{'max diff':>10}{'passes':>14}{'fewer':>8}")
    reference = run_method(source, Method("cohen", "cohen", {}, n), sigma)
    base = np.array([reference.certified(r).mean() * 100 for r in radii])
    methods = [
        Method("sequential cp (chosen looks)", "sequential", {"radii": radii}, n),
        Method("sequential betting", "sequential", {"radii": radii, "bound": "betting"}, n),
        Method("sequential cp, looks 1000 x 2", "sequential", {"radii": radii, "first": 1000, "growth": 2}, n),
        Method("sequential cp + stop-if-wrong*", "sequential", {"radii": radii}, n, shortcut=True),
    ]
    results: list[tuple[str, np.ndarray, int]] = [("cohen (CERTIFY)", base, int(reference.samples.sum()))]
    for method in methods:
        outcome = run_method(source, method, sigma)
        results.append((method.label, np.array([outcome.certified(r).mean() * 100 for r in radii]), int(outcome.samples.sum())))
    from certkit.errors import CertkitError

    for anchor in ("horvath", "cs-union", "cs-betting"):
        accuracy, passes = [np.nan], 0  # fixed-radius: one run per grid radius above 0
        for r in radii[1:]:
            options = {"radius": r, "steps": horvath_steps(n)} if anchor == "horvath" else {"radius": r, "check_every": check_every(source)}
            try:
                outcome = run_method(source, Method(anchor, anchor, options, n), sigma)
            except CertkitError:  # the anchor cannot reach r with this budget ("x" in the table)
                accuracy.append(np.inf)
                continue
            accuracy.append(outcome.certified(r).mean() * 100)
            passes += int(outcome.samples.sum())
        results.append((f"{anchor} (one run per radius)", np.array(accuracy), passes))
    total = results[0][2]
    for label, accuracy, passes in results:
        diff = np.nanmax(np.abs(np.where(np.isinf(accuracy), np.nan, accuracy) - base))
        cells = "".join(f"{'-':>7}" if np.isnan(a) else f"{'x':>7}" if np.isinf(a) else f"{a:>7.1f}" for a in accuracy)
        lines.append(f"{label:<34}{cells}{diff:>9.1f} {passes:>14,}{total / passes:>7.2f}x")
    lines.append("* evaluation shortcut (--stop-if-wrong): images whose selected class is not the label are cut after selection")
    lines.append("- fixed-radius certifiers at r = 0: not run;  x: the certifier cannot reach r with N samples (refused, no passes counted)")
    honest = [(label, accuracy, passes) for label, accuracy, passes in results[1:] if "*" not in label]
    fewest = min(honest, key=lambda row: row[2])
    ours = results[1]
    equal = np.nanmax(np.abs(ours[1] - base)) <= 1.0
    goal = 5 if sigma >= 0.5 else 10
    lines.append(f"target: sequential needs the fewest passes of all certifiers: {'met' if fewest[0].startswith('sequential') else 'NOT met'} (fewest: {fewest[0]})")
    lines.append(f"target: certified accuracy within 1 point of cohen at every radius: {'met' if equal else 'NOT met'}")
    scope = "" if n == 100_000 else f" [the target is set for N = 100,000; this run has N = {n:,}]"
    lines.append(f"target: >= {goal}x fewer passes than cohen: {'met' if total / ours[2] >= goal else 'NOT met'} ({total / ours[2]:.2f}x){scope}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="measure the replay cache (class counts per image) with the real model")
    r = sub.add_parser("run", help="run the tasks and print the tables")
    for p in (m, r):
        p.add_argument("--model", default="vit-mini")
        p.add_argument("--sigma", type=float, action="append", help="repeatable (default: 0.25 and 0.5)")
        p.add_argument("--checkpoint", type=Path, default=None)
        p.add_argument("--cache", type=Path, default=CACHE)
        p.add_argument("--batch", type=int, default=1000)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--device", default="cpu")
    m.add_argument("--images", type=int, default=REPLAY_IMAGES)
    m.add_argument("--n", type=int, default=REPLAY_N)
    m.add_argument("--engine", choices=("torch", "onnx"), default="onnx")
    r.add_argument("--source", choices=("replay", "model"), default="replay")
    r.add_argument("--images", type=int, default=None, help="default: all 100 (replay), 10 (model)")
    r.add_argument("--n", type=int, default=100_000)
    r.add_argument("--tasks", default="1,2")
    options = parser.parse_args()

    from certkit.errors import CertkitError

    sigmas = options.sigma or [0.25, 0.5]
    try:
        if options.command == "measure":
            for sigma in sigmas:
                source = measure(options.model, sigma, options.checkpoint, options.images, options.n, options.batch, options.seed, options.device, options.engine)
                save_source(options.cache, source)
                print(f"{options.model} sigma {sigma:g}: {len(source['indices'])} images x {options.n:,} samples in {source['seconds']} s -> {options.cache}", flush=True)
            return
        sources = {}
        for sigma in sigmas:  # every refusal before any work
            if options.source == "replay":
                sources[sigma] = ReplaySource(load_replay(options.cache, options.model, sigma, options.checkpoint), options.images, options.seed)
            else:
                sources[sigma] = ModelSource(options.model, sigma, options.checkpoint, options.images or 10, options.batch, options.seed, options.device)
        for sigma, source in sources.items():
            tag = "replay" if source.kind == "replay" else f"real model on {options.device}"
            began = time.perf_counter()
            for task in options.tasks.split(","):
                print("\n".join((task1 if task == "1" else task2)(source, sigma, options.n, tag)) + "\n", flush=True)
            print(f"({tag}, sigma {sigma:g}: {time.perf_counter() - began:.0f} s)\n", flush=True)
    except CertkitError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
