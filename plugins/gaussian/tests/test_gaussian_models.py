"""The gaussian plugin's models: registration through the entry point, input specs, the timm
family, and a weights round trip through certkit's loader."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from certkit import InputSpec, plugins
from certkit.checkpoints import write_weights
from certkit.cli.main import build_app
from certkit.errors import CertkitError, PluginError
from certkit.models import load_classifier

from certkit_gaussian.models import CIFAR10, FASHION_MNIST


def test_plugin_registers_through_its_entry_point():
    info = {p.name: p for p in plugins.host().plugins()}
    assert info["gaussian"].source == "entry point certkit_gaussian.plugin" and info["gaussian"].error is None
    for name in ("cnn-mini", "resnet-mini", "timm/resnet18"):
        assert plugins.get("models", name).plugin == "gaussian"
    stability = plugins.get("objectives", "stability")
    assert stability.plugin == "gaussian" and stability.details["supervised"] is True
    result = CliRunner().invoke(build_app(), ["plugins"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for text in ("gaussian", "model: cnn-mini", "model: resnet-mini", "model: timm/<arch>", "objective: stability"):
        assert text in result.output


@pytest.mark.parametrize("name", ["cnn-mini", "resnet-mini", "timm/resnet18"])
@pytest.mark.parametrize("spec", [FASHION_MNIST, CIFAR10], ids=["1x28x28", "3x32x32"])
def test_models_build_from_the_input_spec(name, spec):
    factory = plugins.get("models", name).obj
    torch.manual_seed(0)
    model = factory(spec=spec, drop_path_rate=0.1).eval()
    assert model.input_spec == spec
    images = torch.rand(3, spec.channels, *spec.image_size)
    logits = model(images)
    assert logits.shape == (3, 10) and torch.isfinite(logits).all()
    # Normalization is inside the model: a [0, 1] batch and its normalized copy differ.
    assert not torch.allclose(model(images), model((images - 0.5) / 0.25))


def test_spec_presets_and_default():
    factory = plugins.get("models", "cnn-mini").obj
    assert factory().input_spec == FASHION_MNIST
    assert factory(spec="cifar10").input_spec == CIFAR10
    with pytest.raises(CertkitError, match="unknown input spec preset 'svhn'"):
        factory(spec="svhn")


def test_resnet_mini_depth_and_stochastic_depth():
    factory = plugins.get("models", "resnet-mini").obj
    assert len(factory(depth=32).blocks) == 15
    with pytest.raises(CertkitError, match="depth must be 6n \\+ 2"):
        factory(depth=21)
    model = factory(drop_path_rate=0.2)
    rates = [float(getattr(block.drop_path, "drop_prob", 0.0)) for block in model.blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.2) and rates == sorted(rates)


def test_timm_family_unknown_arch_is_one_line():
    with pytest.raises(PluginError, match="unknown timm architecture 'resnet9000'.*timm.list_models"):
        plugins.get("models", "timm/resnet9000")
    with pytest.raises(PluginError, match="names a model family"):
        plugins.get("models", "timm/")
    assert "timm/resnet18" in plugins.host().registry("models")
    member = plugins.get("models", "timm/resnet18")
    assert member.name == "timm/resnet18" and member.details["family"] == "timm/"


def test_timm_model_passes_options_to_timm_and_never_downloads(monkeypatch):
    import timm

    seen = {}
    real = timm.create_model

    def spy(arch, **kwargs):
        seen.update(kwargs, arch=arch)
        return real(arch, **kwargs)

    monkeypatch.setattr(timm, "create_model", spy)
    model = plugins.get("models", "timm/resnet18").obj(drop_path_rate=0.05)
    assert seen["arch"] == "resnet18" and seen["pretrained"] is False
    assert seen["num_classes"] == 10 and seen["in_chans"] == 1 and seen["drop_path_rate"] == 0.05
    assert model.input_spec == FASHION_MNIST


@pytest.mark.parametrize("name", ["cnn-mini", "timm/resnet18"])
def test_weights_round_trip_through_certkits_loader(name, tmp_path):
    torch.manual_seed(1)
    spec = InputSpec(**{**FASHION_MNIST.to_dict(), "sigma": 0.25, "image_size": (28, 28)})
    model = plugins.get("models", name).obj(spec=spec).eval()
    path = tmp_path / "w.safetensors"
    write_weights(path, model, name, spec)
    loaded = load_classifier(name, 0.25, path)
    assert loaded.name == name and loaded.spec.sigma == 0.25
    images = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(loaded.model(images), model(images))


def test_plain_timm_state_dict_gets_the_prefix(tmp_path):
    import timm

    bare = timm.create_model("resnet18", pretrained=False, num_classes=10, in_chans=1)
    path = tmp_path / "timm.pth"
    torch.save({"state_dict": bare.state_dict()}, path)
    loaded = load_classifier("timm/resnet18", 0.25, path)
    images = torch.rand(2, 1, 28, 28)
    bare.eval()
    torch.testing.assert_close(loaded.model(images), bare((images - 0.2860) / 0.3530))
