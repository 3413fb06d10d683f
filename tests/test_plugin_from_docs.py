"""The worked example of docs/writing-plugins.md, built outside the repository and used end to end.

The plugin's files are taken from the page's code blocks (```... file=PATH), written to a
temporary directory and made discoverable through a real entry point (a dist-info folder on
sys.path, which is what `pip install` leaves behind). Its Laplace smoother certifies L1 radii:
certify, report, --envelope and compare must label, title and separate them from L2 results.
"""

from __future__ import annotations

import csv
import importlib
import json
import re
import sys
import tomllib
from pathlib import Path

import matplotlib.figure
import pytest
from typer.testing import CliRunner

from certkit import plugins
from certkit.cli.main import build_app
from conftest import TinyPlugin

DOC = Path(__file__).resolve().parents[1] / "docs" / "writing-plugins.md"
FAST = ["--model", "tiny-cnn", "--sigma", "0.25", "--n0", "20", "--n", "400", "--max", "8", "--batch", "420"]
GRID = "0,0.2,0.4,0.6"  # 0.6: beyond the L2 reach at N = 400, within the L1 one at lam 0.2


def documented_files() -> dict[str, str]:
    blocks = re.findall(r"^```\w+ file=(\S+)\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)
    return dict(blocks)


@pytest.fixture
def laplace_plugin(tiny_model, tmp_path_factory, monkeypatch):
    """Write the documented plugin and install it as an entry point (dist-info on sys.path)."""
    root = tmp_path_factory.mktemp("outside")
    files = documented_files()
    assert {"certkit-laplace/pyproject.toml", "certkit-laplace/src/certkit_laplace/plugin.py"} <= set(files)
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    project = tomllib.loads((root / "certkit-laplace/pyproject.toml").read_text())["project"]
    site = root / "site"
    info = site / f"certkit_laplace-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    entry_points = "".join(f"{name} = {target}\n" for name, target in project["entry-points"]["certkit"].items())
    (info / "entry_points.txt").write_text(f"[certkit]\n{entry_points}")
    monkeypatch.syspath_prepend(str(root / "certkit-laplace" / "src"))
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    plugins.reset()  # entry points are read once per host: a new host finds the new one
    plugins.host().register_plugin(TinyPlugin(tiny_model), name="test-tiny")
    try:
        yield root
    finally:
        plugins.reset()
        sys.modules.pop("certkit_laplace.plugin", None)
        sys.modules.pop("certkit_laplace", None)


@pytest.fixture
def figures(monkeypatch):
    """Titles, axis labels and legend entries of every figure certkit saves."""
    seen: list[dict] = []
    original = matplotlib.figure.Figure.savefig

    def record(self, *args, **kwargs):
        for axes in self.axes:
            legend = axes.get_legend()
            seen.append({
                "title": axes.get_title(), "xlabel": axes.get_xlabel(),
                "legend": [text.get_text() for text in legend.get_texts()] if legend else [],
            })
        return original(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", record)
    return seen


def invoke(*args: str):
    return CliRunner().invoke(build_app(), list(args), env={"COLUMNS": "250"})


def csv_rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as handle:
        return {row["label"]: row for row in csv.DictReader(handle)}


def test_documented_l1_plugin_is_labelled_and_kept_apart_from_l2(laplace_plugin, tmp_path, monkeypatch, figures):
    monkeypatch.chdir(tmp_path)
    listed = invoke("plugins")
    assert listed.exit_code == 0 and "entry point certkit_laplace.plugin" in listed.output and "smoother: laplace" in listed.output

    gaussian = invoke("certify", *FAST, "--radii", GRID)
    laplace = invoke("certify", *FAST, "--smoother", "laplace", "-S", "lam=0.2", "--radii", GRID)
    assert gaussian.exit_code == 0 and laplace.exit_code == 0, laplace.output
    l2_file = tmp_path / "results/tiny-cnn_sigma0.25_fashion-mnist-mini-test_cohen.tsv"
    l1_file = tmp_path / "results/tiny-cnn_sigma0.25_fashion-mnist-mini-test_cohen_laplace-lam_0.2.tsv"
    meta = json.loads(Path(f"{l1_file}.meta.json").read_text())
    assert (meta["smoother"], meta["norm"], meta["smoother_options"]) == ("laplace", "l1", {"lam": 0.2})
    assert "Certified accuracy (%) at L1 radius" in laplace.output and "laplace lam=0.2 σ=0.25 (l1)" in laplace.output

    # report --envelope: one envelope per norm, each equal to its own file's curve
    report = invoke("report", str(l2_file), str(l1_file), "--envelope", "--radii", GRID, "--out-dir", "rep")
    assert report.exit_code == 0, report.output
    assert "at L2 radius" in report.output and "at L1 radius" in report.output
    rows = csv_rows(tmp_path / "rep/report.csv")
    l1_label = next(label for label in rows if "laplace" in label)
    l2_label = next(label for label in rows if label.startswith("tiny-cnn") and "laplace" not in label)
    assert "(l1)" in l1_label and rows[l1_label]["norm"] == "l1" and rows[l2_label]["norm"] == "l2"
    columns = [f"certified_acc@{r}" for r in GRID.split(",")]
    envelopes = {row["norm"]: row for label, row in rows.items() if label.startswith("envelope")}
    assert set(envelopes) == {"l1", "l2"}
    for norm, own in (("l1", rows[l1_label]), ("l2", rows[l2_label])):
        assert [envelopes[norm][c] for c in columns] == [own[c] for c in columns], f"the {norm} envelope took another norm's file"
    assert any(rows[l1_label][c] != rows[l2_label][c] for c in columns), (rows[l1_label], rows[l2_label])  # else a mixed envelope could go unnoticed
    panels = {(figure["xlabel"], figure["title"].rsplit(", ", 1)[-1]) for figure in figures}
    assert {(r"$\ell_1$ radius", "L1 radius"), (r"$\ell_2$ radius", "L2 radius")} <= panels, panels  # one panel per norm
    assert any(l1_label in entry for figure in figures for entry in figure["legend"])

    # compare: mixing norms is refused, and marked when allowed
    refused = invoke("compare", str(l2_file), str(l1_file), "--out-dir", "cmp")
    assert refused.exit_code == 2 and "norm l1 (not l2)" in " ".join(refused.stderr.split())
    allowed = invoke("compare", str(l2_file), str(l1_file), "--out-dir", "cmp", "--allow-mismatch", "--radii", GRID)
    assert allowed.exit_code == 0, allowed.output
    compared = csv_rows(tmp_path / "cmp/compare.csv")
    marked = [row for label, row in compared.items() if "laplace" in label]
    assert len(marked) == 1 and "norm l1 (not l2)" in marked[0]["differs"] and marked[0]["norm"] == "l1"


def test_a_wrong_option_of_the_documented_smoother_is_one_line(laplace_plugin, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for option, message in (("lam=abc", "option 'lam' of smoother 'laplace' must be float, got 'abc'"), ("lamda=0.2", "unknown option 'lamda' of smoother 'laplace'. Its options: lam.")):
        result = invoke("certify", *FAST, "--smoother", "laplace", "-S", option)
        assert result.exit_code == 2 and message in " ".join(result.stderr.split()), result.stderr
    assert not (tmp_path / "results").exists()
