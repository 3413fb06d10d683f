"""Recipes and effective settings: registration through the hook, the file checks (file and
line in every error), layering default < recipe < config file < flag, --print-config, and
certify --protocol. The dmae plugin's own recipes are checked against the reference in
plugins/dmae/tests/test_dmae_recipes.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from certkit import hookimpl, plugins
from certkit.cli.main import build_app
from certkit.recipes import RecipeError, get_recipe
from certkit.training.options import SETTINGS, identity_differences, resolve
from tests_support import snapshot

GOOD = """\
recipe: test-finetune
version: 1
command: finetune
models: [tiny-cnn]
default_for: [tiny-cnn]
settings:
  epochs: 3
  blr: 5e-4
  crop_scale: [0.5, 1.0]
  eval_every: 0
  drop_path: 0.0
"""


def invoke(*args: str, cwd: Path | None = None):
    return CliRunner().invoke(build_app(), list(args), env={"COLUMNS": "200"})


class RecipePlugin:
    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    @hookimpl
    def certkit_register_recipes(self, register) -> None:
        for name, path in self.files.items():
            register(name, path)


@pytest.fixture
def recipes(tmp_path, tiny_model):
    """Writes recipe files given as {name: text} and registers them (plus tiny-cnn) for a test."""
    host = plugins.host()
    registered = []

    def add(**texts: str) -> dict[str, Path]:
        files = {}
        for name, text in texts.items():
            path = tmp_path / "recipes" / f"{name.replace('_', '-')}.yaml"
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
            files[name.replace("_", "-")] = path
        plugin_name = f"test-recipes-{len(registered)}"
        host.register_plugin(RecipePlugin(files), name=plugin_name)
        registered.append(plugin_name)
        return files

    try:
        yield add
    finally:
        for name in registered:
            host.unregister_plugin(name)


def test_a_registered_recipe_is_read_checked_and_listed(recipes):
    recipes(test_finetune=GOOD)
    recipe = get_recipe("test-finetune", "finetune")
    assert recipe.values == {"epochs": 3, "blr": 5e-4, "crop_scale": [0.5, 1.0], "eval_every": 0, "drop_path": 0.0}  # 5e-4 is a number (YAML 1.2)
    assert recipe.sources["blr"].endswith("(test-finetune.yaml:8)")
    listed = invoke("plugins")
    assert "recipe: test-finetune" in listed.output


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("  epochs: 3", "  epochs: three"), r"test-finetune.yaml:7: 'epochs' must be an integer, got 'three'"),
        (("  blr: 5e-4", "  blr: [1, 2]"), r"test-finetune.yaml:8: 'blr' must be a number"),
        (("  eval_every: 0", "  eval_evry: 0"), r"test-finetune.yaml:10: 'eval_evry' is not a finetune setting"),
        (("version: 1", "version: one"), r"test-finetune.yaml:2: version must be an integer"),
        (("command: finetune", "command: train"), r"test-finetune.yaml:3: command must be one of pretrain, finetune, certify"),
        (("models: [tiny-cnn]", "modles: [tiny-cnn]"), r"test-finetune.yaml:4: unknown recipe key 'modles'"),
        (("recipe: test-finetune", "recipe: other-name"), r"recipe 'other-name' is registered as 'test-finetune'"),
    ],
)
def test_recipe_errors_name_the_file_and_line(recipes, edit, message):
    recipes(test_finetune=GOOD.replace(*edit))
    with pytest.raises(RecipeError, match=message):
        get_recipe("test-finetune", "finetune")


def test_extends_merges_and_a_cycle_is_refused(recipes):
    child = "recipe: test-child\nversion: 1\ncommand: finetune\nextends: test-finetune\nsettings:\n  epochs: 9\n"
    recipes(test_finetune=GOOD, test_child=child)
    merged = get_recipe("test-child", "finetune")
    assert merged.values["epochs"] == 9 and merged.values["blr"] == 5e-4 and merged.models == ("tiny-cnn",)
    assert merged.sources["epochs"].startswith("recipe test-child") and merged.sources["blr"].startswith("recipe test-finetune")
    loop = "recipe: test-loop\nversion: 1\ncommand: finetune\nextends: test-loop\nsettings: {}\n"
    recipes(test_loop=loop)
    with pytest.raises(RecipeError, match="extends itself"):
        get_recipe("test-loop", "finetune")


def test_layers_default_recipe_config_flag():
    effective = resolve(
        "finetune",
        flags={"epochs": 7, "blr": None},
        recipe_values={"epochs": 3, "blr": 5e-4, "hflip": 0.5},
        recipe_name="r",
        config_values={"seed": (4, "certkit.yaml:3"), "device": ("auto", "default")},
    )
    assert effective["epochs"] == 7 and effective.sources["epochs"] == "flag --epochs"
    assert effective["blr"] == 5e-4 and effective.sources["blr"] == "recipe r"
    assert effective["seed"] == 4 and effective.sources["seed"] == "certkit.yaml:3"
    assert effective["weight_decay"] == 0.05 and effective.sources["weight_decay"] == "default"
    assert effective["betas"] == [0.9, 0.999]  # fine-tuning's own default (pretraining: 0.95)
    assert set(effective.values) == {n for n, s in SETTINGS.items() if "finetune" in s.commands}


def test_identity_excludes_how_a_run_runs_and_compares_values():
    identity = resolve("finetune", {"workers": 3, "device": "cpu", "eval_every": 1, "blr": 1e-3}).identity()
    assert {"workers", "device", "eval_every", "save_every", "batch", "accum"}.isdisjoint(identity)
    assert identity_differences(identity, {**identity, "blr": 2e-3}) == ["blr"]
    assert identity_differences(identity, dict(identity)) == []


def test_print_config_shows_every_setting_with_its_source_and_writes_nothing(recipes, tmp_path, monkeypatch):
    recipes(test_finetune=GOOD)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "certkit.yaml").write_text("seed: 11\n")
    before = snapshot(tmp_path)
    result = invoke("finetune", "--model", "tiny-cnn", "--sigma", "0.25", "--epochs", "2", "--print-config")
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()[1:] if line.startswith("  ")}
    assert "flag --epochs" in lines["epochs"] and " 2 " in lines["epochs"]
    assert "recipe test-finetune (test-finetune.yaml:8)" in lines["blr"]
    assert "certkit.yaml:1" in lines["seed"] and " 11 " in lines["seed"]
    assert lines["weight_decay"].rstrip().endswith("default")
    assert "auto: min(5, epochs / 10)" in lines["warmup_epochs"]
    assert "recipe test-finetune" in result.output.splitlines()[0]
    assert snapshot(tmp_path) == before  # no run directory, nothing else


def test_unknown_recipe_and_recipe_for_another_model_are_refused(recipes, tmp_path, monkeypatch):
    recipes(test_finetune=GOOD)
    monkeypatch.chdir(tmp_path)
    unknown = invoke("finetune", "--model", "tiny-cnn", "--sigma", "0.25", "--recipe", "nope")
    assert unknown.exit_code == 2 and "unknown recipe 'nope'. Known recipes for finetune:" in unknown.stderr and "test-finetune" in unknown.stderr
    other = invoke("finetune", "--model", "vit-mini", "--sigma", "0.25", "--recipe", "test-finetune")
    assert other.exit_code == 2 and "recipe 'test-finetune' is for tiny-cnn, not 'vit-mini'" in other.stderr
    wrong_kind = invoke("pretrain", "dmae", "--recipe", "test-finetune")
    assert wrong_kind.exit_code == 2 and "is a finetune recipe, not a pretrain recipe" in wrong_kind.stderr
    assert not (tmp_path / "runs").exists()


def test_certify_protocol_sets_n_alpha_skip_under_the_flags(recipes, tmp_path, monkeypatch):
    protocol = "recipe: test-protocol\nversion: 1\ncommand: certify\nsettings:\n  n0: 20\n  n: 200\n  alpha: 0.01\n  skip: 7\n"
    recipes(test_protocol=protocol)
    monkeypatch.chdir(tmp_path)
    result = invoke("certify", "--model", "tiny-cnn", "--protocol", "test-protocol", "--n", "100", "--max", "2", "--out", "p.tsv")
    assert result.exit_code == 0, result.output
    import json

    meta = json.loads((tmp_path / "p.tsv.meta.json").read_text())
    assert (meta["n0"], meta["n"], meta["alpha"], meta["dataset"]["skip"]) == (20, 100, 0.01, 7)  # --n wins over the protocol
    bad = invoke("certify", "--protocol", "test-finetune-missing")
    assert bad.exit_code == 2 and "unknown protocol" in bad.stderr


def test_a_bad_recipe_is_one_line_with_file_and_line_and_nothing_is_written(recipes, tmp_path, monkeypatch):
    recipes(test_finetune=GOOD.replace("  epochs: 3", "  epochs: 3.5"))
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    result = invoke("finetune", "--model", "tiny-cnn", "--sigma", "0.25")  # tiny-cnn's default recipe
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "test-finetune.yaml:7: 'epochs' must be an integer, got 3.5" in lines[0]
    assert snapshot(tmp_path) == before
