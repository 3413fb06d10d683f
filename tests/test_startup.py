"""What `certkit` imports before it can answer (issue 14): `--version` loads no plugin, `--help`
and `certify --help` list commands and options without torch, and help shows where each
config-backed default comes from. Timing is measured by benchmarks/startup.py, never here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from certkit import hookimpl, plugins
from certkit.cli.main import build_app

HEAVY = {"torch", "timm", "numpy", "torchvision"}
ENV = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}


# Runs the console script's entry point and, at interpreter exit, writes the names in sys.modules.
PROBE = """
import atexit, sys
atexit.register(lambda: open({out!r}, "w").write("\\n".join(sorted(sys.modules))))
from certkit.cli.main import run
sys.argv = ["certkit", *sys.argv[1:]]
run()
"""


def certkit_imports(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run ``certkit ARGS`` in a fresh interpreter: the result and every module it imported."""
    listing = cwd / "modules.txt"
    result = subprocess.run([sys.executable, "-c", PROBE.format(out=str(listing)), *args], cwd=cwd, env=ENV, capture_output=True, text=True)
    modules = set(listing.read_text().split())
    assert "certkit.cli.main" in modules  # the listing is real: the CLI itself is in it
    return result, modules


def test_version_loads_no_plugin_and_no_torch(tmp_path):
    result, modules = certkit_imports("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "certkit 0.1.0"
    assert not modules & (HEAVY | {"certkit.plugins", "certkit_dmae", "certkit_gaussian", "certkit.interfaces"})


def test_help_lists_every_command_without_torch(tmp_path):
    result, modules = certkit_imports("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    for command in ("certify", "predict", "report", "compare", "plugins", "plugin", "config", "pretrain", "finetune", "export"):
        assert f" {command} " in result.stdout
    assert "Certify a model with randomized smoothing" in result.stdout
    assert {"certkit.plugins", "certkit_dmae.plugin", "certkit_gaussian.plugin"} <= modules  # plugins were asked for their commands
    assert not modules & HEAVY
    assert "certkit.cli.certify_cmd" not in modules  # a command's module loads when that command is used


def test_certify_help_shows_config_defaults_and_their_source_without_torch(tmp_path):
    (tmp_path / "certkit.yaml").write_text("certify:\n  n: 500\n  alpha: 0.01\nseed: 3\n")
    (tmp_path / "mine.yaml").write_text("# mine\ncertify:\n  alpha: 0.05\n")
    result, modules = certkit_imports("certify", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    text = " ".join(result.stdout.split())
    assert "(500, from certkit.yaml:2)" in text and "(0.01, from certkit.yaml:3)" in text and "(3, from certkit.yaml:4)" in text
    assert "(100, built-in)" in text and "(vit-mini, built-in)" in text and "(gaussian, built-in)" in text  # --n0, --model, --smoother
    assert not modules & HEAVY
    # --config is read from the same command line, although --help is handled first.
    result, _ = certkit_imports("certify", "--config", "mine.yaml", "--help", cwd=tmp_path)
    text = " ".join(result.stdout.split())
    assert "(0.05, from mine.yaml:3)" in text and "(500, from certkit.yaml:2)" in text


@pytest.mark.parametrize("command", ["predict", "compare"])
def test_other_commands_show_config_defaults_too(command, tmp_path):
    (tmp_path / "certkit.yaml").write_text("predict:\n  n: 300\ncertify:\n  n: 700\n")
    result = subprocess.run([sys.executable, "-m", "certkit", command, "--help"], cwd=tmp_path, env=ENV, capture_output=True, text=True)
    text = " ".join(result.stdout.split())
    assert ("(300, from certkit.yaml:2)" if command == "predict" else "(700, from certkit.yaml:4)") in text
    assert "(0.25, built-in)" in text  # --sigma


def test_broken_config_does_not_hide_the_help(tmp_path):
    (tmp_path / "certkit.yaml").write_text("certify:\n  n: [\n")
    result = subprocess.run([sys.executable, "-m", "certkit", "certify", "--help"], cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0
    assert "--n0" in result.stdout and "Config defaults not shown" in result.stdout and "certkit.yaml" in result.stdout


def test_a_command_registered_by_reference_is_imported_only_when_it_runs(tmp_path, monkeypatch):
    (tmp_path / "certkit_probe_cmd.py").write_text('def hello(name: str = "you") -> None:\n    """Say hello."""\n    print(f"hello {name}")\n')
    monkeypatch.syspath_prepend(str(tmp_path))

    class Probe:
        @hookimpl
        def certkit_register_commands(self, register):
            register("hello", "certkit_probe_cmd:hello", description="Greets, from a module imported on first use.")

    plugins.host().register_plugin(Probe(), name="probe")
    try:
        listing = CliRunner().invoke(build_app(), ["--help"], env={"COLUMNS": "200"})
        assert listing.exit_code == 0 and "Greets, from a module imported on first use." in listing.output
        assert "certkit_probe_cmd" not in sys.modules
        ran = CliRunner().invoke(build_app(), ["hello", "--name", "certkit"])
        assert ran.exit_code == 0 and ran.output.strip() == "hello certkit"
        assert "Say hello." in CliRunner().invoke(build_app(), ["hello", "--help"]).output  # the docstring is the full help
        assert "Did you mean 'hello'" in CliRunner().invoke(build_app(), ["helo"]).output
    finally:
        plugins.host().unregister_plugin("probe")
        sys.modules.pop("certkit_probe_cmd", None)


def test_public_names_still_import_from_certkit_and_torch_only_when_used(tmp_path):
    code = (
        "import sys, certkit\n"
        "assert 'torch' not in sys.modules\n"
        "from certkit import InputSpec, Normalize, hookimpl, CertkitError, NORMS, load_classifier\n"
        "assert 'torch' in sys.modules and NORMS == ('l2', 'l1', 'linf') and 'InputSpec' in dir(certkit)\n"
        "try:\n    certkit.no_such_name\nexcept AttributeError as error:\n    print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "module 'certkit' has no attribute 'no_such_name'"


# Runs `certkit certify`, and when the model is about to load writes sys.modules and what the
# progress bar was told so far, then exits: what certify imports before its first progress line.
CERTIFY_PROBE = """
import os, sys
import certkit.workflows.certify as workflow
from certkit.cli.progress import ImageProgress
shown = []
original_start = ImageProgress.start
def recording_start(self, total, already_done, description, final=True):
    shown.append((total, already_done, description, final))
    return original_start(self, total, already_done, description, final)
ImageProgress.start = recording_start
def stop_before_loading(*args, **kwargs):
    with open({out!r}, "w") as listing:
        listing.write(repr(shown) + "\\n" + "\\n".join(sorted(sys.modules)))
    os._exit(0)
workflow.build_engine = stop_before_loading
from certkit.cli.main import run
sys.argv = ["certkit", *sys.argv[1:]]
run()
"""


def test_certify_shows_its_bar_before_importing_the_model_stack(tmp_path):
    """The bar (images to do, images already done) is up before the model loads, and what runs
    before it imports neither timm, nor torchvision, nor scipy.stats (~3.5 s on an idle CPU,
    benchmarks/startup.py): certify's start-up target is torch's import + 1.5 s."""
    out = tmp_path / "r.tsv"
    first = subprocess.run([sys.executable, "-m", "certkit", "certify", "--max", "2", "--n", "100", "--device", "cpu", "--out", str(out)], cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-2000:]
    listing = tmp_path / "modules.txt"
    args = ["certify", "--max", "3", "--n", "100", "--device", "cpu", "--out", str(out)]
    result = subprocess.run([sys.executable, "-c", CERTIFY_PROBE.format(out=str(listing)), *args], cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    shown, *modules = listing.read_text().splitlines()
    assert eval(shown) == [(3, 2, "vit-mini σ=0.25 on fashion-mnist-mini", False)]  # 2 of 3 done, from the file
    assert "torch" in modules and "certkit.workflows.certify" in modules  # the listing is real
    assert not set(modules) & {"timm", "torchvision", "scipy.stats", "onnxruntime"}
