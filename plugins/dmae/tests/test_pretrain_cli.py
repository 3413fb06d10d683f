"""`certkit pretrain dmae` for real: checkpoints, preview, kill -9 and resume, torchrun DDP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

QUICK = ["pretrain", "dmae", "--max", "256", "--batch", "64", "--blr", "1.5e-3", "--warmup-epochs", "1", "--save-every", "2", "--seed", "3"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def certkit(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "certkit", *args], cwd=cwd, env=ENV, capture_output=True, text=True)


def losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "log.jsonl").read_text().splitlines()]


def test_pretrain_checkpoints_previews_and_survives_kill(tmp_path):
    whole = certkit(*QUICK, "--epochs", "4", "--out-dir", "whole", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    names = sorted(p.name for p in (tmp_path / "whole").iterdir())
    assert names == ["checkpoint-0002.pth", "checkpoint-0004.pth", "checkpoint-last.pth", "log.jsonl", "preview-0002.png", "preview-0004.png", "run.json", "weights.safetensors"]
    assert (tmp_path / "whole/preview-0004.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curve = losses(tmp_path / "whole")
    assert curve[-1] < curve[0]  # it learns

    process = subprocess.Popen([sys.executable, "-m", "certkit", *QUICK, "--epochs", "4", "--out-dir", "killed"], cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp_path / "killed/log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and log.read_text().count("\n") >= 2):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # somewhere in epoch 3 (or just after epoch 2)
    process.wait()
    resumed = certkit(*QUICK, "--epochs", "4", "--out-dir", "killed", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout
    a = torch.load(tmp_path / "whole/checkpoint-last.pth", weights_only=True)["model"]
    b = torch.load(tmp_path / "killed/checkpoint-last.pth", weights_only=True)["model"]
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-5)


def test_torchrun_two_cpu_ranks_match_one_process(tmp_path):
    """Same global batch (2 x 32 vs 1 x 64): the loss curves agree within noise."""
    common = ["pretrain", "dmae", "--max", "512", "--blr", "1.5e-3", "--warmup-epochs", "1", "--epochs", "3", "--seed", "0", "--device", "cpu"]
    single = certkit(*common, "--batch", "64", "--out-dir", "single", cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "certkit", "--"]  # "--": torchrun would read --max as its own --max-restarts
    ddp = subprocess.run([*launcher, *common, "--batch", "32", "--out-dir", "ddp"], cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    run = json.loads((tmp_path / "ddp/run.json").read_text())
    assert run["world_size"] == 2 and run["effective_batch"] == 64
    one, two = losses(tmp_path / "single"), losses(tmp_path / "ddp")
    assert len(one) == len(two) == 3
    for a, b in zip(one, two):
        assert abs(a - b) / a < 0.05, (one, two)
    # The 2-rank run continues in one process (same global batch): resume on another world size.
    four_epochs = [("4" if previous == "--epochs" else a) for previous, a in zip(["", *common], common)]
    refused = certkit(*four_epochs, "--batch", "64", "--out-dir", "ddp", cwd=tmp_path)
    assert refused.returncode == 2 and "epochs 3 -> 4" in refused.stderr and "--accept-changes" in refused.stderr
    more = certkit(*four_epochs, "--batch", "64", "--out-dir", "ddp", "--accept-changes", cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    assert "resuming from" in more.stdout and len(losses(tmp_path / "ddp")) == 4
    assert json.loads((tmp_path / "ddp/run.json").read_text())["changes"][0]["changed"] == {"epochs": [3, 4]}
    assert (tmp_path / "ddp/weights.safetensors").exists()
