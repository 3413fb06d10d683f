"""``certkit predict``: the smoothed classifier's predictions, abstaining when undecided."""

from __future__ import annotations

import csv

from certkit.cli import options as opt
from certkit.cli.certify_cmd import AutoBatch, ChannelsLast, Compile, Engine, Onnx, Precision, engine_overrides
from certkit.cli.interrupt import images_saved, on_interrupt
from certkit.cli.launch import NprocPerNode, launch, wants_launch

#: parameters whose defaults are config keys (shown with their source in --help)
CONFIG_KEYS = {
    "model": "certify.model", "sigma": "certify.sigma", "data": "certify.data", "split": "certify.split",
    "n": "predict.n", "alpha": "predict.alpha", "batch": "certify.batch", "skip": "certify.skip", "max_images": "certify.max",
    "seed": "seed", "device": "device", "engine": "certify.engine", "smoother": "certify.smoother",
}


@opt.config_defaults(CONFIG_KEYS)
def predict(
    model: opt.Model = None,
    sigma: opt.Sigma = None,
    data: opt.Data = None,
    data_path: opt.DataPath = None,
    split: opt.Split = None,
    checkpoint: opt.Checkpoint = None,
    n: opt.N = None,
    alpha: opt.Alpha = None,
    batch: opt.Batch = None,
    skip: opt.Skip = None,
    max_images: opt.Max = None,
    seed: opt.Seed = None,
    out: opt.Out = None,
    device: opt.Device = None,
    engine: Engine = None,
    onnx: Onnx = None,
    precision: Precision = "fp32",
    channels_last: ChannelsLast = False,
    compile: Compile = False,
    auto_batch: AutoBatch = False,
    smoother: opt.Smoother = None,
    smoother_option: opt.SmootherOption = [],  # noqa: B006
    model_option: opt.ModelOption = [],  # noqa: B006
    spec: opt.Spec = None,
    overwrite: opt.Overwrite = False,
    config_file: opt.ConfigFile = None,
    nproc_per_node: NprocPerNode = 1,
) -> None:
    """Predict with the smoothed classifier (Cohen et al. PREDICT) and print its accuracy."""
    if wants_launch(nproc_per_node):
        return launch(nproc_per_node)
    # Imported here, not at the top: `certkit predict --help` must not import torch.
    from rich.console import Console

    from certkit.cli.progress import ImageProgress
    from certkit.config import load_settings
    from certkit.workflows.certify import CertifyJob
    from certkit.workflows.predict import run_predict

    overrides = {
        "certify.model": model, "certify.sigma": sigma, "certify.data": data, "certify.split": split,
        "predict.n": n, "predict.alpha": alpha, "certify.batch": batch, "certify.skip": skip,
        "certify.max": max_images, "certify.engine": engine_overrides(engine, onnx), "seed": seed, "device": device,
        "certify.smoother": smoother,
    }
    settings, _ = load_settings(config_file, overrides)
    c, p = settings.certify, settings.predict
    model_config = settings.models.get(c.model)
    job = CertifyJob(
        model=(model or "") if onnx else c.model, sigma=sigma if onnx else c.sigma,
        data=c.data, n0=0, n=p.n, alpha=p.alpha, batch=c.batch,
        seed=settings.seed, checkpoint=checkpoint, data_path=data_path, split=c.split, smoother=c.smoother,
        engine=c.engine, skip=c.skip, max=c.max, device=settings.device, out=out,
        output_dir=settings.output_dir, overwrite=overwrite,
        onnx=onnx, precision=precision, channels_last=channels_last, compile=compile, auto_batch=auto_batch,
        smoother_options=opt.parse_key_values(smoother_option, "--smoother-option", "key=0.5"),
        model_options=opt.parse_key_values(model_option, "--model-option", "denoiser=PATH"),
        spec=spec or (model_config.spec if model_config else None),
    )
    console = Console(markup=False, emoji=False, highlight=False)  # paths and labels are user text: printed literally
    progress = ImageProgress(console)
    with on_interrupt(lambda: images_saved(progress.results_path)), progress:
        outcome = run_predict(job, settings.datasets, model_config.checkpoints if model_config else None, progress)
    if outcome.rank != 0:
        return  # under several processes, rank 0 prints for the merged file
    with open(outcome.path, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    correct = sum(int(r["correct"]) for r in rows)
    abstained = sum(int(r["predict"]) == -1 for r in rows)
    console.print(f"accuracy of the smoothed classifier: {correct / max(len(rows), 1):.1%} ({correct}/{len(rows)}), abstained on {abstained}")
    console.print(f"results: {outcome.path}")
