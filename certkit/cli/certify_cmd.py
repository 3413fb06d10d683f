"""``certkit certify``: certified radii for every selected image, then the accuracy table."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.console import Console

from certkit.cli import options as opt
from certkit.cli.progress import ImageProgress
from certkit.config import load_settings
from certkit.results.reader import read_results
from certkit.results.report import build_report, render_table
from certkit.workflows.certify import CertifyJob, run_certify


def certify(
    model: opt.Model = None,
    sigma: opt.Sigma = None,
    data: opt.Data = None,
    data_path: opt.DataPath = None,
    split: opt.Split = None,
    checkpoint: opt.Checkpoint = None,
    n0: Annotated[Optional[int], typer.Option("--n0", help="Noisy samples that select the class.", show_default=False)] = None,
    n: opt.N = None,
    alpha: opt.Alpha = None,
    batch: opt.Batch = None,
    skip: opt.Skip = None,
    max_images: opt.Max = None,
    seed: opt.Seed = None,
    out: opt.Out = None,
    device: opt.Device = None,
    certifier: Annotated[Optional[str], typer.Option("--certifier", help="Registered certifier (default cohen).", show_default=False)] = None,
    engine: Annotated[Optional[str], typer.Option("--engine", help="Where forward passes run (torch).", show_default=False)] = None,
    overwrite: opt.Overwrite = False,
    config_file: opt.ConfigFile = None,
) -> None:
    """Certify a model with randomized smoothing (Cohen et al. CERTIFY) and print the table.

    With no options it certifies the shipped default model on the shipped default data.
    Rerunning the same command resumes an interrupted run.
    """
    overrides = {
        "certify.model": model, "certify.sigma": sigma, "certify.data": data, "certify.split": split,
        "certify.n0": n0, "certify.n": n, "certify.alpha": alpha, "certify.batch": batch,
        "certify.skip": skip, "certify.max": max_images, "certify.certifier": certifier,
        "certify.engine": engine, "seed": seed, "device": device,
    }
    settings, _ = load_settings(config_file, overrides)
    c = settings.certify
    job = CertifyJob(
        model=c.model, sigma=c.sigma, data=c.data, n0=c.n0, n=c.n, alpha=c.alpha, batch=c.batch,
        seed=settings.seed, checkpoint=checkpoint, data_path=data_path, split=c.split,
        certifier=c.certifier, smoother=c.smoother, engine=c.engine, skip=c.skip, max=c.max,
        device=settings.device, out=out, output_dir=settings.output_dir, overwrite=overwrite,
    )
    model_config = settings.models.get(c.model)
    console = Console()
    with ImageProgress(console) as progress:
        outcome = run_certify(job, settings.datasets, model_config.checkpoints if model_config else None, progress)
    results = read_results(outcome.path)
    radii, rows = build_report([results], list(settings.report.radii))
    console.print(render_table(radii, rows, width=console.width))
    console.print(f"certified {outcome.certified} images ({outcome.resumed_from} from an earlier run); results: {outcome.path}")
