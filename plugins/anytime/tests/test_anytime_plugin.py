"""certkit-anytime as a plugin: registration through the certifier hook, options and bad input,
the count thresholds against their definitions, and a certification end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch import nn
from typer.testing import CliRunner

from certkit import ABSTAIN, CertkitError, InputSpec, Normalize, hookimpl, plugins
from certkit.checkpoints import write_weights
from certkit.certifiers.replay import CategoricalSampler
from certkit.cli.main import build_app
from certkit.interfaces import CertifySettings
from certkit.sampling import drive
from certkit.smoothers import GaussianSmoother
from certkit.stats import betting_log_wealth, betting_lower, clopper_pearson_lower
from certkit_anytime.bounds import betting_thresholds, largest_reachable, union_looks, union_levels, union_thresholds
from certkit_anytime.common import probability_for

NAMES = ("horvath", "cs-union", "cs-betting")


def test_registered_through_the_certifier_hook():
    registry = plugins.host().registry("certifiers")
    for name in NAMES:
        component = plugins.get("certifiers", name)
        assert component.plugin == "anytime" and component.description
        assert component.obj().name == name
    assert {"cohen", "sequential"} <= {c.name for c in registry}


@pytest.mark.parametrize("name", NAMES)
def test_a_target_radius_is_required(name):
    with pytest.raises(CertkitError, match="decides one target radius, and none was given") as error:
        plugins.get("certifiers", name).obj().check(CertifySettings(100, 10_000, 0.001))
    assert "-O radius=" in error.value.fix


@pytest.mark.parametrize("name", NAMES)
def test_unknown_options_list_the_valid_ones(name):
    with pytest.raises(CertkitError, match="unknown option 'raduis'") as error:
        plugins.get("certifiers", name).obj().check(CertifySettings(100, 10_000, 0.001, {"radius": 0.5, "raduis": 1}))
    assert error.value.fix.startswith("Known options: radius, ")


@pytest.mark.parametrize("name,extra,largest", [("horvath", {"radius": 4.0}, "0.9528"), ("cs-union", {"radius": 2.0}, "0.741"), ("cs-betting", {"radius": 2.0}, "0.7542")])
def test_a_radius_out_of_reach_is_refused_with_the_largest_one(name, extra, largest):
    certifier = plugins.get("certifiers", name).obj()
    settings = CertifySettings(100, 10_000, 0.001, extra)
    certifier.check(settings)
    with pytest.raises(CertkitError, match=f"largest reachable radius is {largest}"):
        certifier.check_reach(GaussianSmoother(0.25), settings)


def test_union_thresholds_follow_the_published_looks():
    """Looks where n first exceeds 1.1^k (k from 12), levels 5 alpha / ((t+4)(t+5)) summing to
    alpha, and at a look the certify threshold is the Clopper-Pearson test at that level."""
    looks, t = union_looks(100_000, 1.1, 11)
    assert looks[0] == 3 and np.all(np.diff(looks) > 0) and looks[-1] > 90_000
    assert union_levels(1.0, np.arange(1, 100_000)).sum() == pytest.approx(1.0, abs=1e-4)
    q, alpha = 0.9, 0.001
    thresholds = union_thresholds(q, alpha, 20_000, 1.1, 11)
    for n, level in zip(looks[looks <= 20_000][-3:], union_levels(alpha, t[looks <= 20_000][-3:])):
        k = thresholds[n]
        assert clopper_pearson_lower(int(k), int(n), level) >= q > clopper_pearson_lower(int(k) - 1, int(n), level)
    assert np.all(np.diff(thresholds[thresholds <= 20_000]) >= 0)


def test_betting_thresholds_are_where_certkits_betting_bound_passes_q():
    """The plugin's count thresholds agree with certkit's betting lower bound (written
    independently): at the last n, k >= certify[n] exactly when the bound passes q."""
    q, alpha, n = 0.9, 0.001, 5000
    thresholds = betting_thresholds(q, alpha, n)
    k = int(thresholds[n])
    assert betting_lower(k, n, alpha) > q >= betting_lower(k - 1, n, alpha)
    assert betting_log_wealth(k, n, q) > np.log(1 / alpha) >= betting_log_wealth(k - 1, n, q)
    assert np.all(np.diff(thresholds[1:]) >= 0)  # a running minimum from the end


@pytest.mark.parametrize("kind", ["union", "betting"])
def test_largest_reachable_probability_is_the_all_hits_edge(kind):
    alpha, n = 0.001, 5000
    edge = largest_reachable(kind, alpha, n, 1.1, 11, 0.5)
    build = (lambda q: union_thresholds(q, alpha, n, 1.1, 11)) if kind == "union" else (lambda q: betting_thresholds(q, alpha, n))
    reachable = lambda q: bool((build(q) <= np.arange(n + 1)).any())  # all hits pass at some n <= 5000
    assert reachable(edge - 1e-6) and not reachable(edge + 1e-6)


def test_target_probability_is_the_gaussian_threshold():
    assert probability_for(GaussianSmoother(0.5), 0.5) == pytest.approx(norm.cdf(1.0), abs=1e-12)


def test_horvath_abstains_on_a_bound_of_exactly_one_half():
    """Horváth certifies only when the bound is strictly above 1/2 (1 of 1 at alpha 0.5 gives exactly 1/2)."""
    always = CategoricalSampler(0).for_image(np.array([1.0, 0.0]), 0)
    cert = drive(plugins.get("certifiers", "horvath").obj().process(GaussianSmoother(0.5), CertifySettings(1, 1, 0.5, {"radius": 1e-9, "steps": "1"})), always)
    assert cert.p_lower == 0.5 and cert.prediction == ABSTAIN


def test_horvath_steps_are_fresh_samples_and_counted():
    """Each step draws N0 + n_j new samples (the reference code's procedure), and stops at the first decisive step."""
    sampler = CategoricalSampler(0).for_image(np.array([0.8, 0.2]), 0)
    settings = CertifySettings(10, 1000, 0.001, {"radius": 0.5, "steps": "100,1000"})
    cert = drive(plugins.get("certifiers", "horvath").obj().process(GaussianSmoother(0.5), settings), sampler)
    assert cert.samples in (110, 1120) and cert.n in (100, 1000)


class _TinyModelPlugin:
    """Registers a small random CNN for fashion-mnist-mini, as the root tests' fixture does."""

    def __init__(self, checkpoint) -> None:
        self.checkpoint = checkpoint

    @hookimpl
    def certkit_register_models(self, register) -> None:
        register("anytime-tiny", _tiny, description="test model", checkpoints={0.25: self.checkpoint})


SPEC = InputSpec(image_size=(28, 28), channels=1, mean=(0.286,), std=(0.353,), num_classes=10, sigma=0.25)


def _tiny(spec: InputSpec | None = None) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(Normalize(SPEC.mean, SPEC.std), nn.Conv2d(1, 4, 5, stride=4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    model.input_spec = spec or SPEC
    return model


@pytest.fixture
def tiny_model(tmp_path_factory):
    checkpoint = tmp_path_factory.mktemp("anytime") / "tiny.safetensors"
    write_weights(checkpoint, _tiny(), "anytime-tiny", SPEC)
    host = plugins.host()
    host.register_plugin(_TinyModelPlugin(checkpoint), name="test-anytime-tiny")
    try:
        yield checkpoint
    finally:
        host.unregister_plugin("test-anytime-tiny")


def test_certify_end_to_end_with_a_plugin_certifier(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["certify", "--model", "anytime-tiny", "--sigma", "0.25", "--n0", "50", "--n", "2000", "--max", "4", "--batch", "500", "--certifier", "cs-betting", "-O", "radius=0.25", "--out", "b.tsv"]
    result = CliRunner().invoke(build_app(), args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = [line.split("\t") for line in (tmp_path / "b.tsv").read_text().splitlines()[1:]]
    assert len(rows) == 4 and all(float(r[3]) in (0.0, 0.25) for r in rows)
    meta = json.loads((tmp_path / "b.tsv.meta.json").read_text())
    assert meta["certifier"] == "cs-betting" and meta["certifier_options"] == {"radius": 0.25}
    missing = CliRunner().invoke(build_app(), [*args[:-6], "--certifier", "horvath", "--out", "h.tsv"])
    assert missing.exit_code == 2 and "decides one target radius" in missing.stderr and not (tmp_path / "h.tsv").exists()
