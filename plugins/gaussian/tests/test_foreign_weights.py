"""A timm model certified from a foreign state dict (torchvision's key format), no certkit checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from typer.testing import CliRunner

from certkit.cli.main import build_app

COMMON = ["--data", "imgs", "--sigma", "0.25", "--max", "2", "--n0", "10", "--n", "100", "--batch", "110"]


@pytest.fixture
def cifar_like(tmp_path, monkeypatch):
    """A 3-class folder of 3x32x32 PNGs and a torchvision ResNet-18 (10 classes) state dict."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for label in range(3):
        folder = tmp_path / "imgs" / "test" / f"class{label}"
        folder.mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10)
    torch.save(net.state_dict(), tmp_path / "resnet18.pth")
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "ddp-resnet18.pth")
    return tmp_path, net


def invoke(*args: str):
    return CliRunner().invoke(build_app(), list(args), env={"COLUMNS": "250"})


def test_torchvision_state_dict_is_certified_as_a_timm_model(cifar_like):
    folder, net = cifar_like
    result = invoke("certify", "--model", "timm/resnet18", "--checkpoint", "resnet18.pth", "--spec", "cifar10", *COMMON, "--out", "r.tsv")
    assert result.exit_code == 0, result.output
    meta = json.loads((folder / "r.tsv.meta.json").read_text())
    assert meta["model"] == "timm/resnet18" and meta["input_spec"]["mean"] == [0.4914, 0.4822, 0.4465]
    # the loaded weights are torchvision's: same logits as the torchvision module on normalized input
    from certkit.models import load_classifier

    loaded = load_classifier("timm/resnet18", 0.25, folder / "resnet18.pth", spec="cifar10")
    images = torch.rand(3, 3, 32, 32)
    mean, std = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1), torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(images), net.eval()((images - mean) / std))
    ddp = invoke("certify", "--model", "timm/resnet18", "--checkpoint", "ddp-resnet18.pth", "--spec", "cifar10", *COMMON, "--out", "d.tsv")
    assert ddp.exit_code == 0, ddp.output
    rows = lambda name: [line.split("\t")[:5] for line in (folder / name).read_text().splitlines()]  # noqa: E731
    assert rows("r.tsv") == rows("d.tsv")


def test_a_state_dict_of_another_architecture_names_the_missing_keys(cifar_like):
    folder, _ = cifar_like
    result = invoke("certify", "--model", "timm/resnet34", "--checkpoint", "resnet18.pth", "--spec", "cifar10", *COMMON)
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert "does not fit the model: missing ['net.layer1.2.bn1.bias'" in message and "(96 missing, 0 unexpected keys)" in message
    assert not (folder / "results").exists()


def test_unknown_spec_preset_is_one_line(cifar_like):
    result = invoke("certify", "--model", "timm/resnet18", "--checkpoint", "resnet18.pth", "--spec", "cifar100", *COMMON)
    assert result.exit_code == 2 and "unknown input spec 'cifar100'. Use a preset (imagenet, cifar10, mnist-like, fashion-mnist)" in " ".join(result.stderr.split())
