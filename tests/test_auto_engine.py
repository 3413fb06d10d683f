"""``--engine auto`` (the default): ONNX Runtime on a CPU from a cached, verified export; torch on
CUDA, with torch engine options, or when the model does not export; the default CPU batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from certkit import hookimpl, plugins
from certkit.auto_engine import CACHE_FOLDER, cache_path, choose_engine
from certkit.checkpoints import write_weights
from certkit.cli.main import build_app
from certkit.engines import DEFAULT_CPU_BATCH
from certkit.models import load_classifier
from conftest import TINY_SPEC, TinyCNN

TINY = ["--model", "tiny-cnn", "--sigma", "0.25", "--max", "4", "--n0", "50", "--n", "400", "--seed", "5"]


def invoke(*args: str):
    return CliRunner().invoke(build_app(), list(args), env={"COLUMNS": "200"})


def meta(path: Path) -> dict:
    return json.loads(Path(f"{path}.meta.json").read_text())


def rows_without_time(path: Path) -> list[list[str]]:
    lines = [line.split("\t") for line in path.read_text().splitlines()]
    keep = [i for i, name in enumerate(lines[0]) if name != "time"]
    return [[fields[i] for i in keep] for fields in lines]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def cached_files(folder: Path) -> list[str]:
    return sorted(p.name for p in (folder / CACHE_FOLDER).iterdir())


def test_auto_is_the_default_and_runs_a_cached_onnx_export_on_the_cpu(tiny_model, workdir):
    first = invoke("certify", *TINY, "--out", "out/a.tsv")
    assert first.exit_code == 0, first.output
    text = " ".join(first.output.split())
    assert "engine auto: onnx, exported out/.onnx-cache/tiny-cnn-" in text and "(verified: max |logit difference|" in text
    assert f"engine: onnx on cpu (CPUExecutionProvider), batch {DEFAULT_CPU_BATCH}" in text
    loaded = load_classifier("tiny-cnn", 0.25)
    cached = cache_path(workdir / "out" / CACHE_FOLDER, loaded, 0.25)
    assert cached_files(workdir / "out") == [cached.name]  # beside the results, nothing else left there
    recorded = meta(workdir / "out" / "a.tsv")
    assert recorded["engine"] == "onnx" and recorded["batch"] == DEFAULT_CPU_BATCH
    details = recorded["engine_details"]
    assert details["requested"] == "auto" and details["export_reused"] is False and details["onnx_file"] == str(Path("out") / CACHE_FOLDER / cached.name)
    assert details["export_max_abs_diff"] <= 1e-4
    stamp = cached.stat().st_mtime_ns

    second = invoke("certify", *TINY, "--out", "out/b.tsv")  # another run: the export is reused, not redone
    assert second.exit_code == 0, second.output
    assert "engine auto: onnx, reused out/.onnx-cache/tiny-cnn-" in " ".join(second.output.split())
    assert cached.stat().st_mtime_ns == stamp and meta(workdir / "out" / "b.tsv")["engine_details"]["export_reused"] is True
    assert rows_without_time(workdir / "out" / "a.tsv") == rows_without_time(workdir / "out" / "b.tsv")


def test_a_damaged_or_foreign_cached_file_is_exported_anew(tiny_model, workdir):
    loaded = load_classifier("tiny-cnn", 0.25)
    cached = cache_path(workdir / "results" / CACHE_FOLDER, loaded, 0.25)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not an onnx file")
    result = invoke("certify", *TINY)
    assert result.exit_code == 0, result.output
    assert "engine auto: onnx, exported" in " ".join(result.output.split())
    assert cached.stat().st_size > 1000

    # A file of other weights under this name (say, copied by hand) fails the metadata check.
    other = tiny_model.parent / "other.safetensors"
    torch.manual_seed(1)
    write_weights(other, TinyCNN(), "tiny-cnn", TINY_SPEC)
    from certkit.export import export_onnx

    export_onnx(load_classifier("tiny-cnn", 0.25, other), cached)
    result = invoke("certify", *TINY, "--out", "results/again.tsv")  # beside the same cache
    assert result.exit_code == 0, result.output
    assert "engine auto: onnx, exported" in " ".join(result.output.split())
    from certkit.onnx_engine import read_onnx_metadata

    assert read_onnx_metadata(cached).checkpoint_sha256 == loaded.checkpoint_sha256


def test_new_weights_or_sigma_get_their_own_cached_file(tiny_model):
    loaded = load_classifier("tiny-cnn", 0.25)
    folder = Path("cache")
    assert cache_path(folder, loaded, 0.25) == cache_path(folder, load_classifier("tiny-cnn", 0.25), 0.25)
    assert cache_path(folder, loaded, 0.25) != cache_path(folder, loaded, 0.5)
    other = tiny_model.parent / "other.safetensors"
    torch.manual_seed(1)
    write_weights(other, TinyCNN(), "tiny-cnn", TINY_SPEC)
    assert cache_path(folder, loaded, 0.25) != cache_path(folder, load_classifier("tiny-cnn", 0.25, other), 0.25)


class SpectralCNN(TinyCNN):
    """A real model with an operator the TorchScript exporter lacks at opset 17 (rfft2)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        energy = torch.fft.rfft2(images).abs().mean(dim=(1, 2, 3))
        return super().forward(images) + 0.01 * energy[:, None]


class SpectralPlugin:
    def __init__(self, checkpoint: Path) -> None:
        self.checkpoint = checkpoint

    @hookimpl
    def certkit_register_models(self, register) -> None:
        register("spectral-cnn", lambda spec=None: SpectralCNN(spec or TINY_SPEC), description="does not export", checkpoints={0.25: self.checkpoint})


@pytest.fixture
def spectral_model(tmp_path_factory):
    checkpoint = tmp_path_factory.mktemp("spectral") / "spectral.safetensors"
    torch.manual_seed(0)
    write_weights(checkpoint, SpectralCNN(), "spectral-cnn", TINY_SPEC)
    host = plugins.host()
    host.register_plugin(SpectralPlugin(checkpoint), name="test-spectral")
    try:
        yield checkpoint
    finally:
        host.unregister_plugin("test-spectral")


def test_a_model_that_does_not_export_falls_back_to_torch_with_one_line(spectral_model, workdir, capfd):
    args = ["--model", "spectral-cnn", "--sigma", "0.25", "--max", "3", "--n0", "20", "--n", "200", "--seed", "2"]
    result = invoke("certify", *args, "--out", "auto.tsv")
    assert result.exit_code == 0, result.output
    captured = capfd.readouterr()
    assert "graph" not in captured.out + captured.err, "the exporter's C++ graph dump reached the terminal"
    lines = [line for line in result.output.splitlines() if "does not export" in line]
    assert len(lines) == 1 and "engine auto: spectral-cnn does not export to ONNX (UnsupportedOperatorError: Exporting the operator 'aten::fft_rfft2'" in lines[0]
    assert "certifying with the torch engine" in lines[0]
    recorded = meta(workdir / "auto.tsv")
    assert recorded["engine"] == "torch" and "fft_rfft2" in recorded["engine_details"]["onnx_refused"]
    assert not (workdir / CACHE_FOLDER).exists()  # nothing to keep, no half export left behind
    assert invoke("certify", *args, "--engine", "torch", "--out", "torch.tsv").exit_code == 0
    assert rows_without_time(workdir / "auto.tsv") == rows_without_time(workdir / "torch.tsv")


def test_torch_engine_options_and_cuda_make_auto_choose_torch(tiny_model, workdir):
    result = invoke("certify", *TINY, "--channels-last", "--out", "cl.tsv")
    assert result.exit_code == 0, result.output
    assert "engine auto: torch (--channels-last asked for)" in result.output
    assert meta(workdir / "cl.tsv")["engine"] == "torch" and not (workdir / CACHE_FOLDER).exists()
    # Off the CPU (CUDA; here the meta device, which needs no GPU) auto runs torch and exports nothing.
    choice = choose_engine(load_classifier("tiny-cnn", 0.25), torch.device("meta"), workdir / "never", 0.25)
    assert choice.engine.name == "torch" and choice.details["requested"] == "auto" and choice.note == "engine auto: torch (on meta)"
    assert not (workdir / "never").exists()


def test_a_torch_results_file_resumes_under_auto_and_the_other_way(tiny_model, workdir):
    """``engine`` is not part of a results file's identity: the engines give the same rows."""
    assert invoke("certify", *TINY, "--engine", "torch", "--out", "whole.tsv").exit_code == 0
    assert invoke("certify", *TINY, "--engine", "torch", "--max", "2", "--out", "mixed.tsv").exit_code == 0
    result = invoke("certify", *TINY, "--out", "mixed.tsv")
    assert result.exit_code == 0, result.output
    assert "2 of 4 images already" in result.output
    assert rows_without_time(workdir / "mixed.tsv") == rows_without_time(workdir / "whole.tsv")


def test_default_batch_on_the_cpu_gives_the_rows_of_any_other_batch(tiny_model, workdir):
    assert invoke("certify", *TINY, "--out", "default.tsv").exit_code == 0
    assert invoke("certify", *TINY, "--batch", "1000", "--out", "big.tsv").exit_code == 0
    assert invoke("certify", *TINY, "--batch", "37", "--engine", "torch", "--out", "odd.tsv").exit_code == 0
    assert meta(workdir / "default.tsv")["batch"] == DEFAULT_CPU_BATCH and meta(workdir / "big.tsv")["batch"] == 1000
    assert rows_without_time(workdir / "default.tsv") == rows_without_time(workdir / "big.tsv") == rows_without_time(workdir / "odd.tsv")
