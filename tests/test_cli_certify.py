"""`certkit certify` / `predict` end to end on a tiny real model: determinism, resume, bad input."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from certkit.cli.main import build_app
from tests_support import snapshot

FAST = ["--model", "tiny-cnn", "--sigma", "0.25", "--n0", "20", "--n", "300", "--max", "6", "--batch", "100"]


def invoke(*args: str):
    return CliRunner().invoke(build_app(), list(args), env={"COLUMNS": "200"})


def rows_without_time(path: Path) -> list[list[str]]:
    lines = path.read_text().splitlines()
    header = lines[0].split("\t")
    keep = [i for i, name in enumerate(header) if name != "time"]
    return [[fields[i] for i in keep] for fields in (line.split("\t") for line in lines)]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_certify_writes_rows_metadata_and_table(tiny_model, workdir):
    result = invoke("certify", *FAST, "--out", "r.tsv")
    assert result.exit_code == 0, result.output
    assert "Certified accuracy" in result.output and "ACR" in result.output
    rows = rows_without_time(workdir / "r.tsv")
    assert rows[0] == ["idx", "label", "predict", "radius", "correct", "pA_lower", "n", "nA", "n0A"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "2", "3", "4", "5"]
    assert all(r[6] == "320" for r in rows[1:])  # n0 + n samples per image
    import json

    meta = json.loads((workdir / "r.tsv.meta.json").read_text())
    assert meta["model"] == "tiny-cnn" and meta["sigma"] == 0.25 and meta["n"] == 300 and meta["alpha"] == 0.001
    assert meta["checkpoint_sha256"] == hashlib.sha256(tiny_model.read_bytes()).hexdigest()
    assert meta["dataset"]["name"] == "fashion-mnist-mini" and meta["finished"]
    assert "torch" in meta["versions"]


def test_same_seed_same_file_at_batch_100_and_1000(tiny_model, workdir):
    args = ["--model", "tiny-cnn", "--sigma", "0.25", "--n0", "100", "--n", "1000", "--max", "8", "--seed", "7"]
    assert invoke("certify", *args, "--batch", "100", "--out", "a.tsv").exit_code == 0
    assert invoke("certify", *args, "--batch", "1000", "--out", "b.tsv").exit_code == 0
    assert invoke("certify", *args, "--batch", "1000", "--seed", "8", "--out", "c.tsv").exit_code == 0
    assert rows_without_time(workdir / "a.tsv") == rows_without_time(workdir / "b.tsv")
    assert rows_without_time(workdir / "a.tsv") != rows_without_time(workdir / "c.tsv")


def test_resume_after_partial_line_gives_the_same_rows(tiny_model, workdir):
    assert invoke("certify", *FAST, "--out", "full.tsv").exit_code == 0
    assert invoke("certify", *FAST, "--max", "3", "--out", "part.tsv").exit_code == 0
    with open("part.tsv", "a") as handle:
        handle.write("3\t2\t2\t0.1")  # a crash in the middle of writing row 3
    result = invoke("certify", *FAST, "--out", "part.tsv")
    assert result.exit_code == 0, result.output
    assert "3 of 6 images already" in result.output
    assert rows_without_time(workdir / "part.tsv") == rows_without_time(workdir / "full.tsv")


KILL_DRIVER = """
import sys
sys.path.insert(0, {tests!r})
from conftest import TinyPlugin
from certkit import plugins
from certkit.cli.main import run
plugins.host().register_plugin(TinyPlugin({checkpoint!r}), name="test-tiny")
run(sys.argv[1:])
"""


def test_killed_run_resumes_to_the_uninterrupted_result(tiny_model, workdir):
    driver = workdir / "driver.py"
    driver.write_text(KILL_DRIVER.format(tests=str(Path(__file__).parent), checkpoint=str(tiny_model)))
    args = [sys.executable, str(driver), "certify", "--model", "tiny-cnn", "--sigma", "0.25", "--n0", "50", "--n", "2000", "--max", "12", "--batch", "250", "--out"]
    subprocess.run([*args, "whole.tsv"], check=True, capture_output=True)
    process = subprocess.Popen([*args, "killed.tsv"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # kill -9 once a few rows are on disk, mid-run: wait for that state (never for a time)
    while not (os.path.exists("killed.tsv") and Path("killed.tsv").read_bytes().count(b"\n") >= 4):
        assert process.poll() is None, f"the run ended ({process.returncode}) before it could be killed"
        time.sleep(0.02)  # polling interval
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    written = len(Path("killed.tsv").read_text().splitlines()) - 1
    assert 3 <= written < 12
    subprocess.run([*args, "killed.tsv"], check=True, capture_output=True)
    assert rows_without_time(workdir / "killed.tsv") == rows_without_time(workdir / "whole.tsv")


def test_predict_writes_predictions(tiny_model, workdir):
    result = invoke("predict", "--model", "tiny-cnn", "--sigma", "0.25", "--n", "200", "--max", "5", "--out", "p.tsv")
    assert result.exit_code == 0, result.output
    assert "accuracy of the smoothed classifier" in result.output
    lines = (workdir / "p.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["idx", "label", "predict", "correct", "time", "n", "count_top", "count_second", "p_value"]
    assert len(lines) == 6


def test_certify_and_predict_print_user_paths_literally(tiny_model, workdir):
    # A results path that looks like rich markup or an emoji code is printed as typed, not parsed.
    (workdir / "a[/b]").mkdir(parents=True)  # a directory "a[" holding "b]"
    certified = invoke("certify", *FAST, "--max", "2", "--out", "a[/b]/run[bold]x:100:.tsv")
    assert certified.exit_code == 0, certified.output
    assert "results: a[/b]/run[bold]x:100:.tsv" in certified.output and "\U0001f4af" not in certified.output
    predicted = invoke("predict", "--model", "tiny-cnn", "--sigma", "0.25", "--n", "100", "--max", "2", "--out", "a[/b]/p[red].tsv")
    assert predicted.exit_code == 0, predicted.output
    assert "results: a[/b]/p[red].tsv" in predicted.output


# --- bad input: one line, exit code 2, nothing touched ----------------------------------------


def rgb_folder(root: Path) -> Path:
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(root / cls / "x.png")
    return root


def wrong_shape_checkpoint(path: Path) -> Path:
    from certkit import InputSpec
    from certkit.checkpoints import write_weights
    from conftest import TinyCNN

    spec = InputSpec(image_size=(28, 28), channels=1, mean=(0.5,), std=(0.5,), num_classes=7)
    model = TinyCNN(spec)
    state = {k: v for k, v in model.state_dict().items()}
    write_weights(path, model, "tiny-cnn", spec)
    # Force the spec back to the registered one so the mismatch is in the tensors.
    from safetensors.torch import save_file

    save_file(state, str(path), metadata={"model": "tiny-cnn"})
    return path


BAD_INPUTS = [
    # (name, extra setup -> args, expected message fragments)
    ("unknown model", lambda d: ["certify", "--model", "vit-zzz"], ["unknown model 'vit-zzz'", "Known models:", "tiny-cnn"]),
    ("pretraining model", lambda d: ["certify", "--model", "mae-vit-mini", "--n0", "20", "--n", "300", "--max", "2"], ["'mae-vit-mini' is a pretraining encoder-decoder", "certkit finetune"]),
    ("unknown certifier", lambda d: ["certify", *FAST, "--certifier", "nope"], ["unknown certifier 'nope'", "Known certifiers: cohen"]),
    ("unknown dataset", lambda d: ["certify", *FAST, "--data", "mnist-xyz"], ["unknown dataset 'mnist-xyz'", "fashion-mnist-mini"]),
    ("missing checkpoint", lambda d: ["certify", *FAST, "--checkpoint", str(d / "nope.safetensors")], ["nope.safetensors does not exist"]),
    ("missing data path", lambda d: ["certify", *FAST, "--data", "fashion-mnist", "--data-path", str(d / "no-data")], ["no-data", "does not exist"]),
    ("sigma zero", lambda d: ["certify", *FAST, "--sigma", "0"], ["--sigma", "certify.sigma: must be > 0, got 0.0"]),
    ("negative sigma", lambda d: ["certify", *FAST, "--sigma=-0.5"], ["certify.sigma: must be > 0, got -0.5"]),
    ("n0 above n", lambda d: ["certify", *FAST, "--n0", "500", "--n", "300"], ["n0 (500) is larger than n (300)"]),
    ("n too small", lambda d: ["certify", *FAST, "--n0", "5", "--n", "9"], ["n = 9 can never certify at alpha = 0.001", "--n 10 or more"]),
    ("predict n too small", lambda d: ["predict", "--model", "tiny-cnn", "--n", "10"], ["can never predict", "--n 11 or more"]),
    ("malformed yaml", lambda d: ["certify", *FAST, "--config", str(d / "bad.yaml")], ["bad.yaml:3"]),
    ("checkpoint shapes", lambda d: ["certify", *FAST, "--checkpoint", str(wrong_shape_checkpoint(d / "wrong.safetensors"))], ["does not fit the model", "shape"]),
    # RGB is converted to the model's one channel (issue 14); the size still has to fit.
    ("image size", lambda d: ["certify", *FAST, "--data", str(rgb_folder(d / "rgb"))], ["1x32x32", "expects 1x28x28"]),
]


@pytest.mark.parametrize("name,make_args,expected", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(tiny_model, workdir, name, make_args, expected):
    (workdir / "bad.yaml").write_text("certify:\n  sigma: 0.25\n n: 3\n")
    args = make_args(workdir)
    # An earlier run's results must survive whatever the bad command was.
    assert invoke("certify", *FAST, "--max", "2", "--out", "results/keep.tsv").exit_code == 0
    before = snapshot(workdir)
    result = invoke(*args, "--out", "results/keep.tsv") if args[0] == "certify" else invoke(*args)
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert message.startswith("error:") and len(message.splitlines()) == 1, message
    assert "Traceback" not in result.output + result.stderr
    for fragment in expected:
        assert fragment in " ".join(message.split()), (fragment, message)
    assert snapshot(workdir) == before


def test_different_configuration_against_existing_file_is_refused(tiny_model, workdir):
    assert invoke("certify", *FAST, "--out", "r.tsv").exit_code == 0
    before = snapshot(workdir)
    result = invoke("certify", *FAST, "--alpha", "0.01", "--out", "r.tsv")
    assert result.exit_code == 2
    assert "different configuration" in result.stderr and "alpha 0.001 vs 0.01" in result.stderr and "--overwrite" in result.stderr
    assert snapshot(workdir) == before
    assert invoke("certify", *FAST, "--alpha", "0.01", "--out", "r.tsv", "--overwrite").exit_code == 0


def test_no_arguments_certifies_the_shipped_default(workdir):
    """`certkit certify` needs nothing but the install: shipped model, shipped data, no network."""
    result = invoke("certify", "--max", "3", "--n0", "20", "--n", "200")
    assert result.exit_code == 0, result.output
    import json

    (meta_path,) = (workdir / "results").glob("*.meta.json")
    meta = json.loads(meta_path.read_text())
    assert meta["model"] == "vit-mini" and meta["sigma"] == 0.25 and meta["dataset"]["name"] == "fashion-mnist-mini"
    assert "certkit_dmae" in meta["checkpoint"]
    rows = (workdir / "results" / meta_path.name.removesuffix(".meta.json")).read_text().splitlines()
    assert len(rows) == 4


def test_default_output_stays_inside_the_output_dir(tmp_path):
    """Names from config or plugins ("timm/resnet18", a dataset called "../../x") never steer
    where a results file is written."""
    from certkit.workflows.certify import CertifyJob, default_output
    from certkit.workflows.resolve import DatasetChoice

    job = CertifyJob(model="timm/resnet18", sigma=0.25, data="x", n0=10, n=100, alpha=0.001, batch=10, seed=0, output_dir=tmp_path / "results")
    choice = DatasetChoice(name="../../evil", type="image-folder", path=None, split="../test")
    path = default_output(job, "timm/resnet18", choice, "../cohen")
    assert path.parent == tmp_path / "results"  # one file name, however many '/' and '..' were given
    assert path.name.startswith("timm_resnet18_sigma0.25_") and path.name.endswith("_cohen.tsv")
