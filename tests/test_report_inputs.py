"""`certkit report` on files it did not write, at 80 columns, with radii out of reach and with
results of several norms: what the user sees is what the files say, literally."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from certkit import hookimpl, plugins
from certkit.cli.main import build_app
from certkit.cli.progress import ImageProgress
from certkit.results.labels import curve_labels
from certkit.results.metrics import largest_certifiable_radius
from certkit.results.plot import curves_for, draw, visible_accuracy
from certkit.results.reader import read_results
from certkit.results.report import build_report, render_table

HEADER = "idx\tlabel\tpredict\tradius\tcorrect\ttime\tpA_lower\tn\tnA\tn0A\n"
COHEN_HEADER = "idx\tlabel\tpredict\tradius\tcorrect\ttime\n"


def invoke(*args: str, columns: int = 200):
    return CliRunner().invoke(build_app(), list(args), env={"COLUMNS": str(columns)})


def certkit_file(path: Path, radii: list[float], meta: dict | None = None, first: int = 0) -> Path:
    """A certkit TSV: image first+i certified (correct) at radii[i]; a negative radius is an abstention."""
    rows = [f"{first + i}\t0\t{0 if r >= 0 else -1}\t{max(r, 0.0)}\t{int(r >= 0)}\t0.5\t0.9\t1100\t1000\t100\n" for i, r in enumerate(radii)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join(rows), encoding="utf-8")
    if meta is not None:
        base = {"kind": "certify", "model": "vit-mini", "sigma": 0.25, "n0": 100, "n": 1000, "alpha": 0.001, "certifier": "cohen", "smoother": "gaussian"}
        Path(str(path) + ".meta.json").write_text(json.dumps({**base, **meta}))
    return path


def cohen_file(path: Path, rows: list[tuple[int, float]], final_newline: bool = True) -> Path:
    lines = [f"{idx}\t1\t1\t{radius}\t1\t0:00:01.500000" for idx, radius in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(COHEN_HEADER + "\n".join(lines) + ("\n" if final_newline else ""), encoding="utf-8")
    return path


def csv_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def flat(text: str) -> str:
    return " ".join(text.split())


# --- user text is printed literally ------------------------------------------------------------


def test_paths_labels_and_errors_are_never_read_as_markup_or_emoji(tmp_path):
    odd = certkit_file(tmp_path / "run[bold]x.tsv", [0.3, 0.1])
    result = invoke("report", str(odd), "--out-dir", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "run[bold]x" in result.output
    assert [row["label"] for row in csv_rows(tmp_path / "out/report.csv")] == ["run[bold]x"]

    missing = invoke("report", str(tmp_path / "a[/b]" / "missing.tsv"))
    assert missing.exit_code == 2 and "MarkupError" not in missing.output
    assert "a[/b]/missing.tsv does not exist" in missing.stderr

    bad = cohen_file(tmp_path / "bad.tsv", [(i, 0.1) for i in range(98)])
    bad.write_text(bad.read_text() + "98\t1\t1\tzero\t1\t0:00:01\n")  # line 100
    damaged = invoke("report", str(bad))
    assert damaged.exit_code == 2
    assert "bad.tsv:100: radius 'zero' is not a number" in damaged.stderr and "💯" not in damaged.stderr


def test_progress_descriptions_and_notes_are_literal():
    console = Console(record=True, width=200, force_terminal=False)
    with ImageProgress(console) as progress:
        progress.start(2, 1, "model[/b] :100: [bold]x")
        progress.note("wrote results/[red]odd:100:.tsv")
    shown = console.export_text()
    assert "results/[red]odd:100:.tsv" in shown and "💯" not in shown


# --- labels ------------------------------------------------------------------------------------


def test_cohen_layout_gets_distinct_informative_labels(tmp_path):
    files = [cohen_file(tmp_path / f"noise_{s}" / "test" / f"sigma_{s}", [(0, 0.2)]) for s in ("0.25", "0.50", "1.00")]
    assert curve_labels([read_results(f) for f in files]) == ["sigma_0.25", "sigma_0.50", "sigma_1.00"]
    # The same file name in two runs: the shortest end of the path that differs.
    twins = [cohen_file(tmp_path / run / "test" / "sigma_0.50", [(0, 0.2)]) for run in ("cohen", "salman")]
    assert curve_labels([read_results(f) for f in twins]) == ["cohen/test/sigma_0.50", "salman/test/sigma_0.50"]
    same = read_results(files[0])
    assert curve_labels([same, same]) == ["sigma_0.25", "sigma_0.25 #2"]


# --- what is in the file is what is counted ----------------------------------------------------


def test_complete_last_row_without_newline_is_kept_a_partial_one_is_reported(tmp_path):
    whole = cohen_file(tmp_path / "sigma_0.25", [(0, 0.5), (20, 0.4), (40, 0.3)], final_newline=False)
    assert read_results(whole).idx.tolist() == [0, 20, 40]
    cut = whole.with_name("cut")
    cut.write_text(whole.read_text() + "\n60\t1\t1\t0.", encoding="utf-8")
    result = invoke("report", str(cut), "--out-dir", str(tmp_path / "out"), "--radii", "0")
    assert result.exit_code == 0, result.output
    assert "left out the incomplete last line 5" in flat(result.output)
    assert csv_rows(tmp_path / "out/report.csv")[0]["images"] == "3"


def test_bom_nan_radii_and_directories(tmp_path):
    bom = tmp_path / "bom.tsv"
    bom.write_bytes(b"\xef\xbb\xbf" + COHEN_HEADER.encode() + b"0\t1\t1\t0.5\t1\t0:00:01\n20\t1\t1\tnan\t1\t0:00:01\n")
    result = invoke("report", str(bom), "--out-dir", str(tmp_path / "out"), "--radii", "0,0.5")
    assert result.exit_code == 0, result.output
    assert "1 row with radius NaN (images 20) count as not certified" in flat(result.output)
    row = csv_rows(tmp_path / "out/report.csv")[0]
    assert row["images"] == "2" and float(row["certified_acc@0"]) == 0.5 and float(row["acr"]) == 0.25

    folder = tmp_path / "runs"
    certkit_file(folder / "a.tsv", [0.1])
    refused = invoke("report", str(folder))
    assert refused.exit_code == 2
    assert "runs is a directory, not a results file (it holds 1 .tsv file)" in flat(refused.stderr)
    assert "does not exist" not in refused.stderr


def test_no_file_argument_reports_every_tsv_in_output_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    certkit_file(tmp_path / "results" / "a.tsv", [0.3])
    certkit_file(tmp_path / "results" / "b.tsv", [0.6])
    result = invoke("report", "--radii", "0")
    assert result.exit_code == 0, result.output
    assert [row["label"] for row in csv_rows(tmp_path / "results/report.csv")] == ["a", "b"]
    (tmp_path / "certkit.yaml").write_text("output_dir: elsewhere\n")
    certkit_file(tmp_path / "elsewhere" / "c.tsv", [0.3])
    assert invoke("report", "--radii", "0").exit_code == 0
    assert [row["label"] for row in csv_rows(tmp_path / "elsewhere/report.csv")] == ["c"]
    (tmp_path / "empty").mkdir()
    (tmp_path / "certkit.yaml").write_text("output_dir: empty\n")
    refused = invoke("report")
    assert refused.exit_code == 2 and "no results files (*.tsv) in empty" in refused.stderr


def test_envelope_over_different_images_and_budgets_says_so_or_restricts(tmp_path):
    many = certkit_file(tmp_path / "a.tsv", [0.2, 0.2, 0.2, 0.2], {"sigma": 0.12})
    few = certkit_file(tmp_path / "b.tsv", [0.5, -1, 0.5], {"sigma": 0.5, "n": 10000}, first=2)
    result = invoke("report", str(many), str(few), "--envelope", "--radii", "0,0.5", "--out-dir", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    shown = flat(result.output)
    assert "the files cover different images (3 to 4 per file, 2 in common, images 0-4 in all)" in shown
    assert "different N and α (N=1,000 α=0.001; N=10,000 α=0.001)" in shown
    envelope = csv_rows(tmp_path / "out/report.csv")[-1]
    assert envelope["images"] == "4" and "| 3–4 |" in (tmp_path / "out/report.md").read_text()

    common = invoke("report", str(many), str(few), "--envelope", "--common-images", "--radii", "0,0.5", "--out-dir", str(tmp_path / "c"))
    assert common.exit_code == 0, common.output
    assert "every file restricted to the 2 images all of them have" in flat(common.output)
    rows = csv_rows(tmp_path / "c/report.csv")
    assert [row["images"] for row in rows] == ["2", "2", "2"]
    assert float(rows[1]["certified_acc@0"]) == 0.5  # b.tsv's images 2 and 3: one certified, one abstained


# --- 80 columns ---------------------------------------------------------------------------------


def test_the_table_is_readable_at_80_columns(tmp_path):
    files = [
        str(certkit_file(tmp_path / f"s{s}.tsv", list(np.linspace(0, 2 * s, 10)), {"sigma": s, "model": "vit-mini-long-name"}))
        for s in (0.25, 0.5, 1.0)
    ]
    radii = "0,0.25,0.5,0.75,1,1.25,1.5,2,3"
    result = invoke("report", *files, "--envelope", "--radii", radii, "--out-dir", str(tmp_path / "out"), columns=80)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    headers = [line for line in lines if line.startswith("┃")]
    for name in ("r=0", "r=0.25", "r=1.5", "r=3", "ACR", "abstain", "samples/img", "time"):
        assert sum(f" {name} " in line for line in headers) == 1, name  # each column once, never wrapped
    assert all(line.split("┃")[1].strip() == "model" for line in headers)  # rows are files, not radii
    body = [line for line in lines if line.startswith("│")]
    assert all(re.match(r"│ (vit-mini-long-name σ=[\d.]+|envelope \(best σ\)) +│", line) for line in body)


# --- radii out of reach -------------------------------------------------------------------------


def test_radii_beyond_what_n_and_alpha_can_certify_are_unreachable_not_zero(tmp_path):
    path = certkit_file(tmp_path / "r.tsv", [0.6158, 0.3, -1, 0.1], {"sigma": 0.25, "n": 1000, "alpha": 0.001})
    reach = largest_certifiable_radius(read_results(path).metadata)
    assert reach == pytest.approx(0.25 * 2.4633, abs=1e-3)  # sigma * Phi^-1(0.001 ** (1 / 1000)), all 1000 hits
    result = invoke("report", str(path), "--radii", "0,0.5,0.75,3", "--out-dir", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("│ vit-mini"))
    assert [cell.strip() for cell in row.split("│")[3:7]] == ["75.0", "25.0", "—", "—"]
    assert "largest certifiable radius: vit-mini σ=0.25: 0.616" in flat(result.output)
    written = csv_rows(tmp_path / "out/report.csv")[0]
    assert written["certified_acc@0.5"] == "0.25" and written["certified_acc@0.75"] == "" and written["certified_acc@3"] == ""
    assert float(written["max_certifiable_radius"]) == pytest.approx(reach)
    assert "| 75.0 | 25.0 | — | — |" in (tmp_path / "out/report.md").read_text()
    curve = curves_for([read_results(path)], ["r"])[0]
    shown = visible_accuracy(curve)
    beyond = curve.radii > reach * (1 + 1e-9)
    assert beyond.any() and np.isnan(shown[beyond]).all() and not np.isnan(shown[~beyond]).any()


# --- norms (issue 10) --------------------------------------------------------------------------


class _UniformL1:
    """A test smoother with an L1 certificate (Yang et al. 2020): R = 2 lam (p - 1/2), lam = sqrt(3) sigma."""

    name = "uniform-test"
    norm = "l1"

    def __init__(self, sigma: float) -> None:
        self.sigma = sigma

    def radius(self, p_lower: float) -> float:
        return 2 * math.sqrt(3) * self.sigma * (p_lower - 0.5)


class _L1Plugin:
    @hookimpl
    def certkit_register_smoothers(self, register) -> None:
        register("uniform-test", _UniformL1, description="test L1 smoother")


@pytest.fixture
def l1_smoother():
    host = plugins.host()
    host.register_plugin(_L1Plugin(), name="test-l1")
    try:
        yield
    finally:
        host.unregister_plugin("test-l1")


def test_l1_and_l2_files_never_share_a_column_an_axis_or_an_envelope(tmp_path, l1_smoother):
    l2 = certkit_file(tmp_path / "gauss.tsv", [0.5, 0.2, -1, -1], {"sigma": 0.25})
    l1 = certkit_file(tmp_path / "unif.tsv", [0.42, 0.4, 0.3, 0.1], {"sigma": 0.25, "smoother": "uniform-test", "norm": "l1"})
    results = [read_results(l2), read_results(l1)]
    assert results[1].label_text == "vit-mini uniform-test σ=0.25 (l1)"  # never labelled like the Gaussian run
    assert results[0].label_text == "vit-mini σ=0.25"

    result = invoke("report", str(l2), str(l1), "--envelope", "--radii", "0,0.25,0.5", "--out-dir", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "Certified accuracy (%) at L2 radius" in result.output and "Certified accuracy (%) at L1 radius" in result.output
    rows = {row["label"]: row for row in csv_rows(tmp_path / "out/report.csv")}
    assert [rows[label]["norm"] for label in rows] == ["l2", "l1", "l2", "l1"]
    gauss, envelope_l2 = rows["vit-mini σ=0.25"], rows["envelope L2 (best σ)"]
    # The L2 envelope is the L2 file alone: the L1 file mixed in would lift it to 100 / 75 at r = 0 / 0.25.
    for r in ("0", "0.25", "0.5"):
        assert envelope_l2[f"certified_acc@{r}"] == gauss[f"certified_acc@{r}"]
    envelope_l1 = rows["envelope L1 (best σ)"]
    assert float(envelope_l1["certified_acc@0.25"]) == 0.75
    assert envelope_l1["certified_acc@0.5"] == ""  # beyond what N = 1,000 can certify with L1 noise at this sigma
    l1_reach = float(rows["vit-mini uniform-test σ=0.25 (l1)"]["max_certifiable_radius"])
    assert l1_reach == pytest.approx(2 * math.sqrt(3) * 0.25 * (0.001 ** (1 / 1000) - 0.5))  # the smoother's own formula

    figure = draw(curves_for(results, ["gauss", "unif"], envelope=True), "t")
    try:
        axes = figure.axes
        assert [a.get_xlabel() for a in axes] == [r"$\ell_2$ radius", r"$\ell_1$ radius"]
        assert [a.get_title() for a in axes] == ["t, L2 radius", "t, L1 radius"]
        dotted = [[line.get_xdata()[0] for line in a.get_lines() if line.get_linestyle() == ":" and len(line.get_xdata())] for a in axes]
        assert dotted[0] == [] and dotted[1] == [pytest.approx(l1_reach)]  # the L1 curve ends at its reach, marked once
    finally:
        import matplotlib.pyplot as plt

        plt.close(figure)


def test_compare_tables_split_by_norm(tmp_path):
    l2 = certkit_file(tmp_path / "g.tsv", [0.5, 0.2], {"sigma": 0.25})
    l1 = certkit_file(tmp_path / "u.tsv", [0.5, 0.2], {"sigma": 0.25, "smoother": "uniform-x", "norm": "l1"})
    radii, rows = build_report([read_results(l2), read_results(l1)], [0, 0.5])
    console = Console(record=True, width=200)
    console.print(render_table(radii, rows, width=200, compare=True, context="σ=0.25"))
    shown = console.export_text()
    assert "at L2 radius, σ=0.25" in shown and "at L1 radius, σ=0.25" in shown
    assert shown.count("┃ method") == 2


def test_the_cut_column_of_a_stop_if_wrong_run_is_read(tmp_path):
    path = tmp_path / "cut.tsv"
    path.write_text(HEADER.rstrip("\n") + "\tcut\n" + "0\t1\t1\t0.4\t1\t0.5\t0.9\t1100\t1000\t100\t0\n" + "1\t2\t5\t0\t0\t0.1\t0\t100\t0\t90\t1\n")
    results = read_results(path)
    assert results.cut.tolist() == [0, 1] and results.samples.tolist() == [1100, 100]
    radii, rows = build_report([results], [0, 0.25])
    assert rows[0].certified == [0.5, 0.5]  # the cut image is wrong, as it would have been anyway
