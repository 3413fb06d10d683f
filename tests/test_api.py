"""The Python API: certify tensors in memory with the numbers `certkit certify` writes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import certkit
from certkit.api import SmoothedClassifier, load_images
from certkit.cli.main import build_app
from conftest import TINY_SPEC, TinyCNN

ARGS = ["--model", "tiny-cnn", "--sigma", "0.25", "--n0", "20", "--n", "400", "--max", "4", "--batch", "150", "--seed", "3"]


def cli_rows(path: Path) -> list[dict[str, str]]:
    header, *lines = path.read_text().splitlines()
    names = header.split("\t")
    return [dict(zip(names, line.split("\t"))) for line in lines]


@pytest.mark.parametrize("certifier", ["cohen", "sequential"])
def test_api_certificates_equal_the_cli_rows(tiny_model, tmp_path, monkeypatch, certifier):
    monkeypatch.chdir(tmp_path)
    extra = ["--certifier", certifier] + (["-O", "first=100", "--radii", "0,0.25,0.5"] if certifier == "sequential" else [])
    result = CliRunner().invoke(build_app(), ["certify", *ARGS, *extra, "--out", "r.tsv"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = cli_rows(tmp_path / "r.tsv")

    smoothed = SmoothedClassifier.from_registry("tiny-cnn", sigma=0.25, seed=3, batch=150)
    images, labels = load_images("fashion-mnist-mini", indices=range(4))
    options = {"certifier_options": {"first": 100}, "radii": [0, 0.25, 0.5]} if certifier == "sequential" else {}
    certificates = smoothed.certify(images, n0=20, n=400, alpha=0.001, certifier=certifier, index=range(4), **options)

    assert len(certificates) == len(rows) == 4
    for row, cert, label in zip(rows, certificates, labels.tolist()):
        assert int(row["label"]) == label
        assert int(row["predict"]) == cert.prediction
        assert int(row["nA"]) == cert.count and int(row["n0A"]) == cert.selection_count and int(row["n"]) == cert.samples
        assert math.isclose(float(row["radius"]), cert.radius, rel_tol=1e-8, abs_tol=1e-12)
        assert math.isclose(float(row["pA_lower"]), cert.p_lower, rel_tol=1e-8)
        assert cert.norm == "l2"


def test_one_image_gives_one_certificate_and_index_picks_its_noise(tiny_model):
    smoothed = SmoothedClassifier.from_registry("tiny-cnn", sigma=0.25)
    images, _ = load_images(indices=[5, 6])
    batch = smoothed.certify(images, n0=20, n=300, index=[5, 6])
    alone = smoothed.certify(images[1], n0=20, n=300, index=6)
    assert isinstance(alone, certkit.Certificate) and alone == batch[1]
    other = smoothed.certify(images[1], n0=20, n=300, index=7)  # other noise streams
    assert other.count != alone.count or other.selection_count != alone.selection_count or other.p_lower != alone.p_lower


def test_any_module_with_a_given_spec_and_the_uniform_smoother():
    torch.manual_seed(0)
    plain = TinyCNN().net  # a bare nn.Sequential: no input_spec, expects normalized inputs
    smoothed = SmoothedClassifier(plain, sigma=0.25, smoother="uniform", spec=TINY_SPEC, normalize=True)
    images, _ = load_images(indices=range(2))
    certificates = smoothed.certify(images, n0=20, n=200)
    assert [c.norm for c in certificates] == ["l1", "l1"]
    for c in certificates:
        if c.prediction != certkit.ABSTAIN:  # L1 radius of uniform noise: 2 lam (p - 1/2), lam = sqrt(3) sigma
            assert math.isclose(c.radius, 2 * math.sqrt(3) * 0.25 * (c.p_lower - 0.5), rel_tol=1e-12)
    prediction = smoothed.predict(images[0], n=200, alpha=0.01)
    assert isinstance(prediction, certkit.Prediction) and prediction.samples == 200


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (torch.rand(2, 3, 28, 28), "do not fit the model, which expects [1, 28, 28]"),
        (torch.rand(28, 28), "must have 3 or 4 dimensions"),
        ((torch.rand(1, 1, 28, 28) * 255).to(torch.uint8), "floating point in [0, 1], got dtype torch.uint8"),
        (torch.rand(1, 1, 28, 28) * 2 - 1, "not in [0, 1]"),
        ([[0.5]], "must be a torch.Tensor"),
    ],
)
def test_wrong_inputs_are_one_certkit_error(images, message):
    smoothed = SmoothedClassifier(TinyCNN(), sigma=0.25)
    with pytest.raises(certkit.CertkitError) as error:
        smoothed.certify(images, n0=20, n=200)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_module_without_spec_and_bad_options_are_refused():
    with pytest.raises(certkit.CertkitError, match="has no input spec"):
        SmoothedClassifier(nn.Linear(4, 2), sigma=0.25)
    with pytest.raises(certkit.CertkitError, match="unknown option 'scale' of smoother 'gaussian'"):
        SmoothedClassifier(TinyCNN(), sigma=0.25, smoother_options={"scale": 2})
    with pytest.raises(certkit.CertkitError, match="unknown smoother 'laplace'"):
        SmoothedClassifier(TinyCNN(), sigma=0.25, smoother="laplace")


def test_load_classifier_is_public_and_documented_type(tiny_model):
    loaded = certkit.load_classifier("tiny-cnn", sigma=0.25)
    assert isinstance(loaded, certkit.LoadedClassifier)
    assert loaded.checkpoint == tiny_model and loaded.spec == loaded.model.input_spec and not loaded.model.training
