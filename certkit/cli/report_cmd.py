"""`certkit report`: tables and a plot from one or more per-image results files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from certkit.results.metrics import certified_accuracy, default_radius_grid, envelope as envelope_curve
from certkit.results.metrics import fine_radius_grid, parse_radii
from certkit.results.plot import plot_certified_accuracy
from certkit.results.reader import ResultsFile, combine_parts, read_results
from certkit.config import DEFAULT_SOURCE, load_settings
from certkit.errors import ResultsError
from certkit.results.report import ENVELOPE_LABEL, build_report, curve_labels, render_table, write_csv, write_markdown


def report(
    files: Annotated[
        list[Path], typer.Argument(metavar="FILE", help="Results TSV files (certkit's or Cohen et al.'s format).")
    ],
    radii: Annotated[
        str | None, typer.Option("--radii", help='Radii for the table: "0,0.5,1" or "0:2:0.25" (stop included).')
    ] = None,
    envelope: Annotated[
        bool, typer.Option("--envelope", help="Add the best-over-files row and dashed curve (best σ per radius).")
    ] = False,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out-dir", help="Where to write the outputs.", show_default="the first file's folder"),
    ] = None,
    name: Annotated[str, typer.Option("--name", help="Base name of the .md, .csv and .png outputs.")] = "report",
    label: Annotated[
        list[str] | None, typer.Option("--label", help="Curve label, once per file in order (default: model and σ).")
    ] = None,
) -> None:
    """Certified accuracy at each radius, ACR, abstentions and cost, as a table, Markdown, CSV and PNG."""
    console = Console()
    # Parse --radii before reading files, so a typo fails fast whatever the files are.
    requested = parse_radii(radii) if radii is not None else _configured_radii()
    results = combine_parts([read_results(path) for path in files])  # a distributed run's part files count as one
    if label and len(label) != len(results):
        raise ResultsError(f"{len(label)} --label values for {len(results)} files.", "Give one --label per file (per run, for part files), in the same order.")
    labels = curve_labels(results, label)
    grid = requested if requested is not None else default_radius_grid(results)
    grid, rows = build_report(results, grid, envelope=envelope, labels=labels)

    console.print(render_table(grid, rows, width=console.width))
    for row in rows:
        if row.total_samples is not None and row.mean_samples is not None:
            console.print(
                f"{row.label}: {row.total_samples:,} noisy samples in total, {row.mean_samples:,.1f} per image"
            )

    fine = fine_radius_grid(results)
    curves = [(text, fine, certified_accuracy(result, fine)) for text, result in zip(labels, results)]
    if envelope:
        curves.append((ENVELOPE_LABEL, fine, envelope_curve(results, fine)))

    target = out_dir if out_dir is not None else files[0].parent
    target.mkdir(parents=True, exist_ok=True)
    outputs = [target / f"{name}.md", target / f"{name}.csv", target / f"{name}.png"]
    write_markdown(outputs[0], grid, rows)
    write_csv(outputs[1], grid, rows)
    plot_certified_accuracy(outputs[2], curves, title=_title(results))
    console.print("Wrote " + ", ".join(str(path) for path in outputs))


def _configured_radii() -> list[float] | None:
    """``report.radii`` from certkit.yaml when a file sets it; otherwise the grid follows the data."""
    settings, sources = load_settings()
    return None if sources.get("report.radii") == DEFAULT_SOURCE else list(settings.report.radii)


def _title(results: list[ResultsFile]) -> str:
    """Dataset and certifier when every file agrees on them, else a generic title."""
    datasets = {_dataset_name(r.metadata) for r in results}
    certifiers = {str(r.metadata.get("certifier", "")) for r in results}
    parts = ["Certified accuracy"]
    if len(datasets) == 1 and "" not in datasets:
        parts.append(f"on {datasets.pop()}")
    if len(certifiers) == 1 and "" not in certifiers:
        parts.append(f"({certifiers.pop()} certifier)")
    return " ".join(parts)


def _dataset_name(metadata: dict) -> str:
    dataset = metadata.get("dataset")
    if isinstance(dataset, dict):
        return str(dataset.get("name") or "")
    return str(dataset or "")
