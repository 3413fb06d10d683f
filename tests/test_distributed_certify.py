"""`torchrun -m certkit certify` on 2 CPU ranks (gloo): the merged file equals a one-process
run, uneven splits neither drop nor repeat images, a killed distributed run resumes on another
number of processes, and `certkit report` reads the per-rank part files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from certkit.cli.main import build_app

# The shipped default model and data: subprocesses need no test plugin. 7 images: an uneven split.
ARGS = ["certify", "--max", "7", "--n0", "20", "--n", "300", "--batch", "100", "--device", "cpu", "--sigma", "0.5"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def certkit(*args: str, cwd: Path, ranks: int = 1, **popen) -> subprocess.CompletedProcess | subprocess.Popen:
    launcher = [sys.executable, "-m", "certkit"] if ranks == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks), "-m", "certkit", "--"]
    if popen:
        return subprocess.Popen([*launcher, *args], cwd=cwd, env=ENV, **popen)
    return subprocess.run([*launcher, *args], cwd=cwd, env=ENV, capture_output=True, text=True)


def rows(path: Path) -> list[list[str]]:
    """Every column but time, which is the only thing a rerun may change."""
    lines = [line.split("\t") for line in path.read_text().splitlines()]
    keep = [i for i, name in enumerate(lines[0]) if name != "time"]
    return [[fields[i] for i in keep] for fields in lines]


def descendants(pid: int) -> list[int]:
    """Child processes, grandchildren first (from /proc; Linux)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return [grandchild for child in children for grandchild in descendants(child)] + children


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("single")
    result = certkit(*ARGS, "--out", "one.tsv", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder / "one.tsv"


def test_two_ranks_merge_to_the_one_process_file(single, tmp_path):
    result = certkit(*ARGS, "--out", "two.tsv", cwd=tmp_path, ranks=2)
    assert result.returncode == 0, result.stderr[-3000:]
    assert rows(tmp_path / "two.tsv") == rows(single)
    assert [r[0] for r in rows(single)[1:]] == [str(i) for i in range(7)]  # all 7, once each, in order
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two.tsv", "two.tsv.meta.json"]  # parts merged and removed
    meta = json.loads((tmp_path / "two.tsv.meta.json").read_text())
    assert meta["world_size"] == 2 and meta["finished"]
    assert result.stdout.count("Certified accuracy") == 1  # only rank 0 prints the table


def test_killed_distributed_run_resumes_in_one_process(single, tmp_path):
    args = ["certify", "--max", "24", "--n0", "20", "--n", "1000", *ARGS[7:]]  # longer: 24 images
    whole = certkit(*args, "--out", "whole.tsv", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    launched = certkit(*args, "--out", "r.tsv", cwd=tmp_path, ranks=2, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill -9 every process once both ranks have written rows
        parts = [tmp_path / f"r.tsv.rank{rank}" for rank in (0, 1)]
        if all(p.exists() and len(p.read_text().splitlines()) >= 3 for p in parts):
            break
        time.sleep(0.05)
    for pid in (*descendants(launched.pid), launched.pid):  # torchrun puts its workers in their own sessions
        os.kill(pid, signal.SIGKILL)
    launched.wait()
    time.sleep(0.5)
    left = sum(len(p.read_text().splitlines()) - 1 for p in parts)
    assert 4 <= left < 24, left
    # The part files alone are a readable report (one curve)...
    report = CliRunner().invoke(build_app(), ["report", str(parts[0]), str(parts[1]), "--out-dir", str(tmp_path / "rep")], env={"COLUMNS": "200"})
    assert report.exit_code == 0, report.output
    table = (tmp_path / "rep" / "report.md").read_text().splitlines()
    assert f"| {left} |" in table[4] and table[5:6] in ([], [""])  # title, blank, header, rule, one row of `left` images (then footnotes)
    # ...and one process picks up where the two ranks were killed.
    resumed = certkit(*args, "--out", "r.tsv", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"({left} from an earlier run)" in " ".join(resumed.stdout.split())
    assert rows(tmp_path / "r.tsv") == rows(tmp_path / "whole.tsv")
    assert not list(tmp_path.glob("r.tsv.rank*"))
