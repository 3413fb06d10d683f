"""``certkit certify``: certified radii for every selected image, then the accuracy table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from certkit.cli import options as opt
from certkit.cli.interrupt import images_saved, on_interrupt
from certkit.cli.launch import NprocPerNode, launch, wants_launch

# Engine options, shared with `certkit predict`.
Engine = Annotated[Optional[str], typer.Option("--engine", help="Where forward passes run: auto (ONNX Runtime on a CPU from a verified, cached export; torch on CUDA), torch, or onnx (without --onnx the model is first exported to a temporary, verified ONNX file).", show_default=False)]
Onnx = Annotated[Optional[Path], typer.Option("--onnx", help="An ONNX file from 'certkit export': model, input spec and default sigma come from it; no plugin or checkpoint needed.", show_default=False)]
Precision = Annotated[str, typer.Option("--precision", help="Torch engine autocast: fp32, bf16 or fp16. fp32 keeps the certificate about the fp32 model; the others are faster on GPUs and can flip rare samples.")]
ChannelsLast = Annotated[bool, typer.Option("--channels-last", help="Torch engine: channels-last memory format (faster convolutions on GPUs).")]
Compile = Annotated[bool, typer.Option("--compile", help="Torch engine: torch.compile the model (slow start, faster on long runs).")]
AutoBatch = Annotated[bool, typer.Option("--auto-batch", help="On CUDA: the largest batch that fits the device's memory instead of --batch.")]


def engine_overrides(engine: str | None, onnx: Path | None) -> str | None:
    """``--onnx`` implies the onnx engine unless ``--engine`` says otherwise (then it is refused)."""
    return engine if engine is not None or onnx is None else "onnx"


#: parameters whose defaults are config keys (shown with their source in --help)
CONFIG_KEYS = {
    "model": "certify.model", "sigma": "certify.sigma", "data": "certify.data", "split": "certify.split",
    "n0": "certify.n0", "n": "certify.n", "alpha": "certify.alpha", "batch": "certify.batch", "skip": "certify.skip",
    "max_images": "certify.max", "seed": "seed", "device": "device", "certifier": "certify.certifier",
    "engine": "certify.engine", "radii": "report.radii", "smoother": "certify.smoother",
}


@opt.config_defaults(CONFIG_KEYS)
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
    engine: Engine = None,
    onnx: Onnx = None,
    precision: Precision = "fp32",
    channels_last: ChannelsLast = False,
    compile: Compile = False,
    auto_batch: AutoBatch = False,
    radii: Annotated[Optional[str], typer.Option("--radii", help='Radius grid of the table, and where --certifier sequential stops: "0,0.5,1" or "0:1.5:0.25" (default report.radii).', show_default=False)] = None,
    option: Annotated[list[str], typer.Option("--option", "-O", help="Certifier option as key=value (repeatable), e.g. -O bound=betting for sequential, -O radius=0.5 for horvath.")] = [],  # noqa: B006
    smoother: opt.Smoother = None,
    smoother_option: opt.SmootherOption = [],  # noqa: B006
    model_option: opt.ModelOption = [],  # noqa: B006
    spec: opt.Spec = None,
    stop_if_wrong: Annotated[bool, typer.Option("--stop-if-wrong", help="Evaluation shortcut: stop an image after selection when the selected class is not its label. The certified-accuracy table is unchanged; cut rows hold no certificate (column 'cut' = 1).")] = False,
    overwrite: opt.Overwrite = False,
    protocol: Annotated[Optional[str], typer.Option("--protocol", help="A registered certification protocol (see 'certkit plugins'), e.g. dmae-imagenet: N0 100, N 10,000, alpha 0.001, every 50th image. Flags override its values; it overrides the config file.", show_default=False)] = None,
    config_file: opt.ConfigFile = None,
    nproc_per_node: NprocPerNode = 1,
) -> None:
    """Certify a model with randomized smoothing (Cohen et al. CERTIFY) and print the table.

    With no options it certifies the shipped default model on the shipped default data.
    Rerunning the same command resumes an interrupted run. With --onnx FILE it certifies an
    exported model (see 'certkit export') with onnxruntime alone.
    """
    if wants_launch(nproc_per_node):
        return launch(nproc_per_node)
    # Imported here, not at the top: `certkit certify --help` must not import torch.
    from rich.console import Console

    from certkit.cli.progress import ImageProgress
    from certkit.config import load_settings
    from certkit.results.metrics import parse_radii
    from certkit.results.reader import read_results
    from certkit.results.report import build_report, render_table
    from certkit.workflows.certify import CertifyJob, run_certify

    overrides = {
        "certify.model": model, "certify.sigma": sigma, "certify.data": data, "certify.split": split,
        "certify.n0": n0, "certify.n": n, "certify.alpha": alpha, "certify.batch": batch,
        "certify.skip": skip, "certify.max": max_images, "certify.certifier": certifier, "certify.smoother": smoother,
        "certify.engine": engine_overrides(engine, onnx), "seed": seed, "device": device,
    }
    if protocol is not None:  # a protocol's values, under the flags that were given
        from certkit.recipes import protocol_overrides

        overrides = {**protocol_overrides(protocol), **{key: value for key, value in overrides.items() if value is not None}}
    grid = parse_radii(radii) if radii is not None else None  # a typo fails before any work
    settings, _ = load_settings(config_file, overrides)
    grid = grid if grid is not None else list(settings.report.radii)
    c = settings.certify
    model_config = settings.models.get(c.model)
    job = CertifyJob(
        model=(model or "") if onnx else c.model, sigma=sigma if onnx else c.sigma,
        data=c.data, n0=c.n0, n=c.n, alpha=c.alpha, batch=c.batch,
        seed=settings.seed, checkpoint=checkpoint, data_path=data_path, split=c.split,
        certifier=c.certifier, smoother=c.smoother, engine=c.engine, skip=c.skip, max=c.max,
        device=settings.device, out=out, output_dir=settings.output_dir, overwrite=overwrite,
        onnx=onnx, precision=precision, channels_last=channels_last, compile=compile, auto_batch=auto_batch,
        radii=tuple(grid), certifier_options=opt.parse_key_values(option, "--option", "bound=betting"),
        stop_if_wrong=stop_if_wrong,
        smoother_options=opt.parse_key_values(smoother_option, "--smoother-option", "key=0.5"),
        model_options=opt.parse_key_values(model_option, "--model-option", "denoiser=PATH"),
        spec=spec or (model_config.spec if model_config else None),
    )
    console = Console(markup=False, emoji=False, highlight=False)  # paths and labels are user text: printed literally
    progress = ImageProgress(console)
    with on_interrupt(lambda: images_saved(progress.results_path)), progress:
        outcome = run_certify(job, settings.datasets, model_config.checkpoints if model_config else None, progress)
    if outcome.rank != 0:
        return  # under torchrun, rank 0 prints the table of the merged file
    results = read_results(outcome.path)
    radii, rows = build_report([results], grid)
    console.print(render_table(radii, rows, width=console.width))
    console.print(f"certified {outcome.certified} images ({outcome.resumed_from} from an earlier run); results: {outcome.path}")
