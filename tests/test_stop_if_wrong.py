"""``--stop-if-wrong``: images whose selected class is not their label are cut after selection;
the certified-accuracy table is unchanged, the rows say which images were cut, the sidecar
records the option and it is part of the file's identity; data without labels is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from certkit import ABSTAIN, hookimpl, plugins
from certkit.certifiers.cohen import CohenCertifier
from certkit.certifiers.replay import CategoricalSampler
from certkit.certifiers.sequential import SequentialCertifier
from certkit.certifiers.shortcut import stop_if_wrong
from certkit.cli.main import build_app
from certkit.data import DatasetEntry, DatasetInfo, ImageDataset
from certkit.interfaces import CertifySettings
from certkit.results.metrics import certified_accuracy
from certkit.results.reader import read_results
from certkit.sampling import drive
from certkit.smoothers import GaussianSmoother
from tests_support import snapshot

RADII = [0.0, 0.25, 0.5]
COMMON = ["certify", "--model", "tiny-cnn", "--sigma", "0.25", "--n0", "30", "--n", "1000", "--max", "40", "--batch", "500", "--radii", "0:0.5:0.25"]


def invoke(*args: str):
    return CliRunner().invoke(build_app(), list(args), env={"COLUMNS": "200"})


@pytest.mark.parametrize("certifier,extra", [(CohenCertifier(), {}), (SequentialCertifier(), {"radii": RADII})])
def test_wrapper_cuts_only_a_wrong_selection_and_changes_nothing_else(certifier, extra):
    settings, smoother = CertifySettings(30, 1000, 0.001, extra), GaussianSmoother(0.5)
    probabilities = np.array([0.1, 0.85, 0.05])
    plain = drive(certifier.process(smoother, settings), CategoricalSampler(3).for_image(probabilities, 7))
    kept, cut = drive(stop_if_wrong(certifier.process(smoother, settings), label=1), CategoricalSampler(3).for_image(probabilities, 7))
    assert (kept, cut) == (plain, False)
    stopped, cut = drive(stop_if_wrong(certifier.process(smoother, settings), label=0), CategoricalSampler(3).for_image(probabilities, 7))
    assert cut and stopped.prediction == ABSTAIN and stopped.radius == 0.0 and stopped.samples == 30


def test_cli_table_unchanged_rows_say_which_were_cut(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    full = invoke(*COMMON, "--certifier", "sequential", "--out", "full.tsv")
    assert full.exit_code == 0, full.output
    short = invoke(*COMMON, "--certifier", "sequential", "--stop-if-wrong", "--out", "short.tsv")
    assert short.exit_code == 0, short.output
    a, b = read_results(tmp_path / "full.tsv"), read_results(tmp_path / "short.tsv")
    assert a.cut is None and b.cut is not None and (tmp_path / "short.tsv").read_text().splitlines()[0].endswith("\tn0A\tcut")
    assert np.array_equal(certified_accuracy(a, RADII), certified_accuracy(b, RADII))
    cut = b.cut == 1
    assert cut.any() and not cut.all(), b.cut  # a random tiny model gets some images wrong
    assert np.all(a.correct[cut] == 0) and np.all(b.predict[cut] == ABSTAIN) and np.all(b.samples[cut] == 30)
    keep = ~cut
    assert np.array_equal(a.predict[keep], b.predict[keep]) and np.array_equal(a.radius[keep], b.radius[keep]) and np.array_equal(a.samples[keep], b.samples[keep])
    assert b.samples.sum() < a.samples.sum()
    meta = json.loads((tmp_path / "short.tsv.meta.json").read_text())
    assert meta["stop_if_wrong"] is True and "stop_if_wrong" not in json.loads((tmp_path / "full.tsv.meta.json").read_text())
    # Part of the identity: a file made without the shortcut is not resumed with it, nor the other way round.
    before = snapshot(tmp_path)
    for out, flags in (("full.tsv", ["--stop-if-wrong"]), ("short.tsv", [])):
        again = invoke(*COMMON, "--certifier", "sequential", *flags, "--out", out)
        assert again.exit_code == 2 and "different configuration" in again.stderr and "stop_if_wrong" in again.stderr
    assert snapshot(tmp_path) == before


class _Unlabelled(ImageDataset):
    info = DatasetInfo("unlabelled", "test", 10, (), (28, 28), 1, "test")

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        return torch.full((1, 28, 28), 0.5), -1


class _UnlabelledPlugin:
    @hookimpl
    def certkit_register_datasets(self, register) -> None:
        register("unlabelled", DatasetEntry(lambda path, split: _Unlabelled(), needs_path=False, description="no labels", default_split="test"))


def test_data_without_labels_is_refused(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    host = plugins.host()
    host.register_plugin(_UnlabelledPlugin(), name="test-unlabelled")
    try:
        result = invoke(*COMMON, "--data", "unlabelled", "--stop-if-wrong", "--out", "u.tsv")
    finally:
        host.unregister_plugin("test-unlabelled")
    assert result.exit_code == 2, result.output
    assert "has no labels" in result.stderr and "Drop --stop-if-wrong" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "u.tsv").exists()
