"""A cheap preview of the contest in docs/denoised.md: how often each method's *base classifier*
is right on one noisy copy, and how close the denoisers' outputs are to the clean image.

Not a certificate: one noise draw per image and draw count (no confidence bound), on the same
200 test images the comparison certifies (every 5th). A base classifier's accuracy under noise
is what certified accuracy at r = 0 estimates with a guarantee, so it tells early who is ahead.

    python tools/noisy_accuracy.py [--sigmas 0.25,0.5,1.0 --draws 4 --runs runs/denoised]

Methods whose weights are missing for a sigma are skipped, and said so.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import certkit
from certkit import plugins

IMAGES = range(0, 1000, 5)


def methods(sigma: float, runs: Path) -> dict[str, tuple[str, Path | None, dict]]:
    """label -> (model, checkpoint or None for the shipped one, -M options)."""
    trained = lambda model: runs / f"{model}-sigma{sigma:g}" / "weights.safetensors"  # noqa: E731
    return {
        "clean vit-mini alone (no denoiser)": ("vit-mini", Path(__file__).parents[1] / "plugins/denoised/src/certkit_denoised/weights/vit-mini-clean.safetensors", {}),
        "DMAE (vit-mini)": ("vit-mini", None if sigma in (0.25, 0.5) else runs / "dmae-sigma1.0/weights.safetensors", {}),
        "Gaussian (cnn-mini)": ("cnn-mini", None if sigma == 0.25 else trained("cnn-mini"), {}),
        "Salman (dncnn-mini + clean vit-mini)": ("denoised", None, {"denoiser": "dncnn-mini"}),
        "Carlini (unet-mini + clean vit-mini)": ("denoised", None, {"denoiser": "unet-mini"}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sigmas", default="0.25,0.5,1.0")
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument("--runs", type=Path, default=Path("runs/denoised"))
    options = parser.parse_args()
    dataset = plugins.get("datasets", "fashion-mnist-mini").obj.factory(None, "test")
    images = torch.stack([dataset[i][0] for i in IMAGES])
    labels = torch.tensor([dataset[i][1] for i in IMAGES])
    print(f"| sigma | method | accuracy on x + noise ({options.draws} draws x {len(labels)} images) | denoiser MSE to x (identity: sigma^2) |\n|---:|---|---:|---:|")
    for sigma in (float(s) for s in options.sigmas.split(",")):
        generator = torch.Generator().manual_seed(0)
        noisy = [images + sigma * torch.randn(images.shape, generator=generator) for _ in range(options.draws)]
        for label, (model, checkpoint, model_options) in methods(sigma, options.runs).items():
            try:
                loaded = certkit.load_classifier(model, sigma, checkpoint, options=model_options)
            except certkit.CertkitError as error:
                print(f"| {sigma:g} | {label} | not available: {error.what} | |")
                continue
            with torch.no_grad():
                correct = sum(int((loaded.model(x).argmax(1) == labels).sum()) for x in noisy)
                denoiser = getattr(loaded.model, "denoiser", None)
                mse = sum(float(((denoiser(x) - images) ** 2).mean()) for x in noisy) / len(noisy) if denoiser is not None else None
            shown = f"{mse:.4f}" if mse is not None else "-"
            print(f"| {sigma:g} | {label} | {100 * correct / (len(labels) * len(noisy)):.1f}% | {shown} |", flush=True)


if __name__ == "__main__":
    main()
