"""`certkit compare`: identical settings for every method, reuse, mismatch refusal and marking."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from certkit.cli.main import build_app
from certkit.errors import CertkitError, PluginError, ResultsError
from certkit.workflows.compare import parse_entry
from conftest import make_tiny_checkpoint

FAST = ["--n0", "10", "--n", "200", "--max", "4", "--batch", "200"]


def invoke(*args: str):
    return CliRunner().invoke(build_app(), list(args), env={"COLUMNS": "250"})


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def meta(path: Path) -> dict:
    return json.loads(Path(str(path) + ".meta.json").read_text())


def csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_models_are_certified_with_identical_settings_then_reused(tiny_model, workdir):
    other = make_tiny_checkpoint(workdir / "other.safetensors", seed=1)
    result = invoke("compare", "tiny-cnn", f"retrained:tiny-cnn={other}", "--sigma", "0.25", *FAST, "--seed", "3", "--out-dir", "cmp")
    assert result.exit_code == 0, result.output
    first, second = meta(workdir / "cmp/tiny-cnn.tsv"), meta(workdir / "cmp/retrained.tsv")
    for key in ("sigma", "n0", "n", "alpha", "seed", "dataset", "max", "certifier"):
        assert first[key] == second[key], key
    assert (first["n"], first["n0"], first["seed"]) == (200, 10, 3)
    assert first["checkpoint_sha256"] != second["checkpoint_sha256"]
    assert "clean acc" in result.output and "differs" not in result.output
    rows = csv_rows(workdir / "cmp/compare.csv")
    assert [r["label"] for r in rows] == ["tiny-cnn", "retrained"]
    for row in rows:
        assert row["images"] == "4" and row["mean_samples"] == "210.0"
        assert float(row["clean_acc"]) == pytest.approx(float(row["certified_acc@0"]))
    assert (workdir / "cmp/compare.png").read_bytes()[:4] == b"\x89PNG"
    assert "| method | images |" in (workdir / "cmp/compare.md").read_text()

    again = invoke("compare", "tiny-cnn", f"retrained:tiny-cnn={other}", "--sigma", "0.25", *FAST, "--seed", "3", "--out-dir", "cmp")
    assert again.exit_code == 0 and again.output.count(": reused ") == 2


def test_settings_come_from_the_first_results_file(tiny_model, workdir):
    made = invoke("certify", "--model", "tiny-cnn", "--sigma", "0.25", "--n0", "20", "--n", "300", "--max", "3", "--seed", "5", "--out", "earlier.tsv")
    assert made.exit_code == 0, made.output
    result = invoke("compare", "earlier.tsv", "tiny-cnn", "--out-dir", "cmp")
    assert result.exit_code == 0, result.output
    certified = meta(workdir / "cmp/tiny-cnn.tsv")
    assert (certified["n0"], certified["n"], certified["seed"], certified["max"]) == (20, 300, 5, 3)
    assert "earlier.tsv" in result.output and "σ=0.25, N0=20, N=300" in result.output


def test_other_settings_are_refused_unless_allowed_and_then_marked(tiny_model, workdir):
    assert invoke("certify", "--model", "tiny-cnn", "--sigma", "0.25", "--n0", "10", "--n", "300", "--max", "4", "--out", "n300.tsv").exit_code == 0
    refused = invoke("compare", "tiny-cnn", "n300.tsv", "--sigma", "0.25", *FAST, "--out-dir", "cmp")
    assert refused.exit_code == 2
    assert "n300.tsv was made with other settings than the comparison (N 300 (not 200))" in refused.stderr
    assert "--allow-mismatch" in refused.stderr and not (workdir / "cmp").exists()  # refused before certifying

    allowed = invoke("compare", "tiny-cnn", "n300.tsv", "--sigma", "0.25", *FAST, "--out-dir", "cmp", "--allow-mismatch")
    assert allowed.exit_code == 0, allowed.output
    rows = {r["label"]: r for r in csv_rows(workdir / "cmp/compare.csv")}
    assert rows["tiny-cnn (n300) *"]["differs"] == "N 300 (not 200)"
    assert rows["tiny-cnn"]["differs"] == ""
    assert "differs" in allowed.output and "N 300 (not 200)" in allowed.output


def test_files_covering_other_images_are_cut_to_the_common_ones_only_when_allowed(tiny_model, workdir):
    args = ["--model", "tiny-cnn", "--sigma", "0.25", "--n0", "10", "--n", "200"]
    assert invoke("certify", *args, "--max", "5", "--out", "five.tsv").exit_code == 0
    assert invoke("certify", *args, "--max", "3", "--out", "three.tsv").exit_code == 0
    refused = invoke("compare", "a:five.tsv", "b:three.tsv", "--out-dir", "cmp")
    assert refused.exit_code == 2 and "the methods cover different images (a: 5, b: 3; 3 in common)" in refused.stderr
    allowed = invoke("compare", "a:five.tsv", "b:three.tsv", "--out-dir", "cmp", "--allow-mismatch")
    assert allowed.exit_code == 0, allowed.output
    assert "compared on the 3 images every method has" in allowed.output
    assert [r["images"] for r in csv_rows(workdir / "cmp/compare.csv")] == ["3", "3"]
    # With --max 3 the first file is cut to the comparison's images: nothing differs.
    assert invoke("compare", "a:five.tsv", "b:three.tsv", "--max", "3", "--out-dir", "cmp").exit_code == 0


def test_existing_results_with_other_settings_need_overwrite(tiny_model, workdir):
    assert invoke("compare", "tiny-cnn", "--sigma", "0.25", *FAST, "--out-dir", "cmp").exit_code == 0
    changed = invoke("compare", "tiny-cnn", "--sigma", "0.25", *FAST, "--n", "300", "--out-dir", "cmp")
    assert changed.exit_code == 2 and "different configuration" in changed.stderr and "--overwrite" in changed.stderr
    assert invoke("compare", "tiny-cnn", "--sigma", "0.25", *FAST, "--n", "300", "--out-dir", "cmp", "--overwrite").exit_code == 0
    assert meta(workdir / "cmp/tiny-cnn.tsv")["n"] == 300


def test_entry_syntax(tiny_model, workdir):
    weights = make_tiny_checkpoint(workdir / "w.safetensors")
    assert parse_entry(str(weights)).model == "tiny-cnn"  # a weights file names its model
    labelled = parse_entry(f"mine:tiny-cnn={weights}")
    assert (labelled.label, labelled.model, labelled.checkpoint) == ("mine", "tiny-cnn", weights)
    assert parse_entry("tiny-cnn").checkpoint is None
    with pytest.raises(ResultsError, match="results file missing.tsv does not exist"):
        parse_entry("missing.tsv")
    with pytest.raises(PluginError, match="unknown model 'nope'"):
        parse_entry("nope")
    with pytest.raises(CertkitError, match="cannot read compare entry 'tiny-cnn='"):
        parse_entry("tiny-cnn=")


def test_an_identical_certify_file_is_reused_not_certified_again(tiny_model, workdir):
    certified = invoke("certify", "--model", "tiny-cnn", "--sigma", "0.25", *FAST, "--seed", "5")
    assert certified.exit_code == 0, certified.output
    existing = workdir / "results" / "tiny-cnn_sigma0.25_fashion-mnist-mini-test_cohen.tsv"
    before = existing.read_bytes()
    result = invoke("compare", "tiny-cnn", "--sigma", "0.25", *FAST, "--seed", "5", "--out-dir", "cmp")
    assert result.exit_code == 0, result.output
    assert f"tiny-cnn: reused {existing.relative_to(workdir)} (same model, weights and settings: not certified again)" in " ".join(result.output.split())
    assert not (workdir / "cmp" / "tiny-cnn.tsv").exists() and existing.read_bytes() == before
    other_seed = invoke("compare", "tiny-cnn", "--sigma", "0.25", *FAST, "--seed", "6", "--out-dir", "cmp")
    assert other_seed.exit_code == 0 and (workdir / "cmp" / "tiny-cnn.tsv").exists()  # another identity: certified


def test_every_entry_is_checked_before_anything_is_certified(tiny_model, workdir):
    result = invoke("compare", "tiny-cnn", "resnet-mini", "--sigma", "0.25", *FAST, "--out-dir", "cmp")  # resnet-mini ships no weights
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert "compare entry 'resnet-mini': model 'resnet-mini' has no checkpoint for sigma 0.25" in message
    assert not (workdir / "cmp").exists() and not (workdir / "results").exists()


def test_norms_are_not_mixed_without_allow_mismatch(tiny_model, workdir):
    for smoother in ("gaussian", "uniform"):
        done = invoke("certify", "--model", "tiny-cnn", "--sigma", "0.25", *FAST, "--smoother", smoother, "--out", f"{smoother}.tsv")
        assert done.exit_code == 0, done.output
    refused = invoke("compare", "gaussian.tsv", "uniform.tsv", "--out-dir", "cmp")
    assert refused.exit_code == 2
    assert "smoother uniform (not gaussian); norm l1 (not l2)" in " ".join(refused.stderr.split())
    assert not (workdir / "cmp").exists()
    allowed = invoke("compare", "gaussian.tsv", "uniform.tsv", "--out-dir", "cmp", "--allow-mismatch")
    assert allowed.exit_code == 0, allowed.output
    rows = {row["label"]: row for row in csv_rows(workdir / "cmp/compare.csv")}
    assert "norm l1 (not l2)" in rows["tiny-cnn uniform (l1) *"]["differs"] and rows["tiny-cnn"]["differs"] == ""
