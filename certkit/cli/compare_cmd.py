"""``certkit compare``: certify what is missing with one set of settings, then one table and one plot."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

from typing import TYPE_CHECKING

import typer

from certkit.cli import options as opt
from certkit.cli.interrupt import images_saved, on_interrupt

if TYPE_CHECKING:
    from rich.console import Console

    from certkit.workflows.compare import Comparison

MISMATCH_MARK = " *"


#: parameters whose defaults are config keys (shown with their source in --help)
CONFIG_KEYS = {
    "sigma": "certify.sigma", "data": "certify.data", "split": "certify.split", "n0": "certify.n0", "n": "certify.n",
    "alpha": "certify.alpha", "seed": "seed", "skip": "certify.skip", "max_images": "certify.max", "batch": "certify.batch",
    "device": "device", "radii": "report.radii", "smoother": "certify.smoother",
}


@opt.config_defaults(CONFIG_KEYS)
def compare(
    entries: Annotated[list[str], typer.Argument(metavar="ENTRY", help="What to compare, each [LABEL:]SOURCE: a results .tsv, a weights file, MODEL, or MODEL=CHECKPOINT.")],
    sigma: opt.Sigma = None,
    data: opt.Data = None,
    data_path: opt.DataPath = None,
    split: opt.Split = None,
    n0: Annotated[Optional[int], typer.Option("--n0", help="Noisy samples that select the class.", show_default=False)] = None,
    n: opt.N = None,
    alpha: opt.Alpha = None,
    seed: opt.Seed = None,
    skip: opt.Skip = None,
    max_images: opt.Max = None,
    batch: opt.Batch = None,
    device: opt.Device = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", help="Where certified results, the table and the plot go (default: <output_dir>/compare-sigma<S>-<data>).", show_default=False)] = None,
    name: Annotated[str, typer.Option("--name", help="Base name of the .md, .csv and .png outputs.")] = "compare",
    radii: Annotated[Optional[str], typer.Option("--radii", help='Radii for the table: "0,0.5,1" or "0:2:0.25" (stop included).', show_default=False)] = None,
    allow_mismatch: Annotated[bool, typer.Option("--allow-mismatch", help="Compare results made with other settings or on other images anyway; the table marks them.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Certify model entries again instead of resuming or reusing their results.")] = False,
    smoother: opt.Smoother = None,
    smoother_option: opt.SmootherOption = [],  # noqa: B006
    config_file: opt.ConfigFile = None,
) -> None:
    """Compare methods (any plugins' models, or existing results files) on identical images,
    sigma, N0, N, alpha and seed: one certified-accuracy table and one plot.

    Settings come from the flags, else from the first results file given, else from the
    config. Models are certified into --out-dir (rerunning resumes, and reuses finished files).
    """
    # Imported here, not at the top: `certkit compare --help` must not import torch.
    from rich.console import Console

    from certkit.cli.progress import ImageProgress
    from certkit.config import load_settings
    from certkit.results.metrics import parse_radii
    from certkit.workflows.compare import parse_entry, run_compare

    requested = parse_radii(radii) if radii is not None else None
    overrides = {
        "certify.sigma": sigma, "certify.data": data, "certify.split": split, "certify.n0": n0, "certify.n": n, "certify.alpha": alpha,
        "certify.batch": batch, "certify.skip": skip, "certify.max": max_images, "seed": seed, "device": device,
    }
    settings, _ = load_settings(config_file, overrides)  # validates the flags like certify does
    c = settings.certify
    given = {
        "sigma": sigma, "data": data, "data_path": data_path, "split": split, "n0": n0, "n": n, "alpha": alpha, "seed": seed, "skip": skip, "max": max_images,
        "smoother": smoother, "smoother_options": opt.parse_key_values(smoother_option, "--smoother-option", "key=0.5") or None,
    }
    config = {
        "sigma": c.sigma, "data": c.data, "split": c.split, "n0": c.n0, "n": c.n, "alpha": c.alpha, "seed": settings.seed,
        "skip": c.skip, "max": c.max, "certifier": c.certifier, "smoother": c.smoother, "smoother_options": {},
        "radii": tuple(requested if requested is not None else settings.report.radii),  # where certify.certifier: sequential stops
    }
    parsed = [parse_entry(text) for text in entries]
    checkpoints = {model: entry.checkpoints for model, entry in settings.models.items()}
    console = Console(markup=False, emoji=False, highlight=False)  # paths and labels are user text: printed literally
    progress = ImageProgress(console)
    with on_interrupt(lambda: images_saved(progress.results_path)), progress:
        comparison = run_compare(
            parsed, given, config, out_dir, settings.output_dir, c.batch, settings.device, allow_mismatch, overwrite,
            settings.datasets, checkpoints, progress,
        )
    _print_and_write(comparison, requested, name, console)


def _print_and_write(comparison: Comparison, requested: list[float] | None, name: str, console: Console) -> None:
    from certkit.results.metrics import default_radius_grid
    from certkit.results.plot import curves_for, plot_certified_accuracy
    from certkit.results.report import build_report, render_table, write_csv, write_markdown

    methods = comparison.methods
    results = [m.results for m in methods]
    labels = [m.label + (MISMATCH_MARK if m.differences else "") for m in methods]
    grid, rows = build_report(results, requested if requested is not None else default_radius_grid(results), labels=labels)
    rows = [replace(row, note="; ".join(m.differences)) for row, m in zip(rows, methods)]
    s = comparison.settings
    for method in methods:
        source = method.entry.results if method.origin == "file" else method.results.path
        why = " (same model, weights and settings: not certified again)" if method.origin == "reused" else ""
        console.print(f"{method.label}: {method.origin} {source}{why}", markup=False, highlight=False)
        for note in method.results.notes:
            console.print(f"note: {note}", style="yellow", markup=False)
    # One table per norm (an --allow-mismatch comparison across norms never shares a column).
    console.print(render_table(grid, rows, width=console.width, compare=True, context=s.describe()))
    for note in comparison.notes:
        console.print(f"note: {note}", style="yellow", markup=False)
    if any(m.differences for m in methods):
        console.print(f"{MISMATCH_MARK.strip()} made with other settings than the comparison's ({s.describe()}); see the 'differs' column.", style="yellow", markup=False)

    target = comparison.out_dir
    target.mkdir(parents=True, exist_ok=True)
    outputs = [target / f"{name}.md", target / f"{name}.csv", target / f"{name}.png"]
    write_markdown(outputs[0], grid, rows, compare=True, context=s.describe())
    write_csv(outputs[1], grid, rows, compare=True)
    plot_certified_accuracy(outputs[2], curves_for(results, labels), title=f"{s.data}, σ={s.sigma:g}, N={s.n:,}, α={s.alpha:g}, {comparison.common_images} images")
    console.print("Wrote " + ", ".join(str(path) for path in outputs), markup=False)
