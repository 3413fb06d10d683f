"""Packaging: the distributions declare compatible ranges for torch and torchvision (an exact pin
would make pip replace a user's own build, e.g. one for their CUDA), while CI stays reproducible
through a constraints file that .ci/run applies to every pip call."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = sorted(path.parent.name for path in (ROOT / "plugins").glob("*/pyproject.toml"))
DISTRIBUTIONS = [ROOT / "pyproject.toml", *(ROOT / "plugins" / name / "pyproject.toml" for name in PLUGINS)]
CONSTRAINTS = ROOT / ".ci/constraints.txt"


def requirements(pyproject: Path) -> dict[str, Requirement]:
    found = [Requirement(text) for text in tomllib.loads(pyproject.read_text())["project"]["dependencies"]]
    return {requirement.name.lower(): requirement for requirement in found}


def pins() -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in CONSTRAINTS.read_text().splitlines()]
    return {name.lower(): version for name, version in (line.split("==") for line in lines if line)}


@pytest.mark.parametrize("pyproject", DISTRIBUTIONS, ids=["certkit", *PLUGINS])
def test_torch_is_a_range_that_the_ci_pins_satisfy(pyproject):
    declared = requirements(pyproject)
    pinned = pins()
    for name in ("torch", "torchvision"):
        if name not in declared:
            continue
        specifier = declared[name].specifier
        assert not any(spec.operator in ("==", "===", "~=") for spec in specifier), f"{pyproject}: {declared[name]} pins {name}"
        assert specifier.contains("99.0"), f"{pyproject}: {declared[name]} refuses newer releases"
        assert specifier.contains(pinned[name]), f"CI tests {name} {pinned[name]}, outside {declared[name]}"
    for name, requirement in declared.items():  # every CI pin is allowed by what the package declares
        if name in pinned:
            assert requirement.specifier.contains(pinned[name], prereleases=True), (pyproject, name, pinned[name])


def test_ci_applies_the_constraints_and_still_runs_the_readme_commands():
    script = (ROOT / ".ci/run").read_text()
    assert re.search(r'^export PIP_CONSTRAINT="\$PWD/\.ci/constraints\.txt"$', script, re.MULTILINE)
    assert script.index("PIP_CONSTRAINT") < script.index("python3 -m venv")  # before any pip call
    assert {"torch", "torchvision"} <= pins().keys()
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"^pip install \./ (\./plugins/\S+ )+&& certkit certify", readme, re.MULTILINE)
    assert "constraint" not in readme.split("<!-- /ci:test -->")[0]  # users type the plain commands
