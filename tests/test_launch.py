"""`certify --nproc-per-node K` launches K ranks through torch's launcher (torch.distributed.run)
itself: no torchrun command and no `--` rule (`torchrun ... -m certkit certify --max 6` is
refused by torchrun's parser as an ambiguous option)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from certkit.cli.launch import without_flag
from certkit.cli.main import build_app

# The shipped default model and data: the launched processes need no test plugin.
ARGS = ["certify", "--max", "6", "--n0", "20", "--n", "300", "--batch", "100", "--device", "cpu", "--sigma", "0.5"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


def rows(path) -> list[list[str]]:
    lines = [line.split("\t") for line in path.read_text().splitlines()]
    keep = [i for i, name in enumerate(lines[0]) if name != "time"]
    return [[fields[i] for i in keep] for fields in lines]


def test_two_processes_on_the_cpu_give_the_one_process_file(tmp_path):
    one = subprocess.run([sys.executable, "-m", "certkit", *ARGS, "--out", "one.tsv"], cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "certkit", *ARGS, "--nproc-per-node", "2", "--out", "two.tsv"], cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-3000:]
    assert rows(tmp_path / "two.tsv") == rows(tmp_path / "one.tsv")
    assert [r[0] for r in rows(tmp_path / "two.tsv")[1:]] == [str(i) for i in range(6)]
    meta = json.loads((tmp_path / "two.tsv.meta.json").read_text())
    assert meta["world_size"] == 2 and meta["finished"]
    assert two.stdout.count("Certified accuracy") == 1  # rank 0 prints the table; the launcher prints nothing of its own
    # Nothing else is left behind but the auto engine's verified ONNX export, shared by both runs.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".onnx-cache", "one.tsv", "one.tsv.meta.json", "two.tsv", "two.tsv.meta.json"]
    assert len(list((tmp_path / ".onnx-cache").glob("*.onnx"))) == 1


def test_a_rank_error_is_one_line_and_the_launcher_exits_with_its_code(tmp_path):
    failed = subprocess.run([sys.executable, "-m", "certkit", *ARGS, "--n", "5", "--nproc-per-node", "2"], cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert failed.returncode == 2
    assert "error: n0 (20) is larger than n (5)" in failed.stderr
    assert "Traceback" not in failed.stderr and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["certify", "predict"])
def test_bad_or_nested_nproc_per_node_is_refused(command, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(build_app(), [command, "--nproc-per-node", "0"])
    assert result.exit_code == 2 and "--nproc-per-node must be >= 1, got 0." in result.output
    monkeypatch.setenv("LOCAL_RANK", "0")  # as in a process torchrun started
    result = CliRunner().invoke(build_app(), [command, "--nproc-per-node", "2"])
    assert result.exit_code == 2 and "torchrun already started" in result.output
    assert list(tmp_path.iterdir()) == []


def test_the_flag_is_removed_in_both_spellings():
    assert without_flag(["certify", "--nproc-per-node", "2", "--max", "6"]) == ["certify", "--max", "6"]
    assert without_flag(["certify", "--nproc-per-node=2", "--max", "6"]) == ["certify", "--max", "6"]


def test_predict_on_two_processes_gives_the_one_process_file(tmp_path):
    args = ["predict", "--max", "6", "--n", "200", "--batch", "100", "--device", "cpu", "--sigma", "0.5"]
    one = subprocess.run([sys.executable, "-m", "certkit", *args, "--out", "one.tsv"], cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "certkit", *args, "--nproc-per-node", "2", "--out", "two.tsv"], cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-3000:]
    assert rows(tmp_path / "two.tsv") == rows(tmp_path / "one.tsv") and len(rows(tmp_path / "one.tsv")) == 7  # header + 6
    assert two.stdout.count("accuracy of the smoothed classifier") == 1
    assert json.loads((tmp_path / "two.tsv.meta.json").read_text())["world_size"] == 2


def test_pretraining_on_two_processes(tmp_path):
    args = ["pretrain", "dmae", "--max", "64", "--batch", "16", "--epochs", "1", "--warmup-epochs", "0", "--device", "cpu", "--out-dir", "run"]
    ddp = subprocess.run([sys.executable, "-m", "certkit", *args, "--nproc-per-node", "2"], cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    run = json.loads((tmp_path / "run/run.json").read_text())
    assert run["world_size"] == 2 and run["effective_batch"] == 32
    assert (tmp_path / "run/weights.safetensors").exists()


@pytest.mark.slow
def test_ctrl_c_on_the_launcher_is_one_line_from_rank_0(tmp_path):
    """Ctrl-C reaches the launcher (the ranks run in their own sessions); it passes SIGINT on, and
    rank 0 alone prints what is saved (rows of both ranks' part files) and the command as typed."""
    import re
    import signal
    import time

    args = [sys.executable, "-m", "certkit", *ARGS[:2], "40", *ARGS[3:], "--n", "4000", "--out", "d.tsv", "--nproc-per-node", "2"]
    launcher = subprocess.Popen(args, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    part = tmp_path / "d.tsv.rank0"
    while not (part.exists() and part.read_bytes().count(b"\n") >= 2):  # a row of rank 0 on disk
        assert launcher.poll() is None, launcher.communicate()
        time.sleep(0.05)  # polling interval
    launcher.send_signal(signal.SIGINT)
    _, err = launcher.communicate()
    assert launcher.returncode == 130, err
    line = err.strip()
    found = re.fullmatch(r"interrupted: (\d+) images? (?:is|are) saved in d\.tsv; resume with: (.+)", line)
    assert found, err
    assert int(found[1]) >= 1 and found[2].endswith("--out d.tsv --nproc-per-node 2")
