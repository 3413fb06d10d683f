"""The composed base classifier (denoiser + classifier) through certkit's commands: it certifies
end to end, records both parts, exports to one verified ONNX graph, and refuses bad input
with one line and exit 2, writing nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel
from typer.testing import CliRunner

from certkit import plugins
from certkit.checkpoints import sha256_of, write_weights
from certkit.cli.main import build_app

from certkit_denoised.composed import DenoisedClassifier, denoised_classifier

FAST = ["--n0", "10", "--n", "100", "--max", "5", "--batch", "200", "--alpha", "0.01"]


def invoke(*args: str):
    return CliRunner().invoke(build_app(), list(args), env={"COLUMNS": "200"})


def save_diffusers(folder: Path, size: int = 28, channels: int = 1) -> Path:
    """A real (random) diffusers UNet2DModel and DDPM scheduler, as a DDPM pipeline folder."""
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=size, in_channels=channels, out_channels=channels, layers_per_block=1, block_out_channels=(8, 8),
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4,
    )
    unet.save_pretrained(folder / "unet")
    DDPMScheduler(num_train_timesteps=1000).save_pretrained(folder / "scheduler")
    return folder


@pytest.fixture
def parts(tmp_path_factory):
    """A diffusers denoiser folder and a clean vit-mini weights file (random weights)."""
    folder = tmp_path_factory.mktemp("parts")
    torch.manual_seed(1)
    classifier = plugins.get("models", "vit-mini").obj()
    write_weights(folder / "clean.safetensors", classifier, "vit-mini", classifier.input_spec)
    return save_diffusers(folder / "ddpm"), folder / "clean.safetensors"


def options(denoiser: Path, classifier: Path) -> list[str]:
    return ["-M", f"denoiser={denoiser}", "-M", f"classifier_checkpoint={classifier}"]


def test_the_composition_certifies_and_its_sidecar_names_both_parts(parts, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    denoiser, classifier = parts
    result = invoke("certify", "--model", "denoised", "--sigma", "0.5", *FAST, *options(denoiser, classifier), "--out", "r.tsv")
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "r.tsv").read_text().splitlines()[1:]
    assert len(rows) == 5
    meta = json.loads((tmp_path / "r.tsv.meta.json").read_text())
    roles = {part["role"]: part for part in meta["parts"]}
    assert roles["denoiser"]["name"] == "diffusers:ddpm" and roles["denoiser"]["checkpoint"] == str(denoiser)
    assert roles["classifier"]["name"] == "vit-mini" and roles["classifier"]["checkpoint_sha256"] == sha256_of(classifier)
    assert len(roles["denoiser"]["checkpoint_sha256"]) == 64
    assert (roles["denoiser"]["timestep"], roles["denoiser"]["effective_sigma"]) == (258, pytest.approx(0.49976, abs=1e-5))
    assert meta["input_spec"]["sigma"] == 0.5 and meta["input_spec"]["image_size"] == [28, 28]


def test_the_composition_exports_to_one_verified_onnx_graph(parts, tmp_path, monkeypatch):
    from certkit.onnx_engine import OnnxEngine, check_onnx_file

    monkeypatch.chdir(tmp_path)
    denoiser, classifier = parts
    result = invoke("export", "--model", "denoised", "--sigma", "0.5", *options(denoiser, classifier), "-o", "d.onnx")
    assert result.exit_code == 0, result.output
    assert "verified against PyTorch" in result.output and "one file" in result.output
    assert check_onnx_file(tmp_path / "d.onnx").sigma == 0.5
    model = denoised_classifier(0.5, denoiser=str(denoiser), classifier_checkpoint=str(classifier))
    assert isinstance(model, DenoisedClassifier)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(64, 1, 28, 28, generator=generator) + 0.5 * torch.randn(64, 1, 28, 28, generator=generator)
    with torch.no_grad():
        expected = model(images)
    engine = OnnxEngine(tmp_path / "d.onnx", torch.device("cpu"))
    assert torch.equal(engine.classify(images).cpu(), expected.argmax(1))


BAD_INPUT = [
    ("not a diffusers folder", lambda d, c, t: ["--sigma", "0.5", *options(t, c)], "is not a diffusers model directory"),
    ("denoiser for other images", lambda d, c, t: ["--sigma", "0.5", *options(save_diffusers(t / "cifar", 32, 3), c)], "works on 3x32x32 images but classifier 'vit-mini' takes 1x28x28"),
    ("sigma no timestep serves", lambda d, c, t: ["--sigma", "100", *options(d, c)], "no timestep of the denoiser's schedule is within 10% of noise level sigma 100"),
    ("pretraining model as classifier", lambda d, c, t: ["--sigma", "0.5", "-M", f"denoiser={d}", "-M", "classifier=mae-vit-mini"], "model 'mae-vit-mini' is a pretraining"),
    ("a denoiser as classifier", lambda d, c, t: ["--sigma", "0.5", "-M", f"denoiser={d}", "-M", "classifier=unet-mini"], "model 'unet-mini' is a pretraining"),
    ("a denoised model as classifier", lambda d, c, t: ["--sigma", "0.5", "-M", f"denoiser={d}", "-M", "classifier=denoised"], "-M classifier=denoised would put a denoised model behind a denoiser"),
    ("a classifier file as denoiser", lambda d, c, t: ["--sigma", "0.5", *options(c, c)], "holds a 'vit-mini' model, not a denoiser"),
]


@pytest.mark.parametrize(("case", "arguments", "message"), BAD_INPUT, ids=[case for case, _, _ in BAD_INPUT])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(parts, tmp_path, monkeypatch, case, arguments, message):
    monkeypatch.chdir(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    denoiser, classifier = parts
    result = invoke("certify", "--model", "denoised", *FAST, *arguments(denoiser, classifier, empty), "--out", "out/r.tsv")
    assert result.exit_code == 2, result.output
    assert message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
