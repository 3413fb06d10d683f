"""`certkit report`: tables and a plot from one or more per-image results files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from certkit.config import DEFAULT_SOURCE, load_settings
from certkit.errors import ResultsError
from certkit.results.labels import curve_labels
from certkit.results.metrics import default_radius_grid, parse_radii
from certkit.results.plot import curves_for, plot_certified_accuracy
from certkit.results.reader import ResultsFile, combine_parts, read_results
from certkit.results.report import build_report, render_table, restrict_to_common, write_csv, write_markdown
from certkit.results.store import repair


def report(
    files: Annotated[
        list[Path] | None,
        typer.Argument(metavar="FILE", help="Results TSV files (certkit's or Cohen et al.'s format).", show_default="every *.tsv in output_dir"),
    ] = None,
    radii: Annotated[
        str | None, typer.Option("--radii", help='Radii for the table: "0,0.5,1" or "0:2:0.25" (stop included).')
    ] = None,
    envelope: Annotated[
        bool, typer.Option("--envelope", help="Add the best-over-files row and dashed curve (best σ per radius), one per norm.")
    ] = False,
    common_images: Annotated[
        bool, typer.Option("--common-images", help="Restrict every file to the images all of them have.")
    ] = False,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out-dir", help="Where to write the outputs.", show_default="the first file's folder"),
    ] = None,
    name: Annotated[str, typer.Option("--name", help="Base name of the .md, .csv and .png outputs.")] = "report",
    label: Annotated[
        list[str] | None, typer.Option("--label", help="Curve label, once per file in order (default: model and σ).")
    ] = None,
    repair_files: Annotated[
        bool, typer.Option("--repair", help="First drop damaged lines and repeated rows from the files, keeping a backup (<file>.bak) of each.")
    ] = False,
) -> None:
    """Certified accuracy at each radius, ACR, abstentions and cost, as a table, Markdown, CSV and PNG."""
    console = Console(markup=False, emoji=False, highlight=False)  # paths and labels are printed as they are
    # Parse --radii before reading files, so a typo fails fast whatever the files are.
    requested = parse_radii(radii) if radii is not None else None
    settings, sources = load_settings()
    if requested is None and sources.get("report.radii") != DEFAULT_SOURCE:
        requested = list(settings.report.radii)  # report.radii from certkit.yaml when a file sets it
    files = list(files) if files else _default_files(settings.output_dir)
    if repair_files:
        for path in files:
            console.print(repair(path).describe())
    results = combine_parts([read_results(path) for path in files])  # a distributed run's part files count as one
    if label and len(label) != len(results):
        raise ResultsError(f"{len(label)} --label values for {len(results)} files.", "Give one --label per file (per run, for part files), in the same order.")
    for result in results:
        for note in result.notes:
            console.print(f"note: {note}", style="yellow")
    if common_images and len(results) > 1:
        results, common = restrict_to_common(results)
        if common == 0:
            raise ResultsError("the files have no image in common.", "Drop --common-images, or pass files of the same images.")
        console.print(f"note: every file restricted to the {common} images all of them have", style="yellow")
    labels = curve_labels(results, label)
    grid = requested if requested is not None else default_radius_grid(results)
    grid, rows = build_report(results, grid, envelope=envelope, labels=labels)

    console.print(render_table(grid, rows, width=console.width))
    for row in rows:
        if row.total_samples is not None and row.mean_samples is not None:
            console.print(f"{row.label}: {row.total_samples:,} noisy samples in total, {row.mean_samples:,.1f} per image")

    target = out_dir if out_dir is not None else files[0].parent
    target.mkdir(parents=True, exist_ok=True)
    outputs = [target / f"{name}.md", target / f"{name}.csv", target / f"{name}.png"]
    write_markdown(outputs[0], grid, rows)
    write_csv(outputs[1], grid, rows)
    plot_certified_accuracy(outputs[2], curves_for(results, labels, envelope), title=_title(results))
    console.print("Wrote " + ", ".join(str(path) for path in outputs))


def _default_files(output_dir: Path) -> list[Path]:
    """Without FILE arguments: every ``*.tsv`` in the configured output directory."""
    found = sorted(Path(output_dir).glob("*.tsv"))
    if not found:
        raise ResultsError(f"no FILE given and no results files (*.tsv) in {output_dir}.", "Pass results files, e.g. certkit report results/run.tsv, or run `certkit certify` first.")
    return found


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
