"""Plugin loading: entry points, duplicates, broken plugins, environment switches."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from certkit import hookimpl, plugins
from certkit.cli.main import build_app
from certkit.errors import PluginError


@pytest.fixture(autouse=True)
def fresh_host():
    plugins.reset()
    yield
    plugins.reset()


def write_fake_distribution(root, name: str, entry_point: str, module_source: str | None = None) -> None:
    """An installed-looking distribution (dist-info with entry points) on a sys.path folder."""
    info = root / f"{name}-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(f"[certkit]\n{name} = {entry_point}\n")
    if module_source is not None:
        (root / f"{entry_point.split(':')[0]}.py").write_text(module_source)


def test_dmae_plugin_loads_through_its_entry_point():
    info = {p.name: p for p in plugins.host().plugins()}
    assert info["dmae"].source == "entry point certkit_dmae.plugin"
    assert info["dmae"].error is None
    assert plugins.get("models", "vit-b").plugin == "dmae"
    assert plugins.get("models", "vit-base").name == "vit-b"  # alias
    assert plugins.get("certifiers", "cohen").plugin == "certkit.builtins"


def test_duplicate_name_names_both_plugins():
    class Clash:
        @hookimpl
        def certkit_register_certifiers(self, register):
            register("cohen", object)

        @hookimpl
        def certkit_register_commands(self, register):
            register("plugins", lambda: None)

    plugins.host().register_plugin(Clash(), name="clashing-plugin")
    with pytest.raises(PluginError) as caught:
        plugins.get("certifiers", "cohen")
    assert "'cohen' is registered twice" in str(caught.value)
    assert "certkit.builtins" in str(caught.value) and "clashing-plugin" in str(caught.value)
    # The clash makes only that name unusable; the CLI still starts and reports the culprit.
    result = CliRunner().invoke(build_app(), ["plugins"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "clashing-plugin" in result.output and "registered twice" in result.output


def test_unknown_component_lists_known_ones():
    with pytest.raises(PluginError, match="unknown model 'vit-xxl'.*Known models: .*vit-b"):
        plugins.get("models", "vit-xxl")


def test_broken_plugin_is_reported_and_other_commands_still_work(tmp_path, monkeypatch):
    write_fake_distribution(tmp_path, "broken-one", "certkit_broken_mod", "raise ImportError('needs libfoo 3')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    runner = CliRunner()
    result = runner.invoke(build_app(), ["plugins"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "broken-one" in result.output and "ImportError: needs libfoo 3" in result.output
    assert "vit-mini" in result.output  # the healthy plugin is still listed
    assert runner.invoke(build_app(), ["config"]).exit_code == 0


def test_plugin_whose_hook_raises_is_dropped_not_fatal(tmp_path, monkeypatch):
    source = "from certkit import hookimpl\n@hookimpl\ndef certkit_register_models(register):\n    raise RuntimeError('bad registry')\n"
    write_fake_distribution(tmp_path, "raises-one", "certkit_raises_mod", source)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "vit-b" in plugins.host().registry("models")
    info = {p.name: p for p in plugins.host().plugins()}
    assert "RuntimeError: bad registry" in info["raises-one"].error


def test_misspelled_hook_is_reported(tmp_path, monkeypatch):
    source = "from certkit import hookimpl\n@hookimpl\ndef certkit_register_modles(register):\n    pass\n"
    write_fake_distribution(tmp_path, "typo-one", "certkit_typo_mod", source)
    monkeypatch.syspath_prepend(str(tmp_path))
    info = {p.name: p for p in plugins.host().plugins()}
    assert "certkit_register_modles" in info["typo-one"].error


def test_block_and_disable_environment_variables(monkeypatch):
    monkeypatch.setenv(plugins.BLOCK_ENV, "dmae")
    assert "vit-b" not in plugins.host().registry("models")
    assert {p.name: p for p in plugins.host().plugins()}["dmae"].blocked
    plugins.reset()
    monkeypatch.delenv(plugins.BLOCK_ENV)
    monkeypatch.setenv(plugins.DISABLE_AUTOLOAD_ENV, "1")
    assert [p.name for p in plugins.host().plugins()] == ["certkit.builtins"]
    assert "cohen" in plugins.host().registry("certifiers")


def test_plugins_command_lists_versions_and_components():
    result = CliRunner().invoke(build_app(), ["plugins"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for text in ("certkit.builtins", "dmae", "0.1.0", "model: vit-l", "certifier: cohen", "dataset: fashion-mnist-mini", "command: certify"):
        assert text in result.output


class _BrokenSmootherPlugin:
    @hookimpl
    def certkit_register_smoothers(self, register) -> None:
        raise ImportError("No module named 'scipy_special_l1'\nsecond line that must not show")


def test_unknown_name_names_the_plugins_that_failed_to_load():
    host = plugins.host()
    host.register_plugin(_BrokenSmootherPlugin(), name="uniform-l1-plugin")
    try:
        with pytest.raises(PluginError) as error:
            plugins.get("smoothers", "uniform-l1")
    finally:
        host.unregister_plugin("uniform-l1-plugin")
    message = str(error.value)
    assert "unknown smoother 'uniform-l1'" in message and "Known smoothers: gaussian, uniform." in message
    assert "uniform-l1-plugin (certkit_register_smoothers failed: ImportError: No module named 'scipy_special_l1')" in message
    assert "second line" not in message and "\n" not in message


def test_plugins_lists_descriptions_and_checkpoint_sigmas():
    result = CliRunner().invoke(build_app(), ["plugins"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[-2].strip() for line in result.output.splitlines() if line.count("│") >= 4}
    assert "smoother: uniform — U[-lam, lam]^d, lam = sqrt(3) sigma (Yang et al. 2020); L1 radius 2 lam (pA - 1/2)" in lines
    assert any(line.startswith("model: vit-mini — ") and line.endswith("[checkpoints: σ 0.25, 0.5; uniform σ 0.25]") for line in lines), lines
    assert any(line.startswith("command: certify — Certify a model") for line in lines)
