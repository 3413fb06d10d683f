"""Summary rows for one or more results files, rendered as a rich table, Markdown and CSV.

The table and Markdown show certified accuracy in percent with one decimal, as the papers
do, so numbers can be compared with published tables at a glance. The CSV keeps raw
fractions and seconds at full precision, for downstream analysis.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.table import Table

from certkit.results.metrics import average_certified_radius, certified_accuracy
from certkit.results.metrics import envelope as envelope_curve
from certkit.results.reader import ResultsFile

ENVELOPE_LABEL = "envelope (best σ)"
MISSING = "—"


@dataclass(frozen=True)
class ReportRow:
    """One line of the report: a results file, or the envelope over all files."""

    label: str
    certified: list[float]  # fraction in [0, 1] at each radius of the report
    acr: float  # NaN where undefined (the envelope)
    images: int
    abstain_rate: float  # NaN where undefined (the envelope)
    mean_samples: float | None  # None when the file has no `n` column (Cohen's format)
    total_samples: int | None
    wall_time: float  # seconds; for the envelope, the cost of all runs it is made of
    clean_accuracy: float = math.nan  # right and not abstaining (= certified accuracy at r = 0)
    note: str = ""  # why the row is not like the others (compare --allow-mismatch)


def curve_labels(results: Sequence[ResultsFile], labels: Sequence[str] | None = None) -> list[str]:
    """Given labels, else "model σ" from each sidecar; files that would share one (e.g. two
    training recipes of one model) are told apart by their file name."""
    if labels:
        return list(labels)
    names = [result.label_text for result in results]
    return [f"{name} ({result.path.stem})" if names.count(name) > 1 else name for name, result in zip(names, results)]


def build_report(
    results: Sequence[ResultsFile], radii: Sequence[float], envelope: bool = False, labels: Sequence[str] | None = None
) -> tuple[list[float], list[ReportRow]]:
    """One row per file (in the given order), plus the best-over-files row if ``envelope``."""
    radii = [float(r) for r in radii]
    rows = [_file_row(result, radii, label) for result, label in zip(results, curve_labels(results, labels))]
    if envelope and results:
        rows.append(
            ReportRow(
                label=ENVELOPE_LABEL,
                certified=[float(a) for a in envelope_curve(results, radii)],
                acr=math.nan,  # the envelope is not one classifier, so it has no ACR
                images=max(len(r.idx) for r in results),
                abstain_rate=math.nan,
                mean_samples=None,
                total_samples=None,
                wall_time=sum(row.wall_time for row in rows),
            )
        )
    return radii, rows


def _file_row(result: ResultsFile, radii: list[float], label: str) -> ReportRow:
    images = len(result.idx)
    samples = result.samples
    has_samples = samples is not None and images > 0
    return ReportRow(
        label=label,
        certified=[float(a) for a in certified_accuracy(result, radii)],
        acr=average_certified_radius(result),
        images=images,
        abstain_rate=float(np.mean(result.predict == -1)) if images else math.nan,
        mean_samples=float(np.mean(samples)) if has_samples else None,
        total_samples=int(np.sum(samples)) if has_samples else None,
        wall_time=float(np.sum(result.time)),
        clean_accuracy=float(np.mean(result.correct == 1)) if images else math.nan,
    )


TITLE = "Certified accuracy (%) at L2 radius"


def render_table(radii: Sequence[float], rows: Sequence[ReportRow], width: int | None = None, compare: bool = False, title: str = TITLE) -> Table:
    """Rich table: certified accuracy (%) per radius, ACR, abstentions, samples and time.

    One column per radius, as in the papers; when that would not fit in ``width`` terminal
    columns, the table is transposed (one row per radius) rather than cropped. ``compare``
    shows the clean accuracy of the smoothed classifier instead of the abstention rate, and a
    "differs" column when a row has a note.
    """
    header = _header(radii, rows, compare)
    cells = [_cells(row, compare, len(header)) for row in rows]
    needed = sum(max(len(h), *(len(c[i]) for c in cells)) + 3 for i, h in enumerate(header))
    if width is not None and needed > width:
        return _transposed(header, cells, title)
    table = Table(title=title, title_justify="left")
    table.add_column(header[0], style="bold")
    for name in header[1:]:
        table.add_column(name, justify="left" if name == "differs" else "right")
    for row, row_cells in zip(rows, cells):
        table.add_row(*row_cells, style="italic" if row.label == ENVELOPE_LABEL else None)
    return table


def _transposed(header: Sequence[str], cells: Sequence[Sequence[str]], title: str = TITLE) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("", style="bold")
    for row_cells in cells:
        table.add_column(row_cells[0], justify="right")
    for i, name in enumerate(header[1:], start=1):
        table.add_row(name, *(row_cells[i] for row_cells in cells))
    return table


def write_markdown(path: Path, radii: Sequence[float], rows: Sequence[ReportRow], compare: bool = False, title: str = TITLE) -> None:
    """GitHub-flavoured Markdown table with the same cells as the terminal table."""
    header = _header(radii, rows, compare)
    align = ["---", *("---:" for _ in header[1:])]
    if header[-1] == "differs":
        align[-1] = "---"
    lines = [
        f"{title}.",
        "",
        _md_line(header),
        _md_line(align),
        *(_md_line([cell.replace("|", "\\|") for cell in _cells(row, compare, len(header))]) for row in rows),
    ]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_csv(path: Path, radii: Sequence[float], rows: Sequence[ReportRow], compare: bool = False) -> None:
    """Raw numbers (fractions, seconds); empty cells where a value is undefined. ``compare``
    adds the clean accuracy of the smoothed classifier and the note of each row."""
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["label", "images", *(f"certified_acc@{r:g}" for r in radii),
             "acr", "abstain_rate", "mean_samples", "total_samples", "wall_time_s",
             *(("clean_acc", "differs") if compare else ())]
        )
        for row in rows:
            writer.writerow(
                [row.label, row.images, *(_raw(a) for a in row.certified), _raw(row.acr), _raw(row.abstain_rate),
                 _raw(row.mean_samples), _raw(row.total_samples), _raw(row.wall_time),
                 *((_raw(row.clean_accuracy), row.note) if compare else ())]
            )


def _count(value: int) -> str:
    """Large sample counts the way people say them: 1,234 / 56.8k / 10.0M."""
    if value < 100_000:
        return f"{value:,}"
    return f"{value / 1e3:.1f}k" if value < 10_000_000 else f"{value / 1e6:.1f}M"


def _header(radii: Sequence[float], rows: Sequence[ReportRow], compare: bool) -> list[str]:
    if not compare:
        return ["model", "images", *(f"r={r:g}" for r in radii), "ACR", "abstain", "samples/img", "samples total", "time"]
    header = ["method", "images", *(f"r={r:g}" for r in radii), "ACR", "clean acc", "samples/img", "samples total", "time"]
    return [*header, "differs"] if any(row.note for row in rows) else header


def _cells(row: ReportRow, compare: bool = False, width: int = 0) -> list[str]:
    cells = [
        row.label,
        str(row.images),
        *(_percent(a) for a in row.certified),
        MISSING if math.isnan(row.acr) else f"{row.acr:.3f}",
        _percent(row.clean_accuracy if compare else row.abstain_rate),
        MISSING if row.mean_samples is None else f"{row.mean_samples:,.0f}",
        MISSING if row.total_samples is None else _count(row.total_samples),
        _duration(row.wall_time),
    ]
    if compare and width > len(cells):
        cells.append(row.note or "")
    return cells


def _percent(fraction: float) -> str:
    return MISSING if math.isnan(fraction) else f"{100 * fraction:.1f}"


def _duration(seconds: float) -> str:
    if math.isnan(seconds):
        return MISSING
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _raw(value: float | int | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def _md_line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"
