"""Supervised objectives (noisy-ce and plugins'), the pretrain/finetune split, and model families."""

from __future__ import annotations

import functools

import pytest
import torch
from typer.testing import CliRunner

from certkit import hookimpl, plugins
from certkit.cli.main import build_app
from certkit.errors import CertkitError, PluginError
from certkit.objectives import NoisyCrossEntropy


def invoke(*args: str):
    return CliRunner().invoke(build_app(), list(args), env={"COLUMNS": "200"})


def test_noisy_ce_is_a_builtin_supervised_objective():
    component = plugins.get("objectives", "noisy-ce")
    assert component.plugin == "certkit.builtins" and component.details["supervised"] is True
    assert plugins.get("objectives", "dmae").details.get("supervised") is None


def test_noisy_ce_defaults_are_the_finetune_recipe():
    assert NoisyCrossEntropy(sigma=0.25).options() == {"sigma": 0.25, "consistency_lambda": 2.0, "consistency_eta": 0.5, "copies": 2, "label_smoothing": 0.1, "smoother": "gaussian"}
    assert NoisyCrossEntropy(sigma=1.0).consistency_eta == 0.1
    cohen = NoisyCrossEntropy(sigma=0.5, consistency_lambda=0, consistency_eta=0, label_smoothing=0)
    assert cohen.copies == 1 and not cohen.consistency
    with pytest.raises(CertkitError, match="copies >= 1, and >= 2 with consistency"):
        NoisyCrossEntropy(sigma=0.25, copies=1)


def test_noisy_ce_without_consistency_is_cross_entropy_on_noisy_images():
    from conftest import TinyCNN

    torch.manual_seed(0)
    model = TinyCNN().eval()
    images, labels = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    objective = NoisyCrossEntropy(sigma=0.5, consistency_lambda=0, consistency_eta=0, label_smoothing=0)
    output = objective(model, images, labels, torch.Generator().manual_seed(3))
    noise = torch.randn((4, 1, 28, 28), generator=torch.Generator().manual_seed(3))
    expected = torch.nn.functional.cross_entropy(model(images + 0.5 * noise), labels)
    assert float(output.loss.detach()) == pytest.approx(float(expected.detach()), abs=1e-6)


def test_noisy_ce_at_sigma_zero_is_cross_entropy_on_clean_images():
    """The clean classifier of denoised smoothing: sigma 0, consistency refused (no noise)."""
    from conftest import TinyCNN

    torch.manual_seed(0)
    model = TinyCNN().eval()
    images, labels = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    output = NoisyCrossEntropy(sigma=0.0, consistency_lambda=0, consistency_eta=0, label_smoothing=0)(model, images, labels, torch.Generator().manual_seed(3))
    assert float(output.loss.detach()) == pytest.approx(float(torch.nn.functional.cross_entropy(model(images), labels).detach()), abs=1e-6)
    with pytest.raises(CertkitError, match="consistency regularization needs noise, and sigma is 0. Pass --no-consistency"):
        NoisyCrossEntropy(sigma=0.0)
    with pytest.raises(CertkitError, match="sigma must be >= 0"):
        NoisyCrossEntropy(sigma=-0.25, consistency_lambda=0)


def test_finetune_at_sigma_zero_records_a_clean_classifier(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    quick = ["finetune", "--model", "tiny-cnn", "--sigma", "0", "--max", "32", "--batch", "16", "--epochs", "1", "--drop-path", "0", "--out-dir", "clean"]
    refused = invoke(*quick)
    assert refused.exit_code == 2 and "Pass --no-consistency" in refused.stderr and not (tmp_path / "clean").exists()
    result = invoke(*quick, "--no-consistency")
    assert result.exit_code == 0, result.output
    from certkit.checkpoints import read_weights

    assert read_weights(tmp_path / "clean/weights.safetensors").input_spec.sigma == 0.0


def test_pretrain_refuses_a_supervised_objective():
    result = invoke("pretrain", "noisy-ce", "--epochs", "1")
    assert result.exit_code == 2
    assert "objective 'noisy-ce' is a supervised classification objective" in result.stderr
    assert "certkit finetune --objective noisy-ce" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_finetune_refuses_a_pretraining_objective(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("finetune", "--model", "tiny-cnn", "--sigma", "0.25", "--objective", "dmae", "--drop-path", "0")
    assert result.exit_code == 2
    assert "objective 'dmae' is a pretraining objective" in result.stderr and "noisy-ce" in result.stderr.split("one of:")[1]
    assert not (tmp_path / "runs").exists()


def test_unknown_objective_option_is_one_line(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("finetune", "--model", "tiny-cnn", "--sigma", "0.25", "-O", "gamma=3", "--drop-path", "0")
    assert result.exit_code == 2
    assert "objective 'noisy-ce' does not take the options ['gamma']" in result.stderr
    bad = invoke("finetune", "--model", "tiny-cnn", "--sigma", "0.25", "-O", "gamma")
    assert bad.exit_code == 2 and "--option 'gamma' is not key=value" in bad.stderr


# --- model families: a component registered with prefix=True -------------------------------


def _family_factory(arch: str, spec=None):
    return ("built", arch)


def _check(rest: str) -> None:
    if rest == "bad":
        raise PluginError(f"no architecture '{rest}'.", "Pick another.")


class FamilyPlugin:
    @hookimpl
    def certkit_register_models(self, register):
        register("fam/", _family_factory, prefix=True, check_name=_check, description="a family")
        register("fam/exact", lambda **kw: "exact")
        register("fam/long/", functools.partial(_family_factory), prefix=True)


@pytest.fixture
def family():
    host = plugins.host()
    host.register_plugin(FamilyPlugin(), name="test-family")
    try:
        yield host.registry("models")
    finally:
        host.unregister_plugin("test-family")


def test_family_member_gets_the_rest_of_the_name(family):
    member = family.get("fam/resnet")
    assert member.name == "fam/resnet" and member.plugin == "test-family"
    assert member.obj() == ("built", "resnet") and member.details == {"family": "fam/"}
    assert family.get("fam/exact").obj() == "exact"  # an exact name wins over the family
    assert family.get("fam/long/x").details["family"] == "fam/long/"  # the longest prefix wins
    assert "fam/resnet" in family and "fam/" not in family
    with pytest.raises(PluginError, match="no architecture 'bad'"):
        family.get("fam/bad")
    with pytest.raises(PluginError, match="unknown model 'famx'.*fam/<arch>"):
        family.get("famx")
    assert "fam/<arch>" in family.names()


def test_family_name_clash_is_reported(family):
    class Clash:
        @hookimpl
        def certkit_register_models(self, register):
            register("fam/", _family_factory, prefix=True)

    plugins.host().register_plugin(Clash(), name="test-clash")
    try:
        # Only the family's names become unusable; the error names both plugins.
        with pytest.raises(PluginError, match="'fam/' is registered twice.*test-family.*test-clash"):
            plugins.get("models", "fam/resnet")
        assert plugins.get("models", "fam/exact").obj() == "exact"
    finally:
        plugins.host().unregister_plugin("test-clash")


def test_plugins_command_shows_a_family(family):
    result = invoke("plugins")
    assert result.exit_code == 0 and "model: fam/<arch>" in result.output


class _Recorder(torch.nn.Module):
    """Wraps a model and keeps the batch it was called with."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.input_spec, self.seen = inner, inner.input_spec, None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.seen = images.detach().clone()
        return self.inner(images)


def test_mixup_happens_after_the_noise_on_the_two_copy_batch():
    """The objective's model input is timm's Mixup applied to the noisy copy-major batch (as in
    the reference's train_one_epoch_con_reg), not noise added to mixed clean images; the loss is
    the soft-target cross-entropy on Mixup's smoothed targets, plus the consistency terms."""
    import numpy as np
    from conftest import TinyCNN
    from timm.data import Mixup
    from torch.nn import functional as F

    torch.manual_seed(0)
    model = _Recorder(TinyCNN().eval())
    images, labels = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    objective = NoisyCrossEntropy(sigma=0.5, mixup=0.8, cutmix=1.0)
    output = objective(model, images, labels, torch.Generator().manual_seed(7))

    generator = torch.Generator().manual_seed(7)
    noisy = images.repeat(2, 1, 1, 1) + 0.5 * torch.randn((8, 1, 28, 28), generator=generator)  # noise first
    np.random.seed(int(torch.randint(0, 2**32 - 1, (1,), generator=generator)))  # the objective seeds timm's draws from its generator
    mixer = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode="batch", label_smoothing=0.1, num_classes=10)
    expected, soft = mixer(noisy.clone(), labels.repeat(2))
    torch.testing.assert_close(model.seen, expected, rtol=0, atol=0)
    # Both copies of image i are mixed with the same partner (copy-major batch, mirrored pairs).
    assert torch.allclose(soft[:4], soft[4:]) and not torch.equal(model.seen[:4], model.seen[4:])
    # Noise after mixing would leave the clean mix plus full-strength noise; that is not what the model saw.
    np.random.seed(int(torch.randint(0, 2**32 - 1, (1,), generator=torch.Generator().manual_seed(7))))
    clean_mix, _ = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode="batch", label_smoothing=0.1, num_classes=10)(images.repeat(2, 1, 1, 1), labels.repeat(2))
    assert not torch.allclose(model.seen, clean_mix + 0.5 * torch.randn((8, 1, 28, 28), generator=torch.Generator().manual_seed(7)))
    with torch.no_grad():
        logits = model.inner(expected)
    ce = torch.sum(-soft * F.log_softmax(logits, -1), -1).mean()
    probs = F.softmax(logits, 1).view(2, 4, -1)
    mean = probs.mean(0)
    kl = (mean * (mean.log() - probs.log())).sum(-1).mean()
    entropy = -(mean * mean.log()).sum(-1).mean()
    assert float(output.loss.detach()) == pytest.approx(float(ce + 2.0 * kl + 0.5 * entropy), abs=1e-5)
    assert output.logs["ce"] == pytest.approx(float(ce), abs=1e-5)


def test_mixup_needs_an_even_batch():
    from conftest import TinyCNN

    objective = NoisyCrossEntropy(sigma=0.5, consistency_lambda=0, consistency_eta=0, mixup=0.8)
    with pytest.raises(CertkitError, match="even number of noisy images"):
        objective(TinyCNN(), torch.rand(3, 1, 28, 28), torch.tensor([0, 1, 2]), torch.Generator().manual_seed(0))
