"""`certkit plugin new`: the generated distribution installs, shows up, and passes its own tests."""

from __future__ import annotations

import importlib.util
import os
import site
import subprocess
import sys
import tomllib
from pathlib import Path

from typer.testing import CliRunner

from certkit.cli.main import build_app
from tests_support import snapshot


def invoke(*args: str):
    return CliRunner().invoke(build_app(), list(args), env={"COLUMNS": "200"})


def test_plugin_new_writes_a_distribution(tmp_path):
    result = invoke("plugin", "new", "my-noise", "--dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    root = tmp_path / "certkit-my-noise"
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == ["README.md", "pyproject.toml", "src/certkit_my_noise/__init__.py", "src/certkit_my_noise/plugin.py", "tests/test_plugin.py"]
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["name"] == "certkit-my-noise"
    assert project["project"]["entry-points"]["certkit"] == {"my-noise": "certkit_my_noise.plugin"}
    plugin = (root / "src/certkit_my_noise/plugin.py").read_text()
    assert 'register("my-noise-cnn"' in plugin and 'register("my-noise-salt-pepper"' in plugin and "$" not in plugin
    compile(plugin, "plugin.py", "exec")
    compile((root / "tests/test_plugin.py").read_text(), "test_plugin.py", "exec")


def test_plugin_new_refuses_an_existing_folder_and_bad_names(tmp_path):
    assert invoke("plugin", "new", "demo", "--dir", str(tmp_path)).exit_code == 0
    (tmp_path / "certkit-demo/README.md").write_text("mine")
    before = snapshot(tmp_path)
    again = invoke("plugin", "new", "demo", "--dir", str(tmp_path))
    assert again.exit_code == 2 and "certkit-demo already exists" in again.stderr and "nothing was written" in again.stderr
    assert snapshot(tmp_path) == before
    for bad in ("Demo", "1demo", "my plugin", "demo.x"):
        result = invoke("plugin", "new", bad, "--dir", str(tmp_path))
        assert result.exit_code == 2 and "is not a valid plugin name" in result.stderr, bad
    taken = invoke("plugin", "new", "dmae", "--dir", str(tmp_path))
    assert taken.exit_code == 2 and "a plugin named 'dmae' is already installed" in taken.stderr
    assert snapshot(tmp_path) == before


def test_generated_plugin_installs_shows_up_and_passes_its_own_tests(tmp_path):
    """End to end, without touching the running environment: a throwaway venv that sees this
    environment's packages through a .pth file, the plugin pip-installed into it, offline."""
    assert invoke("plugin", "new", "demo", "--dir", str(tmp_path)).exit_code == 0
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], check=True, capture_output=True, text=True).stdout.strip()
    # addsitedir (not a plain path line) also runs this environment's .pth files: editable installs.
    parents = "".join(f"site.addsitedir({path!r}); " for path in site.getsitepackages())
    Path(purelib, "certkit-parent-env.pth").write_text(f"import site; {parents}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTKIT_")} | {"OMP_NUM_THREADS": "1", "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    if not isolation:
        env.pop("PIP_NO_INDEX")  # no setuptools here: pip fetches it for the build
    install = subprocess.run([python, "-m", "pip", "install", "--no-deps", *isolation, str(tmp_path / "certkit-demo")], env=env, capture_output=True, text=True)
    assert install.returncode == 0, install.stdout + install.stderr

    listed = subprocess.run([python, "-m", "certkit", "plugins"], env={**env, "COLUMNS": "200"}, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert "demo" in listed.stdout and "model: demo-cnn" in listed.stdout and "corruption: demo-salt-pepper" in listed.stdout
    assert importlib.util.find_spec("certkit_demo") is None  # the running environment is untouched

    tests = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=tmp_path / "certkit-demo", env=env, capture_output=True, text=True)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "4 passed" in tests.stdout
