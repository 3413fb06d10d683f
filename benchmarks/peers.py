"""One certification run of one method, in a process of its own; ``benchmarks/engines.py --peers``
starts it once per method and round and reads the JSON line it prints last.

Methods (every one certifies the same first ``--images`` test images of the shipped dataset with
the same model, N0, N and alpha, Cohen et al.'s CERTIFY):

  certkit          ``run_certify`` exactly as ``certkit certify`` runs it, with certkit's defaults
                   (``--engine auto``, the default batch) unless ``--engine``/``--batch`` say otherwise
  art              IBM ART's ``PyTorchRandomizedSmoothing.certify`` (n0 = its ``sample_size``)
  smooth           Cohen et al.'s reference loop (locuslab/smoothing, code/core.py ``Smooth``),
                   re-implemented below, as its certify.py drives it: one image at a time

Timing: ``seconds`` is the certification itself. For certkit it is the whole ``run_certify`` call,
so it also includes loading the model, finding (or making) its ONNX export, opening the dataset and
writing the results file; for the peers only their certify calls (model and images already
loaded). That favours the peers. ``process_seconds`` (measured by the parent) includes imports.

    python benchmarks/peers.py certkit --images 20 --n0 100 --n 10000 --work /tmp/peers
    python benchmarks/peers.py art --images 20 --n0 100 --n 10000 --batch 32
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import beta, norm

DATASET = "fashion-mnist-mini"


def load_images(count: int) -> tuple[torch.Tensor, list[int]]:
    """The first ``count`` test images (what ``certkit certify --max count`` certifies)."""
    from certkit.workflows.resolve import open_dataset, resolve_dataset

    dataset = open_dataset(resolve_dataset(DATASET, None, None, {}))
    pairs = [dataset[i] for i in range(count)]
    return torch.stack([image for image, _ in pairs]), [int(label) for _, label in pairs]


class ReferenceSmooth:
    """Cohen et al.'s ``Smooth`` (locuslab/smoothing, code/core.py), rewritten for this benchmark.

    The work per image is the reference's: N0 then N noisy copies in batches of ``batch_size``,
    each batch made by repeating the image and adding ``randn_like`` noise, the base classifier's
    argmax copied to the host and counted there one prediction at a time, then a one-sided
    Clopper-Pearson bound (``proportion_confint(nA, n, alpha=2*alpha, method="beta")[0]`` there;
    the same beta quantile here) and sigma * Phi^-1 of it. Differences: the device is a parameter
    (the reference hard-codes CUDA), and the beta quantile comes from scipy, not statsmodels.
    """

    ABSTAIN = -1

    def __init__(self, classifier: torch.nn.Module, num_classes: int, sigma: float, device: torch.device) -> None:
        self.classifier, self.num_classes, self.sigma, self.device = classifier, num_classes, sigma, device

    def certify(self, x: torch.Tensor, n0: int, n: int, alpha: float, batch_size: int) -> tuple[int, float]:
        self.classifier.eval()
        guess = int(self.sample_noise(x, n0, batch_size).argmax())
        count = int(self.sample_noise(x, n, batch_size)[guess])
        bound = self.lower_confidence_bound(count, n, alpha)
        return (self.ABSTAIN, 0.0) if bound < 0.5 else (guess, self.sigma * float(norm.ppf(bound)))

    def sample_noise(self, x: torch.Tensor, num: int, batch_size: int) -> np.ndarray:
        tally = np.zeros(self.num_classes, dtype=int)
        with torch.no_grad():
            for _ in range(math.ceil(num / batch_size)):
                size = min(batch_size, num)
                num -= size
                repeated = x.repeat((size, 1, 1, 1))
                noisy = repeated + torch.randn_like(repeated, device=self.device) * self.sigma
                tally += self.count(self.classifier(noisy).argmax(1).cpu().numpy())
        return tally

    def count(self, predictions: np.ndarray) -> np.ndarray:
        tally = np.zeros(self.num_classes, dtype=int)
        for label in predictions:  # the reference's _count_arr: a Python loop over the batch
            tally[label] += 1
        return tally

    @staticmethod
    def lower_confidence_bound(count: int, n: int, alpha: float) -> float:
        return 0.0 if count == 0 else float(beta.ppf(alpha, count, n - count + 1))


def run_certkit(options: argparse.Namespace) -> dict:
    from certkit.results.reader import read_results
    from certkit.workflows.certify import CertifyJob, run_certify

    out = Path(options.work) / f"certkit-{options.engine}-{options.batch}.tsv"
    job = CertifyJob(
        model=options.model, sigma=options.sigma, data=DATASET, n0=options.n0, n=options.n, alpha=options.alpha,
        batch=options.batch, seed=0, engine=options.engine, max=options.images, out=out, overwrite=True, device="cpu",
    )
    began = time.perf_counter()
    run_certify(job, {})
    seconds = time.perf_counter() - began
    results = read_results(out)
    meta = json.loads(Path(f"{out}.meta.json").read_text())
    engine, details = meta["engine"], meta["engine_details"]
    if "export_reused" in details:
        engine += " (export reused)" if details["export_reused"] else " (exported now)"
    sampling = float(sum(results.time)) if getattr(results, "time", None) is not None else None  # the rows' own times: sampling only
    return {"seconds": seconds, "sampling_seconds": sampling, "predictions": results.predict.tolist(), "radii": results.radius.tolist(), "engine": engine, "batch": meta["batch"]}


def run_art(options: argparse.Namespace) -> dict:
    from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing

    from certkit.models import load_classifier

    loaded = load_classifier(options.model, options.sigma)
    images, _ = load_images(options.images)
    np.random.seed(0)
    smoothed = PyTorchRandomizedSmoothing(
        model=loaded.model.eval(), loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(images.shape[1:]), nb_classes=loaded.spec.num_classes,
        channels_first=True, sample_size=options.n0, scale=options.sigma, alpha=options.alpha, device_type="cpu",
    )
    began = time.perf_counter()
    predictions, radii = smoothed.certify(images.numpy(), n=options.n, batch_size=options.batch)
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "predictions": [int(p) for p in predictions], "radii": [float(r) for r in radii], "engine": "torch (ART)", "batch": options.batch}


def run_smooth(options: argparse.Namespace) -> dict:
    from certkit.models import load_classifier

    loaded = load_classifier(options.model, options.sigma)
    images, _ = load_images(options.images)
    torch.manual_seed(0)
    smooth = ReferenceSmooth(loaded.model, loaded.spec.num_classes, options.sigma, torch.device("cpu"))
    began = time.perf_counter()
    results = [smooth.certify(image, options.n0, options.n, options.alpha, options.batch) for image in images]
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "predictions": [p for p, _ in results], "radii": [r for _, r in results], "engine": "torch (reference loop)", "batch": options.batch}


RUNNERS = {"certkit": run_certkit, "art": run_art, "smooth": run_smooth}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("method", choices=sorted(RUNNERS))
    parser.add_argument("--model", default="vit-mini")
    parser.add_argument("--sigma", type=float, default=0.25)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--alpha", type=float, default=0.001)
    parser.add_argument("--batch", type=int, default=None, help="certkit: default = certkit's default; art/smooth: required")
    parser.add_argument("--engine", default="auto", help="certkit only")
    parser.add_argument("--work", default="/tmp/certkit-peers", help="certkit's results (and its .onnx-cache) go here")
    options = parser.parse_args()
    if options.method != "certkit" and options.batch is None:
        parser.error(f"{options.method} needs --batch")
    Path(options.work).mkdir(parents=True, exist_ok=True)
    result = RUNNERS[options.method](options)
    result.update(method=options.method, threads=torch.get_num_threads(), samples=options.images * (options.n0 + options.n))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
