"""Summary rows for one or more results files, rendered as a rich table, Markdown and CSV.

The table and Markdown show certified accuracy in percent with one decimal, as the papers
do, so numbers can be compared with published tables at a glance. The CSV keeps raw
fractions and seconds at full precision, for downstream analysis.

Radii of different norms never share a column: rows are grouped by norm, one table each. A
radius beyond what a run's N and alpha can ever certify is shown as unreachable (``—``, with a
footnote giving the largest certifiable radius), not as 0 %: no model could do better there.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from certkit.results.labels import curve_labels
from certkit.results.metrics import average_certified_radius, certified_accuracy, reach_of
from certkit.results.metrics import envelope as envelope_curve
from certkit.results.reader import ResultsFile, norm_name
from certkit.results.rows import describe_indices

ENVELOPE_LABEL = "envelope (best σ)"
MISSING = "—"
UNREACHABLE = "—"
_MIN_LABEL_WIDTH = 12

__all__ = ["ENVELOPE_LABEL", "ReportRow", "build_report", "curve_labels", "envelope_label", "radius_title", "render_table", "restrict_to_common", "write_csv", "write_markdown"]


@dataclass(frozen=True)
class ReportRow:
    """One line of the report: a results file, or the envelope over the files of one norm."""

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
    norm: str = "l2"  # the norm of the radii
    reach: float | None = None  # the largest radius the run can certify (None: unknown)
    fewest_images: int | None = None  # an envelope over files with different image counts: the smallest
    footnotes: tuple[str, ...] = ()  # what a reader of the table must know about this row
    envelope: bool = False  # the best-over-files row, not one file

    def reachable(self, radius: float) -> bool:
        return self.reach is None or radius <= self.reach * (1 + 1e-9)


def radius_title(norm: str = "l2", context: str = "") -> str:
    title = f"Certified accuracy (%) at {norm_name(norm)} radius"
    return f"{title}, {context}" if context else title


def envelope_label(norm: str, several_norms: bool) -> str:
    return f"envelope {norm_name(norm)} (best σ)" if several_norms else ENVELOPE_LABEL


def build_report(
    results: Sequence[ResultsFile], radii: Sequence[float], envelope: bool = False, labels: Sequence[str] | None = None
) -> tuple[list[float], list[ReportRow]]:
    """One row per file (in the given order), plus, if ``envelope``, the best-over-files row of
    each norm (files of different norms are never combined)."""
    radii = [float(r) for r in radii]
    rows = [_file_row(result, radii, label) for result, label in zip(results, curve_labels(results, labels))]
    if envelope and results:
        groups = norm_groups(results)
        for norm, members in groups.items():
            rows.append(_envelope_row([results[i] for i in members], [rows[i] for i in members], radii, envelope_label(norm, len(groups) > 1)))
    return radii, rows


def norm_groups(results: Sequence[ResultsFile]) -> dict[str, list[int]]:
    """Indices of the files of each norm, norms in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, result in enumerate(results):
        groups.setdefault(result.norm, []).append(i)
    return groups


def restrict_to_common(results: Sequence[ResultsFile]) -> tuple[list[ResultsFile], int]:
    """Each file cut to the images every file has (``--common-images``), and how many that is."""
    common = results[0].idx
    for result in results[1:]:
        common = np.intersect1d(common, result.idx)
    return [_restrict(result, common) for result in results], int(len(common))


def _restrict(result: ResultsFile, indices: np.ndarray) -> ResultsFile:
    keep = np.isin(result.idx, indices)
    columns = {name: getattr(result, name)[keep] for name in ("idx", "label", "predict", "radius", "correct", "time")}
    optional = {name: None if getattr(result, name) is None else getattr(result, name)[keep] for name in ("samples", "cut")}
    return replace(result, **columns, **optional)


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
        norm=result.norm,
        reach=reach_of(result),
    )


def _envelope_row(files: list[ResultsFile], rows: list[ReportRow], radii: list[float], label: str) -> ReportRow:
    counts = [len(f) for f in files]
    footnotes = []
    union = np.unique(np.concatenate([f.idx for f in files]))
    common = union
    for f in files:
        common = np.intersect1d(common, f.idx)
    if len(common) != len(union):
        footnotes.append(
            f"{label}: the files cover different images ({min(counts)} to {max(counts)} per file, {len(common)} in common, "
            f"images {describe_indices(union.tolist(), limit=3)} in all); each file's accuracy is over its own images. "
            "Pass --common-images to compare on the shared ones."
        )
    budgets = dict.fromkeys(_budget(f) for f in files)
    if len(budgets) > 1:
        footnotes.append(f"{label}: the files were certified with different N and α ({'; '.join(budgets)}).")
    reaches = [row.reach for row in rows]
    return ReportRow(
        label=label,
        certified=[float(a) for a in envelope_curve(files, radii)],
        acr=math.nan,  # the envelope is not one classifier, so it has no ACR
        images=max(counts),
        abstain_rate=math.nan,
        mean_samples=None,
        total_samples=None,
        wall_time=sum(row.wall_time for row in rows),
        norm=files[0].norm,
        reach=None if any(r is None for r in reaches) else max(reaches),
        fewest_images=min(counts) if min(counts) != max(counts) else None,
        footnotes=tuple(footnotes),
        envelope=True,
    )


def _budget(result: ResultsFile) -> str:
    n, alpha = result.metadata.get("n"), result.metadata.get("alpha")
    if n is None or alpha is None:
        return "N and α unknown"
    return f"N={n:,} α={alpha:g}" if isinstance(n, int) and isinstance(alpha, (int, float)) else f"N={n} α={alpha}"


def footnotes(radii: Sequence[float], rows: Sequence[ReportRow]) -> list[str]:
    """The rows' own footnotes, then one for the radii some row cannot reach."""
    lines = [note for row in rows for note in row.footnotes]
    beyond = [row for row in rows if radii and not row.envelope and not row.reachable(max(radii))]  # an envelope reaches as far as its best file
    if beyond:
        reaches = "; ".join(f"{row.label}: {row.reach:.3g}" for row in beyond)
        lines.append(f"{UNREACHABLE} = beyond reach: N and α allow no certificate that large (largest certifiable radius: {reaches}).")
    return lines


# --- terminal --------------------------------------------------------------------------------


def render_table(
    radii: Sequence[float], rows: Sequence[ReportRow], width: int | None = None, compare: bool = False, title: str | None = None, context: str = ""
) -> RenderableType:
    """Certified accuracy (%) per radius, ACR, abstentions, samples and time: one table per norm.

    One column per radius, as in the papers. When that would not fit in ``width`` terminal
    columns, the columns flow into further tables below (each repeating the label column),
    radii and cost columns kept apart where they fit. ``compare`` shows the clean accuracy of
    the smoothed classifier instead of the abstention rate, and a "differs" column when a row
    has a note. ``title`` replaces the title (one norm only), ``context`` extends it. Every
    cell is literal text: labels and notes from files are never read as markup.
    """
    groups: dict[str, list[ReportRow]] = {}
    for row in rows:
        groups.setdefault(row.norm, []).append(row)
    parts: list[RenderableType] = []
    for norm, group in groups.items():
        heading = title if title is not None and len(groups) == 1 else radius_title(norm, context)
        parts.extend(_tables(radii, group, width, compare, heading))
    notes = footnotes(radii, rows)
    if notes:
        parts.append(Text("\n".join(notes)))
    return parts[0] if len(parts) == 1 else Group(*parts)


def _tables(radii: Sequence[float], rows: Sequence[ReportRow], width: int | None, compare: bool, title: str) -> list[Table]:
    header = _header(radii, rows, compare)
    cells = [_cells(row, radii, compare, len(header)) for row in rows]
    widths = [max(len(name), *(len(c[i]) for c in cells)) for i, name in enumerate(header)]
    label_width = widths[0] if width is None else min(widths[0], max(_MIN_LABEL_WIDTH, width // 3))
    accuracy = list(range(1, 3 + len(radii)))  # images, r=..., ACR
    cost = list(range(3 + len(radii), len(header)))
    columns = _flow([accuracy, cost], widths, label_width, width)
    tables = []
    for number, chosen in enumerate(columns):
        table = Table(title=Text(title) if number == 0 else None, title_justify="left")
        table.add_column(Text(header[0]), style="bold", max_width=label_width, overflow="fold")
        for i in chosen:
            table.add_column(Text(header[i]), justify="left" if header[i] == "differs" else "right", no_wrap=header[i] != "differs")
        for row, row_cells in zip(rows, cells):
            table.add_row(*(Text(row_cells[i]) for i in (0, *chosen)), style="italic" if row.envelope else None)
        tables.append(table)
    return tables


def _flow(groups: list[list[int]], widths: list[int], label_width: int, width: int | None) -> list[list[int]]:
    """Columns of each table: all in one when they fit (or ``width`` is None), else filled in
    order, a group starting a new table when it does not fit in the current one whole."""
    if width is None:
        return [[i for group in groups for i in group]]
    base = label_width + 3 + 1  # rich: a space either side and a border per column, one border more
    tables: list[list[int]] = [[]]
    used = base
    for group in groups:
        need = sum(widths[i] + 3 for i in group)
        if tables[-1] and used + need > width:
            tables.append([])
            used = base
        for i in group:
            if tables[-1] and used + widths[i] + 3 > width:
                tables.append([])
                used = base
            tables[-1].append(i)
            used += widths[i] + 3
    return [chosen for chosen in tables if chosen]


# --- files -----------------------------------------------------------------------------------


def write_markdown(path: Path, radii: Sequence[float], rows: Sequence[ReportRow], compare: bool = False, title: str | None = None, context: str = "") -> None:
    """GitHub-flavoured Markdown: one table per norm with the terminal table's cells, then the footnotes."""
    groups: dict[str, list[ReportRow]] = {}
    for row in rows:
        groups.setdefault(row.norm, []).append(row)
    lines: list[str] = []
    for norm, group in groups.items():
        header = _header(radii, group, compare)
        align = ["---", *("---:" for _ in header[1:])]
        if header[-1] == "differs":
            align[-1] = "---"
        heading = title if title is not None and len(groups) == 1 else radius_title(norm, context)
        if lines:
            lines.append("")
        lines += [
            f"{heading}.",
            "",
            _md_line(header),
            _md_line(align),
            *(_md_line([cell.replace("|", "\\|") for cell in _cells(row, radii, compare, len(header))]) for row in group),
        ]
    notes = footnotes(radii, rows)
    if notes:
        lines += ["", *notes]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


def write_csv(path: Path, radii: Sequence[float], rows: Sequence[ReportRow], compare: bool = False) -> None:
    """Raw numbers (fractions, seconds); empty cells where a value is undefined or the radius is
    beyond the run's reach (``max_certifiable_radius`` says where that begins). ``norm`` says
    what the radii measure. ``compare`` adds the clean accuracy of the smoothed classifier and
    the note of each row."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["label", "norm", "images", *(f"certified_acc@{r:g}" for r in radii),
             "acr", "abstain_rate", "mean_samples", "total_samples", "wall_time_s", "max_certifiable_radius",
             *(("clean_acc", "differs") if compare else ())]
        )
        for row in rows:
            certified = [_raw(a) if row.reachable(r) else "" for r, a in zip(radii, row.certified)]
            writer.writerow(
                [row.label, row.norm, row.images, *certified, _raw(row.acr), _raw(row.abstain_rate),
                 _raw(row.mean_samples), _raw(row.total_samples), _raw(row.wall_time), _raw(row.reach),
                 *((_raw(row.clean_accuracy), row.note) if compare else ())]
            )


# --- cells -----------------------------------------------------------------------------------


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


def _cells(row: ReportRow, radii: Sequence[float], compare: bool = False, width: int = 0) -> list[str]:
    images = f"{row.fewest_images}–{row.images}" if row.fewest_images is not None else str(row.images)
    cells = [
        row.label,
        images,
        *(_percent(a) if row.reachable(r) else UNREACHABLE for r, a in zip(radii, row.certified)),
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
