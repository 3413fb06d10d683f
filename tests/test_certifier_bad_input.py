"""Bad input of the certifiers and of their benchmark (issue 13): each is one line on stderr naming
the problem and the fix, exit code 2, and leaves every file on disk as it was."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

from certkit.checkpoints import sha256_of
from certkit.models import find_checkpoint
from test_cli_certify import FAST, invoke, workdir  # noqa: F401  (workdir is a fixture)
from tests_support import snapshot

GOOD = "results/keep.tsv"
BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "certifiers.py"

CASES = {
    "unknown sequential option": (["--certifier", "sequential", "-O", "frist=500"], ("unknown option 'frist' of certifier 'sequential'", "Known options: bound, first, growth, final_share, stop_alpha")),
    "unknown horvath option": (["--certifier", "horvath", "-O", "radius=0.25", "-O", "step=10"], ("unknown option 'step' of certifier 'horvath'", "Known options: radius, steps, beta")),
    "horvath without a target radius": (["--certifier", "horvath"], ("certifier 'horvath' decides one target radius, and none was given", "Pass e.g. -O radius=0.5")),
    "cs-betting without a target radius": (["--certifier", "cs-betting"], ("certifier 'cs-betting' decides one target radius",)),
    "a grid N cannot reach": (["--certifier", "sequential", "--radii", "2,3"], ("no radius of the grid (2, 3) can be certified with n = 300", "the largest reachable radius is 0.4899", "Pass --radii with radii up to that, or a larger --n")),
    "a target radius N cannot reach": (["--certifier", "cs-union", "-O", "radius=2"], ("cs-union cannot certify radius 2 with n = 300", "the largest reachable radius is")),
    "a horvath radius its steps cannot reach": (["--certifier", "horvath", "-O", "radius=2", "-O", "steps=10,100"], ("horvath cannot certify radius 2 with steps 10,100", "the largest reachable radius is")),
    "a bad sequential bound": (["--certifier", "sequential", "-O", "bound=hoeffding"], ("bound 'hoeffding' of certifier 'sequential' is not one of cp, betting",)),
}


@pytest.mark.parametrize("name", CASES)
def test_certifier_bad_input_is_one_line_exit_2_and_touches_nothing(tiny_model, workdir, name):
    args, expected = CASES[name]
    assert invoke("certify", *FAST, "--max", "2", "--out", GOOD).exit_code == 0
    before = snapshot(workdir)
    result = invoke("certify", *FAST, *args, "--out", GOOD)
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert message.startswith("error:") and len(message.splitlines()) == 1, message
    for fragment in expected:
        assert fragment in message, (fragment, message)
    assert snapshot(workdir) == before


def run_benchmark(*args: str) -> tuple[int, str]:
    """benchmarks/certifiers.py in this process; (exit code, stderr)."""
    import contextlib
    import io

    saved, error = sys.argv, io.StringIO()
    sys.argv = [str(BENCHMARK), *args]
    try:
        with contextlib.redirect_stderr(error):
            runpy.run_path(str(BENCHMARK), run_name="__main__")
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    finally:
        sys.argv = saved
    return code, error.getvalue()


def cache(tmp_path: Path, **entry) -> Path:
    """A replay cache holding one vit-mini entry at sigma 0.25 (with the shipped checkpoint's hash), changed by ``entry``."""
    checkpoint = find_checkpoint("vit-mini", 0.25, None, None)
    source = {"model": "vit-mini", "sigma": 0.25, "checkpoint": checkpoint.name, "checkpoint_sha256": sha256_of(checkpoint),
              "n": 10, "indices": [0], "labels": [1], "counts": [[0, 10, 0, 0, 0, 0, 0, 0, 0, 0]], **entry}
    path = tmp_path / "replay.json"
    path.write_text(json.dumps({"format": 1, "sources": [source]}))
    return path


@pytest.mark.parametrize("change,args,expected", [
    ({}, ["--sigma", "0.5"], "holds vit-mini sigma 0.25, not vit-mini at sigma 0.5"),
    ({"model": "vit-b"}, ["--sigma", "0.25"], "holds vit-b sigma 0.25, not vit-mini at sigma 0.25"),
    ({"checkpoint": "old.safetensors", "checkpoint_sha256": "0" * 64}, ["--sigma", "0.25"], "was measured with checkpoint old.safetensors (sha256 000000000000), not vit-mini-sigma0.25.safetensors"),
])
def test_a_replay_cache_for_another_model_sigma_or_checkpoint_is_refused(tmp_path, change, args, expected):
    path = cache(tmp_path, **change)
    before = path.read_bytes()
    code, stderr = run_benchmark("run", "--cache", str(path), *args)
    assert code == 2
    assert stderr.startswith("error:") and len(stderr.strip().splitlines()) == 1 and expected in stderr, stderr
    assert "python benchmarks/certifiers.py measure" in stderr and path.read_bytes() == before


def test_a_missing_replay_cache_is_refused(tmp_path):
    code, stderr = run_benchmark("run", "--cache", str(tmp_path / "none.json"), "--sigma", "0.25")
    assert code == 2 and "does not exist" in stderr and len(stderr.strip().splitlines()) == 1
