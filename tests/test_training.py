"""The shared trainer: schedule, parameter groups, consistency loss, resume, NaN guard, DDP."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from torch.nn import functional as F
from typer.testing import CliRunner

from certkit.cli.main import build_app
from certkit.interfaces import LossOutput
from certkit.objectives import NoisyCrossEntropy
from certkit.training import TrainSettings, train
from certkit.training.param_groups import param_groups
from certkit.training.schedule import lr_at
from certkit.training.tasks import NoisyClassificationTask
from certkit.training.trainer import TrainingDiverged

QUICK = ["finetune", "--model", "tiny-cnn", "--sigma", "0.25", "--max", "256", "--batch", "32", "--epochs", "2", "--warmup-epochs", "1", "--drop-path", "0"]


def invoke(*args: str):
    return CliRunner().invoke(build_app(), list(args), env={"COLUMNS": "200"})


def test_schedule_warmup_then_half_cosine():
    assert lr_at(0, 1.0, 0.0, 4, 20) == 0.0
    assert lr_at(2, 1.0, 0.0, 4, 20) == pytest.approx(0.5)
    assert lr_at(4, 1.0, 0.1, 4, 20) == pytest.approx(1.0)
    assert lr_at(12, 1.0, 0.1, 4, 20) == pytest.approx(0.55)  # half-way through the cosine
    assert lr_at(20, 1.0, 0.1, 4, 20) == pytest.approx(0.1)


def test_lr_scales_with_effective_batch():
    settings = TrainSettings(out_dir=Path("x"), epochs=1, batch_size=64, accum_iter=2, blr=1.5e-4)
    assert settings.base_lr(world_size=2) == pytest.approx(1.5e-4 * 256 / 256)
    assert settings.base_lr(world_size=1) == pytest.approx(1.5e-4 * 128 / 256)


def test_param_groups_no_decay_and_layer_decay():
    from conftest import TinyCNN

    model = TinyCNN()
    groups = param_groups(model, 0.05)
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    for name, param in model.named_parameters():
        assert (id(param) in decayed) == (param.ndim > 1), name

    model.num_lr_layers = 3
    model.lr_layer_id = lambda name: 0 if name.startswith("net.0") else 3
    scales = {id(p): g["lr_scale"] for g in param_groups(model, 0.05, layer_decay=0.5) for p in g["params"]}
    assert scales[id(model.net[0].weight)] == pytest.approx(0.125) and scales[id(model.net[5].weight)] == 1.0


def test_consistency_loss_matches_independent_formula():
    from conftest import TinyCNN

    torch.manual_seed(0)
    model = TinyCNN().eval()
    images, labels = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    objective = NoisyCrossEntropy(sigma=0.5, consistency_lambda=2.0, consistency_eta=0.5, copies=2, label_smoothing=0.0)
    task = NoisyClassificationTask(model, "tiny-cnn", objective)
    output = task.loss(model, images, labels, torch.Generator().manual_seed(3))
    noise = torch.randn((8, 1, 28, 28), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        p1 = F.softmax(model(images + 0.5 * noise[:4]), 1)
        p2 = F.softmax(model(images + 0.5 * noise[4:]), 1)
    ce = (F.cross_entropy(p1.log(), labels) + F.cross_entropy(p2.log(), labels)) / 2
    mean = (p1 + p2) / 2
    kl = sum((mean * (mean.log() - p.log())).sum(1).mean() for p in (p1, p2)) / 2
    entropy = -(mean * mean.log()).sum(1).mean()
    assert float(output.loss.detach()) == pytest.approx(float(ce + 2.0 * kl + 0.5 * entropy), abs=1e-5)


def test_finetune_writes_weights_that_certify_loads(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(*QUICK, "--out-dir", "run")
    assert result.exit_code == 0, result.output
    with safe_open("run/weights.safetensors", "pt") as handle:
        meta = handle.metadata()
    assert meta["model"] == "tiny-cnn" and json.loads(meta["input_spec"])["sigma"] == 0.25
    assert len((tmp_path / "run/log.jsonl").read_text().splitlines()) == 2
    certified = invoke("certify", "--model", "tiny-cnn", "--sigma", "0.25", "--checkpoint", "run/weights.safetensors", "--n", "100", "--n0", "10", "--max", "2", "--out", "r.tsv")
    assert certified.exit_code == 0, certified.output


class _StopAfterFirstEpoch:
    """A progress sink that interrupts the run right after epoch 1's checkpoint, like a kill."""

    def start_epoch(self, epoch, epochs, steps): ...
    def step(self, loss, lr, images_per_second): ...
    def note(self, message): self.noted = message

    def end_epoch(self, summary):
        if summary["epoch"] == 1:
            raise KeyboardInterrupt


def test_interrupted_training_resumes_to_the_same_weights(tiny_model, tmp_path):
    from certkit.workflows.train import DataRequest, FinetuneOptions, run_finetune

    def settings(out: str) -> TrainSettings:
        return TrainSettings(out_dir=tmp_path / out, epochs=3, batch_size=32, blr=1e-3, warmup_epochs=1, device="cpu", seed=5)

    data, options = DataRequest("fashion-mnist-mini", max=256), FinetuneOptions(sigma=0.25, objective_options={"consistency_lambda": 2.0, "consistency_eta": 0.5}, drop_path=0.0)
    run_finetune("tiny-cnn", data, settings("whole"), options, {})
    with pytest.raises(KeyboardInterrupt):
        run_finetune("tiny-cnn", data, settings("split"), options, {}, progress=_StopAfterFirstEpoch())
    assert torch.load(tmp_path / "split/checkpoint-last.pth", weights_only=True)["epoch"] == 0
    progress = _StopAfterFirstEpoch()
    outcome = run_finetune("tiny-cnn", data, settings("split"), options, {}, progress=progress)
    assert outcome.first_epoch == 1 and "resuming" in progress.noted
    whole = torch.load(tmp_path / "whole/checkpoint-last.pth", weights_only=True)["model"]
    resumed = torch.load(tmp_path / "split/checkpoint-last.pth", weights_only=True)["model"]
    for key in whole:
        torch.testing.assert_close(resumed[key], whole[key], rtol=0, atol=1e-6)
    assert (tmp_path / "whole/log.jsonl").read_text() .count("\n") == 3


def test_existing_run_is_not_overwritten_without_resume(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert invoke(*QUICK, "--epochs", "1", "--out-dir", "run").exit_code == 0
    before = (tmp_path / "run/checkpoint-last.pth").read_bytes()
    result = invoke(*QUICK, "--out-dir", "run", "--no-resume")
    assert result.exit_code == 2 and "already holds a training run" in result.stderr
    assert (tmp_path / "run/checkpoint-last.pth").read_bytes() == before


class _ExplodingTask(NoisyClassificationTask):
    def loss(self, model, images, labels, generator):
        output = super().loss(model, images, labels, generator)
        return LossOutput(output.loss * float("nan"), output.logs)


def test_nan_loss_stops_with_a_clear_message(tmp_path):
    from conftest import TinyCNN
    from torch.utils.data import TensorDataset

    data = TensorDataset(torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,)))
    task = _ExplodingTask(TinyCNN(), "tiny-cnn", NoisyCrossEntropy(sigma=0.25))
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 1, step 1"):
        train(task, data, TrainSettings(out_dir=tmp_path / "run", epochs=1, batch_size=32, warmup_epochs=0, device="cpu"))
    assert not (tmp_path / "run" / "checkpoint-last.pth").exists()


EVAL = ["--eval-every", "1", "--eval-images", "20", "--eval-n", "20"]


def test_finetune_logs_every_objective_number_and_evaluates_each_epoch(tiny_model, tmp_path, monkeypatch):
    from certkit.training.options import settings_for

    monkeypatch.chdir(tmp_path)
    result = invoke(*QUICK, *EVAL, "--out-dir", "run")
    assert result.exit_code == 0, result.output
    assert "run directory: run" in result.output and "validation (20 images)" in result.output
    lines = [json.loads(line) for line in (tmp_path / "run/log.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2]
    for line in lines:  # noisy-ce's LossOutput.logs, and the evaluation on the validation subset
        assert {"ce", "acc", "kl", "entropy", "val_clean_acc", "val_smoothed_acc_r0", "val_images"} <= set(line)
        assert line["val_images"] == 20 and 0 <= line["val_smoothed_acc_r0"] <= line["val_clean_acc"] + 0.5
    rows = (tmp_path / "run/summary.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,loss,val_clean_acc") and len(rows) == 3
    assert (tmp_path / "run/checkpoint-best.pth").exists() and (tmp_path / "run/weights-best.safetensors").exists()
    run = json.loads((tmp_path / "run/run.json").read_text())
    assert set(run["settings"]) == set(settings_for("finetune"))  # every effective setting, defaults too
    assert run["settings"]["epochs"] == 2 and run["sources"]["epochs"] == "flag --epochs"
    assert run["sources"]["weight_decay"] == "default" and run["recipe"] is None and run["changes"] == []
    assert run["command"].startswith("certkit finetune ") and "--model tiny-cnn" in run["command"] and "--eval-n 20" in run["command"]


def test_resume_with_a_changed_setting_is_refused_and_changes_nothing(tiny_model, tmp_path, monkeypatch):
    from tests_support import snapshot

    monkeypatch.chdir(tmp_path)
    assert invoke(*QUICK, "--epochs", "1", "--eval-every", "0", "--out-dir", "run").exit_code == 0
    before = snapshot(tmp_path)
    for changed, named in ((["--blr", "5e-3"], "blr 0.001 -> 0.005"), (["--sigma", "0.5"], "sigma 0.25 -> 0.5"), (["--crop-scale", "0.5,1"], "crop_scale null -> [0.5, 1.0]")):
        result = invoke(*QUICK, "--epochs", "1", "--eval-every", "0", "--out-dir", "run", *changed)
        assert result.exit_code == 2, result.output
        line = result.stderr.strip().splitlines()[-1]
        assert named in line and "--out-dir" in line and "--accept-changes" in line
        assert snapshot(tmp_path) == before
    # Settings that do not change the weights may differ on resume (workers, evaluation, device).
    same = invoke(*QUICK, "--epochs", "1", "--eval-every", "3", "--workers", "1", "--out-dir", "run")
    assert same.exit_code == 0 and "resuming" in same.output


def test_ctrl_c_names_the_checkpointed_epoch_and_the_resume_command(tiny_model, tmp_path):
    import signal
    import time

    script = (
        "import sys; sys.path.insert(0, %r); import conftest; from pathlib import Path; from certkit import plugins;"
        "plugins.host().register_plugin(conftest.TinyPlugin(Path(%r)), name='test-tiny');"
        "from certkit.cli.main import run; run(sys.argv[1:])"
    ) % (str(Path(__file__).parent), str(tiny_model))
    args = [*QUICK, "--epochs", "50", "--eval-every", "0", "--out-dir", "run"]
    process = subprocess.Popen([sys.executable, "-c", script, *args], cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = tmp_path / "run/checkpoint-last.pth"
    while process.poll() is None and not last.exists():
        time.sleep(0.05)  # wait for a file state (epoch 1 committed), not for a time
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate()
    assert process.returncode == 130
    line = stderr.strip().splitlines()[-1]
    committed = torch.load(last, weights_only=True)["epoch"] + 1  # what the line must name
    assert line.startswith("interrupted: ") and f"of 50 safely checkpointed in run/checkpoint-last.pth" in line
    assert ("epoch 1 " if committed == 1 else f"epochs 1-{committed} ") in line
    resume = line.split("resume with: ")[1].split()
    assert resume[:2] == ["certkit", "finetune"] and " ".join(args[1:]).split() and all(word in resume for word in ("--out-dir", "run", "--epochs", "50", "tiny-cnn"))
