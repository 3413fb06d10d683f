"""Forward-pass cost per certified image of the methods docs/denoised.md compares.

For each method's base classifier (denoiser included), FLOPs of one forward pass of one image
are counted with ``torch.utils.flop_counter.FlopCounterMode`` (matrix multiplications and
convolutions, counted as 2 x multiply-adds; element-wise work, norms and softmax are not
counted), then multiplied by the samples CERTIFY spends per image (N0 + N). FLOPs do not depend
on the weights, so the architectures are built with random weights; the diffusion denoiser's
timestep t* depends only on sigma. With ``--speed``, noisy samples per second are measured side
by side in one run (torch eager and onnxruntime, the same batch, interleaved rounds, median).

    python benchmarks/denoised_cost.py [--sigma 0.5 --n0 100 --n 10000 --speed --batch 500 --rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from certkit import plugins


class Composed(nn.Module):
    def __init__(self, denoiser: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.denoiser, self.classifier, self.input_spec = denoiser, classifier, classifier.input_spec

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.denoiser(images))


def methods(sigma: float) -> dict[str, nn.Module]:
    """The four base classifiers of the comparison, by label (random weights)."""
    from certkit_denoised.diffusion import OneShotDenoiser, unet_mini
    from certkit_denoised.dncnn import dncnn_mini

    model = lambda name: plugins.get("models", name).obj().eval()  # noqa: E731
    return {
        "DMAE vit-mini": model("vit-mini"),
        "Gaussian cnn-mini": model("cnn-mini"),
        "Salman: dncnn-mini + clean vit-mini": Composed(dncnn_mini().eval(), model("vit-mini")),
        "Carlini: unet-mini one-shot + clean vit-mini": Composed(OneShotDenoiser(unet_mini().eval(), sigma), model("vit-mini")),
    }


def flops_per_forward(module: nn.Module) -> int:
    spec = module.input_spec
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(torch.rand(1, spec.channels, *spec.image_size))
    return counter.get_total_flops()


def parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def speeds(models: dict[str, nn.Module], batch: int, rounds: int) -> dict[str, tuple[float, float]]:
    """Noisy samples per second, (torch eager, onnxruntime CPU), interleaved over rounds."""
    import copy
    import warnings

    import onnxruntime as ort

    images = torch.rand(batch, 1, 28, 28)
    sessions, folder = {}, tempfile.TemporaryDirectory()
    for label, module in models.items():
        path = Path(folder.name) / f"{len(sessions)}.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(copy.deepcopy(module), (images[:2],), str(path), dynamo=False, opset_version=17, input_names=["images"], output_names=["logits"], dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        sessions[label] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    measured: dict[str, tuple[list[float], list[float]]] = {label: ([], []) for label in models}
    for _ in range(rounds + 1):  # the first round warms up
        for label, module in models.items():
            with torch.inference_mode():
                began = time.perf_counter()
                module(images).argmax(1)
                eager = batch / (time.perf_counter() - began)
            began = time.perf_counter()
            sessions[label].run(None, {"images": images.numpy()})
            onnx = batch / (time.perf_counter() - began)
            measured[label][0].append(eager)
            measured[label][1].append(onnx)
    folder.cleanup()
    return {label: (statistics.median(e[1:]), statistics.median(o[1:])) for label, (e, o) in measured.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sigma", type=float, default=0.5)
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--speed", action="store_true", help="also measure samples per second (torch eager and onnxruntime)")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    models = methods(options.sigma)
    samples = options.n0 + options.n
    rates = speeds(models, options.batch, options.rounds) if options.speed else {}
    header = "| method | parameters | MFLOPs per forward pass | GFLOPs per certified image (N0 + N = {:,}) |".format(samples)
    if rates:
        header += " samples/s, torch | samples/s, onnx |"
    print(f"sigma {options.sigma:g}, {torch.get_num_threads()} thread(s)\n\n{header}")
    print("|---|" + "---:|" * (header.count("|") - 2))
    for label, module in models.items():
        flops = flops_per_forward(module)
        row = f"| {label} | {parameters(module) / 1e6:.2f} M | {flops / 1e6:.1f} | {flops * samples / 1e9:,.0f} |"
        if rates:
            row += f" {rates[label][0]:,.0f} | {rates[label][1]:,.0f} |"
        print(row)


if __name__ == "__main__":
    main()
