"""ONNX export and the onnx engine: self-verification, metadata, torch/onnx agreement, bad files."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from certkit import plugins
from certkit.cli.main import build_app
from certkit.engines import TorchEngine, auto_batch_size
from certkit.errors import CertkitError, CheckpointError
from certkit.export import export_onnx
from certkit.models import LoadedModel, load_classifier
from certkit.onnx_engine import OnnxEngine, check_onnx_file, read_onnx_metadata
from conftest import TINY_SPEC, TinyCNN
from tests_support import snapshot

TINY = ["--model", "tiny-cnn", "--sigma", "0.25"]


def invoke(*args: str):
    return CliRunner().invoke(build_app(), list(args), env={"COLUMNS": "200"})


def rows(path: Path) -> list[dict[str, str]]:
    header, *lines = path.read_text().splitlines()
    names = header.split("\t")
    return [dict(zip(names, line.split("\t"))) for line in lines]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def tiny_onnx(tiny_model, tmp_path) -> Path:
    report = export_onnx(load_classifier("tiny-cnn", 0.25), tmp_path / "onnx" / "tiny.onnx")
    return report.path


# --- export ------------------------------------------------------------------------------------


def test_export_tiny_cnn_is_checked_verified_and_self_describing(tiny_model, tmp_path):
    loaded = load_classifier("tiny-cnn", 0.25)
    report = export_onnx(loaded, tmp_path / "tiny.onnx")
    assert sorted(report.max_abs_diff) == [1, 7] and max(report.max_abs_diff.values()) <= 1e-4
    assert report.external_data is None and report.size_bytes == report.path.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.onnx"]  # no sidecar, no temp files
    onnx.checker.check_model(str(report.path))
    props = {p.key: p.value for p in onnx.load(str(report.path)).metadata_props}
    assert props["certkit_model"] == "tiny-cnn" and float(props["certkit_sigma"]) == 0.25
    assert props["certkit_checkpoint_sha256"] == hashlib.sha256(tiny_model.read_bytes()).hexdigest()
    info = check_onnx_file(report.path)
    assert info == read_onnx_metadata(report.path)
    assert (info.name, info.spec, info.sigma, info.checkpoint_name) == ("tiny-cnn", TINY_SPEC, 0.25, tiny_model.name)
    # A dynamic batch axis: any batch size runs and matches PyTorch's classes.
    engine = OnnxEngine(report.path, torch.device("cpu"))
    for size in (3, 64):
        images = torch.rand(size, 1, 28, 28) + 0.25 * torch.randn(size, 1, 28, 28)
        assert torch.equal(engine.classify(images), loaded.model(images).argmax(1))


def test_cpu_threads_share_slices_of_a_batch_with_the_classes_of_one_run(tiny_model, tmp_path):
    report = export_onnx(load_classifier("tiny-cnn", 0.25), tmp_path / "tiny.onnx")
    images = torch.rand(64, 1, 28, 28) + 0.5 * torch.randn(64, 1, 28, 28)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = OnnxEngine(report.path, torch.device("cpu"))
        torch.set_num_threads(3)
        sliced = OnnxEngine(report.path, torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
    assert (single.describe()["cpu_threads"], sliced.describe()["cpu_threads"]) == (1, 3)
    sizes = []
    run_slice = sliced._logits
    sliced._logits = lambda array: sizes.append(len(array)) or run_slice(array)
    assert torch.equal(sliced.classify(images), single.classify(images))
    assert sorted(sizes) == [10, 10, 11, 11, 11, 11]  # two slices per thread, consecutive rows
    sizes.clear()
    assert torch.equal(sliced.classify(images[:11]), single.classify(images[:11])) and sizes == [11]  # too few rows to cut


def test_export_of_the_shipped_default_model_round_trips_its_metadata(tmp_path):
    loaded = load_classifier("vit-mini", 0.25)
    report = export_onnx(loaded, tmp_path / "vit-mini.onnx")
    assert max(report.max_abs_diff.values()) <= 1e-4, report.max_abs_diff
    info = check_onnx_file(report.path)
    assert info.name == "vit-mini" and info.sigma == 0.25 and info.spec == loaded.spec
    assert info.class_names[0] == "T-shirt/top" and len(info.class_names) == 10
    assert info.checkpoint_sha256 == loaded.checkpoint_sha256


def test_export_that_does_not_match_pytorch_fails_loudly_and_leaves_no_file(tiny_model, tmp_path, monkeypatch):
    import certkit.export as export_module

    trace = export_module._trace

    def perturbed_trace(model, spec, out, opset):  # the graph written differs from the model verified
        twin = copy.deepcopy(model)
        with torch.no_grad():
            twin.net[-1].bias += 0.01
        trace(twin, spec, out, opset)

    monkeypatch.setattr(export_module, "_trace", perturbed_trace)
    with pytest.raises(CertkitError, match=r"does not match PyTorch: max \|logit difference\| 0\.01 .*tolerance 0\.0001"):
        export_onnx(load_classifier("tiny-cnn", 0.25), tmp_path / "out" / "tiny.onnx")
    assert list((tmp_path / "out").iterdir()) == []


def test_models_over_the_single_file_limit_get_one_external_data_file(tiny_model, tmp_path, monkeypatch):
    import certkit.export as export_module

    monkeypatch.setattr(export_module, "SINGLE_FILE_LIMIT", 0)
    report = export_onnx(load_classifier("tiny-cnn", 0.25), tmp_path / "tiny.onnx")
    assert report.external_data == tmp_path / "tiny.onnx.data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.onnx", "tiny.onnx.data"]
    assert report.size_bytes == sum(p.stat().st_size for p in tmp_path.iterdir())
    assert check_onnx_file(report.path).name == "tiny-cnn"
    assert OnnxEngine(report.path, torch.device("cpu")).classify(torch.rand(2, 1, 28, 28)).shape == (2,)


def test_export_command_prints_the_report(tiny_model, workdir):
    result = invoke("export", *TINY, "-o", "m.onnx")
    assert result.exit_code == 0, result.output
    assert "exported tiny-cnn (sigma 0.25" in result.output and "one file" in result.output
    assert "verified against PyTorch with onnxruntime CPUExecutionProvider" in result.output
    assert "batch 1:" in result.output and "batch 7:" in result.output
    assert check_onnx_file(workdir / "m.onnx").sigma == 0.25


@pytest.mark.slow
def test_export_vit_b_with_random_weights_verifies(tmp_path):
    """The acceptance check for a paper-sized model (87M parameters, ~350 MB, one file)."""
    torch.manual_seed(0)
    model = plugins.get("models", "vit-b").obj()
    loaded = LoadedModel("vit-b", model, model.input_spec, Path("random-init"), "0" * 64)
    report = export_onnx(loaded, tmp_path / "vit-b.onnx", sigma=0.5)
    assert report.external_data is None and report.size_bytes > 300e6
    assert max(report.max_abs_diff.values()) <= 1e-4, report.max_abs_diff
    assert check_onnx_file(report.path).spec.image_size == (224, 224)


# --- engines -----------------------------------------------------------------------------------


def test_onnx_engine_falls_back_to_the_cpu_quietly_without_cuda(tiny_onnx, capfd):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the CUDA provider may load")
    capfd.readouterr()
    engine = OnnxEngine(tiny_onnx, torch.device("cuda"))
    assert engine.device == torch.device("cpu") and engine.provider == "CPUExecutionProvider" and not engine.io_binding
    assert "did not load" in engine.note
    assert engine.classify(torch.rand(4, 1, 28, 28)).device.type == "cpu"
    captured = capfd.readouterr()
    assert "onnxruntime" not in captured.err and "CUDA" not in captured.err, captured.err


def test_torch_engine_options_keep_predictions_and_describe_themselves(tiny_model):
    model = load_classifier("tiny-cnn", 0.25).model
    images = torch.rand(256, 1, 28, 28) + 0.25 * torch.randn(256, 1, 28, 28)
    plain = TorchEngine(model, torch.device("cpu"))
    expected = plain.classify(images)
    assert torch.equal(TorchEngine(copy.deepcopy(model), torch.device("cpu"), channels_last=True).classify(images), expected)
    bf16 = TorchEngine(copy.deepcopy(model), torch.device("cpu"), precision="bf16")
    assert (bf16.classify(images) == expected).float().mean() > 0.9  # bf16 may flip a few: why fp32 is the default
    assert bf16.describe() == {"name": "torch", "device": "cpu", "precision": "bf16", "channels_last": False, "compile": False}
    assert auto_batch_size(plain, (1, 28, 28), 321) == 321  # nothing to probe on a CPU
    with pytest.raises(CertkitError, match="unknown precision 'fp8'"):
        TorchEngine(model, torch.device("cpu"), precision="fp8")


# --- same statistics whichever engine ----------------------------------------------------------

COLUMNS = ("idx", "label", "predict", "correct", "n", "nA", "n0A")


def assert_same_statistics(a: Path, b: Path) -> None:
    """Predictions equal; counts equal except for rare float flips (at most 2 samples an image),
    and then radii close. On the project's machines they have been exactly equal."""
    rows_a, rows_b = rows(a), rows(b)
    assert [r["idx"] for r in rows_a] == [r["idx"] for r in rows_b]
    for ra, rb in zip(rows_a, rows_b):
        assert (ra["label"], ra["predict"], ra["correct"], ra["n"]) == (rb["label"], rb["predict"], rb["correct"], rb["n"])
        flips = abs(int(ra["nA"]) - int(rb["nA"])) + abs(int(ra["n0A"]) - int(rb["n0A"]))
        assert flips <= 2, (ra, rb)
        assert abs(float(ra["radius"]) - float(rb["radius"])) <= (1e-9 if flips == 0 else 0.02), (ra, rb)


@pytest.mark.parametrize("model", ["tiny-cnn", "vit-mini"])
def test_torch_onnx_and_auto_engines_give_the_same_results_file(tiny_model, workdir, model):
    common = ["--model", model, "--sigma", "0.25", "--max", "5", "--n0", "100", "--n", "500", "--seed", "3"]
    assert invoke("export", "--model", model, "--sigma", "0.25", "-o", "m.onnx").exit_code == 0
    result = invoke("certify", *common, "--engine", "torch", "--out", "torch.tsv")
    assert result.exit_code == 0, result.output
    result = invoke("certify", "--onnx", "m.onnx", "--max", "5", "--n0", "100", "--n", "500", "--seed", "3", "--out", "onnx.tsv")
    assert result.exit_code == 0, result.output
    assert "engine: onnx on cpu (CPUExecutionProvider)" in result.output
    result = invoke("certify", *common, "--out", "auto.tsv")  # no --engine: auto, the default
    assert result.exit_code == 0, result.output
    assert "engine auto: onnx, exported" in " ".join(result.output.split())
    assert_same_statistics(workdir / "torch.tsv", workdir / "onnx.tsv")
    assert_same_statistics(workdir / "torch.tsv", workdir / "auto.tsv")
    meta_torch = json.loads((workdir / "torch.tsv.meta.json").read_text())
    meta_onnx = json.loads((workdir / "onnx.tsv.meta.json").read_text())
    meta_auto = json.loads((workdir / "auto.tsv.meta.json").read_text())
    assert meta_onnx["engine"] == "onnx" and meta_onnx["engine_details"]["provider"] == "CPUExecutionProvider"
    assert meta_onnx["engine_details"]["onnx_sha256"] == hashlib.sha256((workdir / "m.onnx").read_bytes()).hexdigest()
    assert meta_torch["engine"] == "torch" and meta_torch["engine_details"]["precision"] == "fp32"
    assert meta_auto["engine"] == "onnx" and meta_auto["engine_details"]["requested"] == "auto"  # the engine that ran
    for key in ("model", "checkpoint_sha256", "sigma", "input_spec", "n0", "n", "alpha", "seed", "dataset"):
        assert meta_onnx[key] == meta_torch[key] == meta_auto[key], key


def test_engine_onnx_by_model_name_exports_on_the_fly(tiny_model, workdir):
    common = [*TINY, "--max", "4", "--n0", "50", "--n", "300"]
    assert invoke("certify", *common, "--out", "torch.tsv").exit_code == 0
    result = invoke("certify", *common, "--engine", "onnx", "--out", "onnx.tsv")
    assert result.exit_code == 0, result.output
    assert "exported tiny-cnn to a temporary ONNX file" in result.output
    assert_same_statistics(workdir / "torch.tsv", workdir / "onnx.tsv")
    details = json.loads((workdir / "onnx.tsv.meta.json").read_text())["engine_details"]
    assert details["onnx_file"] is None and details["export_max_abs_diff"] <= 1e-4


def test_predict_runs_an_onnx_file_with_the_same_predictions(tiny_model, tiny_onnx, workdir):
    assert invoke("predict", *TINY, "--n", "200", "--max", "4", "--out", "torch.tsv").exit_code == 0
    result = invoke("predict", "--onnx", str(tiny_onnx), "--n", "200", "--max", "4", "--out", "onnx.tsv")
    assert result.exit_code == 0, result.output
    keep = ("idx", "label", "predict", "correct", "n", "count_top", "count_second")
    assert [[r[k] for k in keep] for r in rows(workdir / "torch.tsv")] == [[r[k] for k in keep] for r in rows(workdir / "onnx.tsv")]


# --- bad ONNX files and flags: one line, exit 2, nothing touched ------------------------------


def truncated(d: Path, good: Path) -> Path:
    data = good.read_bytes()
    (d / "cut.onnx").write_bytes(data[: len(data) // 2])
    return d / "cut.onnx"


def not_onnx(d: Path, good: Path) -> Path:
    (d / "notes.onnx").write_text("these are not the weights you are looking for\n" * 20)
    return d / "notes.onnx"


def without_metadata(d: Path, good: Path) -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(TinyCNN().eval(), (torch.rand(2, 1, 28, 28),), str(d / "plain.onnx"), dynamo=False, input_names=["images"], dynamic_axes={"images": {0: "batch"}})
    return d / "plain.onnx"


def fixed_batch(d: Path, good: Path) -> Path:
    model = onnx.load(str(good))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 5
    onnx.save(model, str(d / "fixed.onnx"))
    return d / "fixed.onnx"


BAD_FILES = [
    ("missing", lambda d, good: d / "nope.onnx", ["ONNX file", "nope.onnx does not exist", "Check the path, or export one"]),
    ("truncated", truncated, ["cut.onnx is not a valid ONNX model", "Re-export it with"]),
    ("not onnx", not_onnx, ["notes.onnx is not a valid ONNX model"]),
    ("no certkit metadata", without_metadata, ["plain.onnx has no certkit metadata", "certkit_model", "certkit export"]),
    ("fixed batch", fixed_batch, ["fixed.onnx has a fixed batch size of 5", "dynamic batch axis"]),
]


@pytest.mark.parametrize("name,make,expected", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_onnx_file_is_one_line_exit_2_and_touches_nothing(tiny_onnx, workdir, name, make, expected):
    bad = make(workdir, tiny_onnx)
    before = snapshot(workdir)
    for command in ("certify", "predict"):
        result = invoke(command, "--onnx", str(bad), "--max", "2", "--n", "200")
        assert result.exit_code == 2, result.output
        message = result.stderr.strip()
        assert message.startswith("error:") and len(message.splitlines()) == 1, message
        for fragment in expected:
            assert fragment in " ".join(message.split()), (fragment, message)
    assert snapshot(workdir) == before
    with pytest.raises(CheckpointError):
        check_onnx_file(bad)


BAD_FLAGS = [
    ("engine torch with onnx file", ["--engine", "torch"], ["--onnx runs the onnx engine, but --engine torch", "Drop --engine"]),
    ("checkpoint with onnx file", ["--checkpoint", "x.safetensors"], ["--checkpoint does not apply with --onnx"]),
    ("other model", ["--model", "vit-mini"], ["holds model 'tiny-cnn', not 'vit-mini'", "--model tiny-cnn"]),
    ("precision with onnx", ["--precision", "fp16"], ["--precision: torch engine options", "fp32 graph"]),
    ("unknown engine", ["--engine", "tensorrt"], ["unknown engine 'tensorrt'", "Known engines: auto, torch, onnx"]),
]


@pytest.mark.parametrize("name,extra,expected", BAD_FLAGS, ids=[b[0] for b in BAD_FLAGS])
def test_conflicting_engine_flags_are_refused(tiny_onnx, workdir, name, extra, expected):
    result = invoke("certify", "--onnx", str(tiny_onnx), "--max", "2", "--n", "200", *extra)
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    for fragment in expected:
        assert fragment in message, (fragment, message)
    assert not (workdir / "results").exists()


def test_unknown_precision_is_refused(tiny_model, workdir):
    result = invoke("certify", *TINY, "--precision", "fp8", "--max", "1")
    assert result.exit_code == 2 and "unknown precision 'fp8'" in result.stderr


def test_onnx_file_sigma_is_the_default_and_a_different_one_is_flagged(tiny_onnx, workdir):
    result = invoke("certify", "--onnx", str(tiny_onnx), "--sigma", "0.5", "--max", "2", "--n0", "20", "--n", "200", "--out", "r.tsv")
    assert result.exit_code == 0, result.output
    assert "trained for gaussian noise at sigma 0.25; certifying with gaussian noise at sigma 0.5" in " ".join(result.output.split())
    assert json.loads((workdir / "r.tsv.meta.json").read_text())["sigma"] == 0.5
    np.testing.assert_equal(len(rows(workdir / "r.tsv")), 2)
