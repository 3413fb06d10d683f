"""certkit report: reading results files, the metrics the papers report, and the CLI outputs."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from certkit.cli.report_cmd import report
from certkit.errors import CertkitError, ResultsError
from certkit.results.metrics import (
    average_certified_radius,
    certified_accuracy,
    default_radius_grid,
    envelope,
    parse_radii,
)
from certkit.results.reader import read_results
from certkit.results.report import ENVELOPE_LABEL, build_report

DATA = Path(__file__).parent / "data"
CERTKIT_FILE = DATA / "certkit_small.tsv"  # radii 1.2, 0.6, 0.1 correct; one abstain
COHEN_FILE = DATA / "cohen_small.tsv"  # radii 0.75, 0.3 correct; 0.9 wrong; one abstain
HEADER = "idx\tlabel\tpredict\tradius\tcorrect\ttime\tpA_lower\tn\tnA\tn0A\n"


def write_certkit(path: Path, radii_correct: list[tuple[float, int]], tail: str = "") -> Path:
    """A certkit TSV whose rows have the given (radius, correct); ``tail`` is appended raw."""
    rows = [f"{i}\t0\t{0 if c else 1}\t{r}\t{c}\t0.1\t0.9\t100\t90\t10\n" for i, (r, c) in enumerate(radii_correct)]
    path.write_text(HEADER + "".join(rows) + tail, encoding="utf-8")
    return path


# --- reading -------------------------------------------------------------------------------


def test_reads_certkit_file_with_sidecar() -> None:
    results = read_results(CERTKIT_FILE)
    assert results.format == "certkit"
    assert results.idx.tolist() == [0, 1, 2, 3]
    assert results.predict.tolist() == [3, 1, 2, -1]
    assert results.samples is not None and results.samples.tolist() == [10000, 10000, 2000, 10000]
    assert results.time.sum() == pytest.approx(2.0)
    assert results.metadata["certifier"] == "cohen"
    assert results.label_text == "vit-mini σ=0.25"
    assert not results.truncated_last_line


def test_reads_cohen_format_with_timedelta_times() -> None:
    results = read_results(COHEN_FILE)
    assert results.format == "cohen"
    assert results.samples is None
    assert results.metadata == {}
    assert results.label_text == "cohen_small"  # no sidecar: the file stem
    assert results.time.tolist() == pytest.approx([1.5, 2.0, 60.25, 0.5])
    assert results.predict[-1] == -1 and results.radius[-1] == 0.0


def test_partial_last_line_is_dropped_and_said_but_a_complete_one_is_kept(tmp_path: Path) -> None:
    partial = read_results(write_certkit(tmp_path / "a.tsv", [(0.5, 1)] * 3, tail="3\t0\t0\t0.4"))
    assert len(partial.idx) == 3 and partial.truncated_last_line
    assert any("incomplete last line 5" in note for note in partial.notes)
    # A complete last row without a final newline (Cohen et al.'s files end so) is a row.
    complete = read_results(write_certkit(tmp_path / "b.tsv", [(0.5, 1)] * 3, tail="3\t0\t0\t0.4\t1\t0.1\t0.9\t100\t90\t10"))
    assert complete.idx.tolist() == [0, 1, 2, 3] and not complete.truncated_last_line and not complete.notes


def test_malformed_middle_line_names_the_line(tmp_path: Path) -> None:
    bad_row = "1\t0\tx\t0.4\t1\t0.1\t0.9\t100\t90\t10\n"
    good_row = "2\t0\t0\t0.1\t1\t0.1\t0.9\t100\t90\t10\n"
    path = write_certkit(tmp_path / "bad.tsv", [(0.5, 1)], tail=bad_row + good_row)
    with pytest.raises(ResultsError, match=r"bad\.tsv:3"):
        read_results(path)


def test_unknown_header_and_missing_file_are_user_errors(tmp_path: Path) -> None:
    odd = tmp_path / "odd.tsv"
    odd.write_text("a\tb\n1\t2\n", encoding="utf-8")
    with pytest.raises(ResultsError, match="unknown results header"):
        read_results(odd)
    with pytest.raises(ResultsError, match="nope.tsv"):
        read_results(tmp_path / "nope.tsv")


# --- metrics -------------------------------------------------------------------------------


def test_certified_accuracy_and_acr_by_hand() -> None:
    results = read_results(CERTKIT_FILE)
    assert certified_accuracy(results, [0, 0.5, 1.0]).tolist() == [0.75, 0.5, 0.25]
    assert certified_accuracy(results, [1.2, 1.21]).tolist() == [0.25, 0.0]  # radius >= r
    assert average_certified_radius(results) == pytest.approx((1.2 + 0.6 + 0.1) / 4)


def test_wrong_predictions_never_count_even_with_a_radius() -> None:
    results = read_results(COHEN_FILE)
    assert certified_accuracy(results, [0, 0.5, 0.8]).tolist() == [0.5, 0.25, 0.0]
    assert average_certified_radius(results) == pytest.approx((0.75 + 0.3) / 4)


def test_envelope_takes_the_best_file_per_radius(tmp_path: Path) -> None:
    small_sigma = read_results(write_certkit(tmp_path / "s.tsv", [(0.2, 1)] * 4))
    large_sigma = read_results(CERTKIT_FILE)
    assert envelope([small_sigma, large_sigma], [0, 0.5, 1.0]).tolist() == [1.0, 0.5, 0.25]


def test_default_radius_grid(tmp_path: Path) -> None:
    assert default_radius_grid(read_results(CERTKIT_FILE)) == [0, 0.25, 0.5, 0.75, 1.0]
    far = read_results(write_certkit(tmp_path / "far.tsv", [(1.6, 1), (3.0, 0)]))  # wrong rows ignored
    assert default_radius_grid([far]) == [0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0,0.25,0.5", [0, 0.25, 0.5]),
        ("0:1.5:0.25", [0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5]),
        ("0:0.3:0.1", [0, 0.1, 0.2, 0.3]),  # float drift must not drop the stop
        ("1, 0.5,0.5,0:0.5:0.5", [0, 0.5, 1.0]),
    ],
)
def test_parse_radii(text: str, expected: list[float]) -> None:
    assert parse_radii(text) == expected


@pytest.mark.parametrize("text", ["", "a", "-0.5", "0,,1", "0:1", "1:0:0.25", "0:1:0", "nan", "inf"])
def test_parse_radii_rejects(text: str) -> None:
    with pytest.raises(ResultsError):
        parse_radii(text)


def test_build_report_rows_and_envelope() -> None:
    files = [read_results(CERTKIT_FILE), read_results(COHEN_FILE)]
    radii, rows = build_report(files, [0, 0.5, 1.0], envelope=True)
    certkit_row, cohen_row, envelope_row = rows
    assert certkit_row.certified == [0.75, 0.5, 0.25]
    assert certkit_row.abstain_rate == 0.25
    assert (certkit_row.mean_samples, certkit_row.total_samples) == (8000, 32000)
    assert cohen_row.mean_samples is None and cohen_row.wall_time == pytest.approx(64.25)
    assert envelope_row.label == ENVELOPE_LABEL and math.isnan(envelope_row.acr)
    assert envelope_row.certified == [0.75, 0.5, 0.25]


# --- CLI -----------------------------------------------------------------------------------


def run_cli(args: list[str]) -> tuple[int, str]:
    """Invoke `report` as the real app does, mapping CertkitError to exit code 2 as it does centrally."""
    app = typer.Typer()
    app.callback()(lambda: None)  # keep "report" a sub-command, as in the real app
    app.command("report")(report)
    result = CliRunner().invoke(app, ["report", *args], env={"COLUMNS": "200"})
    if isinstance(result.exception, CertkitError):
        return 2, result.output + str(result.exception)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_cli_writes_markdown_csv_and_png(tmp_path: Path) -> None:
    code, output = run_cli(
        [str(CERTKIT_FILE), str(COHEN_FILE), "--radii", "0,0.5,1", "--envelope"]
        + ["--out-dir", str(tmp_path), "--name", "r"]
    )
    assert code == 0, output
    for cell in ("75.0", "50.0", "25.0", "0.475", "0.263", ENVELOPE_LABEL, "32,000", "8,000"):
        assert cell in output
    markdown = (tmp_path / "r.md").read_text(encoding="utf-8")
    assert "| vit-mini σ=0.25 | 4 | 75.0 | 50.0 | 25.0 | 0.475 | 25.0 |" in markdown
    with (tmp_path / "r.csv").open(encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert [row["label"] for row in table] == ["vit-mini σ=0.25", "cohen_small", ENVELOPE_LABEL]
    assert float(table[0]["certified_acc@0.5"]) == 0.5 and table[2]["acr"] == ""
    png = (tmp_path / "r.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_cli_defaults_write_next_to_the_first_file(tmp_path: Path) -> None:
    path = write_certkit(tmp_path / "run.tsv", [(0.3, 1), (0.0, 0)])
    code, output = run_cli([str(path)])
    assert code == 0, output
    assert {p.name for p in tmp_path.iterdir()} >= {"report.md", "report.csv", "report.png"}
    assert "r=0.75" in output  # default grid reaches at least radius 1.0


def test_cli_user_errors_exit_2(tmp_path: Path) -> None:
    code, output = run_cli([str(tmp_path / "missing.tsv"), "--out-dir", str(tmp_path)])
    assert code == 2 and "missing.tsv" in output
    code, output = run_cli([str(CERTKIT_FILE), "--radii", "0,-1", "--out-dir", str(tmp_path)])
    assert code == 2 and "--radii" in output
    assert not any(tmp_path.iterdir())


def test_importing_the_command_does_not_import_matplotlib() -> None:
    code = "import sys, certkit.cli.report_cmd; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_empty_results_file_gives_undefined_not_zero(tmp_path: Path) -> None:
    results = read_results(write_certkit(tmp_path / "empty.tsv", []))
    assert np.isnan(certified_accuracy(results, [0, 1])).all()
    assert math.isnan(average_certified_radius(results))


def test_same_model_and_sigma_get_distinct_labels(tmp_path):
    import shutil

    from certkit.results.report import curve_labels

    source = Path(__file__).parent / "data" / "certkit_small.tsv"
    copies = []
    for stem in ("dmae", "scratch"):
        shutil.copy(source, tmp_path / f"{stem}.tsv")
        shutil.copy(source.with_name(source.name + ".meta.json"), tmp_path / f"{stem}.tsv.meta.json")
        copies.append(read_results(tmp_path / f"{stem}.tsv"))
    labels = curve_labels(copies)
    assert labels[0] != labels[1] and labels[0].endswith("(dmae)") and labels[1].endswith("(scratch)")
    assert curve_labels(copies, ["DMAE", "from scratch"]) == ["DMAE", "from scratch"]


def test_report_uses_report_radii_from_certkit_yaml(tmp_path, monkeypatch):
    import shutil

    source = Path(__file__).parent / "data" / "certkit_small.tsv"
    shutil.copy(source, tmp_path / "r.tsv")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "certkit.yaml").write_text("report:\n  radii: [0.0, 0.6]\n")
    app = typer.Typer()
    app.command()(report)
    result = CliRunner().invoke(app, ["r.tsv", "--out-dir", "out"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    header = (tmp_path / "out" / "report.csv").read_text().splitlines()[0]
    assert "certified_acc@0," in header and "certified_acc@0.6," in header and "certified_acc@0.5" not in header
