"""The lines of a results file: which are rows, which are damaged, which repeat an image.

One scan serves the report (which reads any results file), the resume of a certkit run and
``certkit report --repair``, so that all three agree on what a file holds:

- a line with the layout's number of fields, each a valid value, is a row;
- the last line, when it has no final newline and is not a valid row, is *partial*: a run was
  killed while writing it. A complete row without a final newline is kept (Cohen et al.'s files
  often end that way); only the resume of a certkit run, whose last line may be cut inside its
  last number, treats every unterminated last line as partial;
- any other line that is not a valid row is *damaged*;
- rows with the same ``idx``: copies (equal in every column but ``time``, which only measures
  how long the image took) keep the first; rows with different results *conflict*.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from certkit.results.writer import CERTKIT_COLUMNS, COHEN_COLUMNS, CUT_COLUMNS, PREDICT_COLUMNS

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Layout:
    """A results file format, recognised by its header."""

    name: str  # "certkit" | "cohen" | "predict"
    columns: tuple[str, ...]

    @property
    def width(self) -> int:
        return len(self.columns)


LAYOUTS = (
    Layout("certkit", CERTKIT_COLUMNS),
    Layout("certkit", CUT_COLUMNS),  # a --stop-if-wrong run: one more column, `cut`
    Layout("cohen", COHEN_COLUMNS),
    Layout("predict", PREDICT_COLUMNS),
)


@dataclass(frozen=True)
class Row:
    line: int  # 1-based line number in the file
    idx: int
    fields: tuple[str, ...]
    text: str  # the line as written, with its newline


@dataclass(frozen=True)
class Repeat:
    idx: int
    first: int  # line of the row that is kept
    line: int  # line of the repeat


@dataclass
class Scan:
    """What :func:`scan` found; ``rows`` holds each image once, in file order."""

    header: str  # the header line, without its newline (and without a byte-order mark)
    layout: Layout | None  # None: the header is not one certkit knows
    header_end: int  # byte offset where the rows begin
    rows: list[Row] = field(default_factory=list)
    damaged: list[tuple[int, str]] = field(default_factory=list)  # (line, what is wrong)
    partial: int | None = None  # line number of a partial last line (dropped)
    copies: list[Repeat] = field(default_factory=list)  # repeats equal to the kept row (dropped)
    conflicts: list[Repeat] = field(default_factory=list)  # repeats with other results
    partial_offset: int | None = None  # byte offset where the partial last line begins
    terminated: bool = True  # the file ends with a newline (or has no rows)


def layout_of(header: str) -> Layout | None:
    columns = tuple(header.split("\t"))
    return next((layout for layout in LAYOUTS if layout.columns == columns), None)


def scan(data: bytes, cut_unterminated: bool = False) -> Scan:
    """Classify every line of a results file's bytes (see the module docstring).

    ``cut_unterminated``: treat a last line without a newline as partial even when it parses
    (resuming a certkit run, which rewrites that image).
    """
    start = len(_BOM) if data.startswith(_BOM) else 0
    newline = data.find(b"\n", start)
    header_bytes = data[start:] if newline < 0 else data[start:newline]
    header = header_bytes.decode("utf-8", errors="replace").rstrip("\r").strip()
    result = Scan(header=header, layout=layout_of(header), header_end=len(data) if newline < 0 else newline + 1)
    if result.layout is None:
        return result
    result.terminated = data.endswith(b"\n") or result.header_end == len(data)
    kept: dict[int, Row] = {}
    offset = result.header_end
    number = 1
    while offset < len(data):
        number += 1
        end = data.find(b"\n", offset)
        last = end < 0
        raw = data[offset:] if last else data[offset : end + 1]
        problem, row = _parse(raw, number, result.layout)
        if last and (problem is not None or cut_unterminated):
            result.partial = number
            result.partial_offset = offset
            break
        offset = len(data) if last else end + 1
        if problem == "":
            continue  # a blank line holds nothing
        if problem is not None:
            result.damaged.append((number, problem))
            continue
        first = kept.get(row.idx)
        if first is None:
            kept[row.idx] = row
            result.rows.append(row)
        elif same_result(first, row, result.layout.columns):
            result.copies.append(Repeat(row.idx, first.line, row.line))
        else:
            result.conflicts.append(Repeat(row.idx, first.line, row.line))
    return result


def _parse(raw: bytes, number: int, layout: Layout) -> tuple[str | None, Row | None]:
    """(None, row) for a valid row, ("", None) for a blank line, (what is wrong, None) otherwise."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8 text", None
    content = text.rstrip("\n").rstrip("\r")
    if not content.strip():
        return "", None
    fields = tuple(content.split("\t"))
    if len(fields) != layout.width:
        return f"expected {layout.width} tab-separated fields, found {len(fields)}", None
    for name, value in zip(layout.columns, fields):
        problem = _check_value(name, value, layout)
        if problem:
            return problem, None
    return None, Row(number, int(fields[0]), fields, text if text.endswith("\n") else text + "\n")


_INTEGER_COLUMNS = {"idx", "label", "predict", "correct", "n", "nA", "n0A", "cut", "count_top", "count_second"}


def _check_value(name: str, value: str, layout: Layout) -> str | None:
    shown = f"{name} {value!r}"
    if name == "idx":
        return None if value.strip().isdigit() else f"{shown} is not an image index"
    if name == "time" and layout.name == "cohen":
        try:
            parse_time(value)
        except ValueError:
            return f"{shown} is not a duration"
        return None
    try:
        number = float(value)
    except ValueError:
        return f"{shown} is not a number"
    if name in _INTEGER_COLUMNS and not number.is_integer():
        return f"{shown} is not a whole number"
    return None


def same_result(first: Row, other: Row, columns: tuple[str, ...]) -> bool:
    """Two rows of one image with the same results (``time`` aside)."""
    return all(a.strip() == b.strip() for name, a, b in zip(columns, first.fields, other.fields) if name != "time")


def parse_time(text: str) -> float:
    """Seconds from ``str(datetime.timedelta)`` ("0:00:01.234567", "1 day, 0:00:01") or a plain number."""
    text = text.strip()
    days = 0.0
    if "day" in text:
        day_part, text = text.split(",", 1)
        days = float(day_part.split()[0])
        text = text.strip()
    if ":" not in text:
        return days * 86400 + float(text)
    hours, minutes, seconds = text.split(":")
    return days * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def describe_lines(numbers: list[int], limit: int = 5) -> str:
    """"line 4" / "lines 4, 9 and 12" / "lines 4, 9, 12, 15, 16 and 3 more"."""
    if len(numbers) == 1:
        return f"line {numbers[0]}"
    shown = ", ".join(str(n) for n in numbers[:limit])
    rest = len(numbers) - limit
    return f"lines {shown} and {rest} more" if rest > 0 else f"lines {', '.join(str(n) for n in numbers[:-1])} and {numbers[-1]}"


def describe_indices(indices: list[int], limit: int = 6) -> str:
    """Image indices as ranges: "0-7, 12"."""
    ordered = sorted(set(indices))
    spans: list[str] = []
    begin = previous = None
    for idx in ordered:
        if previous is not None and idx == previous + 1:
            previous = idx
            continue
        if begin is not None:
            spans.append(f"{begin}-{previous}" if previous != begin else str(begin))
        begin = previous = idx
    if begin is not None:
        spans.append(f"{begin}-{previous}" if previous != begin else str(begin))
    return ", ".join(spans[:limit]) + (f" and {len(spans) - limit} more" if len(spans) > limit else "")


def conflict_message(path: Path, found: Scan) -> str:
    first = found.conflicts[0]
    more = f" ({len(found.conflicts)} such rows, images {describe_indices([c.idx for c in found.conflicts])})" if len(found.conflicts) > 1 else ""
    return f"{path}: image {first.idx} has different results on lines {first.first} and {first.line}{more}."


def copies_note(path: Path, found: Scan) -> str:
    count = len(found.copies)
    rows = "row" if count == 1 else "rows"
    return f"{path}: {count} repeated {rows} (images {describe_indices([c.idx for c in found.copies])}) had the same results as earlier rows; kept one row per image"
