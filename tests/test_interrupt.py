"""Ctrl-C (a real SIGINT) during certify, predict and compare: one line on stderr saying how many
images are saved and the exact command that resumes, exit status 130, and that command resumes."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_cli_certify import KILL_DRIVER, rows_without_time

from certkit.cli.interrupt import images_saved, resume_command
from certkit.cli.options import record_command_line

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
IMAGES = 12
TINY = ["--model", "tiny-cnn", "--sigma", "0.25", "--n", "4000", "--max", str(IMAGES), "--batch", "250", "--seed", "5", "--device", "cpu"]


def driver(tmp_path: Path, checkpoint: Path) -> Path:
    """A script that runs the CLI with the tiny test model registered: it stands for ``certkit``."""
    script = tmp_path / "driver.py"
    script.write_text(KILL_DRIVER.format(tests=str(Path(__file__).parent), checkpoint=str(checkpoint)))
    return script


def start(script: Path, args: list[str], cwd: Path) -> subprocess.Popen:
    # A shell that starts a job in the background makes it ignore SIGINT, and the ignore is
    # inherited; the command under test must get Ctrl-C the way a terminal delivers it.
    return subprocess.Popen(
        [sys.executable, str(script), *args], cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def complete_rows(path: Path) -> int:
    return path.read_bytes().count(b"\n") - 1 if path.exists() else -1


def interrupt_after_rows(process: subprocess.Popen, files, rows: int) -> tuple[str, str]:
    """SIGINT once one of ``files()`` has ``rows`` complete rows on disk (a state, not a time);
    then the process's stdout and stderr."""
    while not any(complete_rows(path) >= rows for path in files()):
        if process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"ended before it was interrupted ({process.returncode}):\n{out[-2000:]}\n{err[-2000:]}")
        time.sleep(0.02)  # polling interval only: the condition above is what the test waits for
    process.send_signal(signal.SIGINT)
    return process.communicate()


def the_one_line(stderr: str) -> tuple[int, Path, list[str]]:
    """(images saved, file, command) from ``interrupted: N images are saved in F; resume with: C``."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    found = re.fullmatch(r"interrupted: (\d+) images? (?:is|are) saved in (.+); resume with: (.+)", lines[0])
    assert found, lines[0]
    return int(found[1]), Path(found[2]), shlex.split(found[3])


def test_ctrl_c_during_certify_says_what_is_saved_and_its_command_resumes(tiny_model, tmp_path):
    script = driver(tmp_path, tiny_model)
    args = ["certify", *TINY, "--n0", "50", "--overwrite", "--out", "r.tsv"]
    process = start(script, args, tmp_path)
    out, err = interrupt_after_rows(process, lambda: [tmp_path / "r.tsv"], rows=2)
    assert process.returncode == 130, err
    count, where, command = the_one_line(err)
    assert where == Path("r.tsv") and count == complete_rows(tmp_path / "r.tsv") and 2 <= count < IMAGES
    assert command[1:] == [a for a in args if a != "--overwrite"]  # as typed, minus what would discard the rows

    resumed = subprocess.run([sys.executable, str(script), *command[1:]], cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming: {count} of {IMAGES} images already in the results file" in resumed.stdout
    assert [row[0] for row in rows_without_time(tmp_path / "r.tsv")[1:]] == [str(i) for i in range(IMAGES)]


def test_ctrl_c_during_predict(tiny_model, tmp_path):
    args = ["predict", *TINY, "--out", "p.tsv"]
    process = start(driver(tmp_path, tiny_model), args, tmp_path)
    _, err = interrupt_after_rows(process, lambda: [tmp_path / "p.tsv"], rows=1)
    assert process.returncode == 130, err
    count, where, command = the_one_line(err)
    assert where == Path("p.tsv") and count == complete_rows(tmp_path / "p.tsv") >= 1
    assert command[1:] == args


def test_ctrl_c_during_compare(tiny_model, tmp_path):
    args = ["compare", "first:tiny-cnn", "second:tiny-cnn", "--sigma", "0.25", "--n0", "50", "--n", "4000", "--max", str(IMAGES), "--batch", "250", "--device", "cpu", "--out-dir", "cmp"]
    process = start(driver(tmp_path, tiny_model), args, tmp_path)
    _, err = interrupt_after_rows(process, lambda: list((tmp_path / "cmp").glob("*.tsv")), rows=1)
    assert process.returncode == 130, err
    count, where, command = the_one_line(err)
    assert where.parent == Path("cmp") and count == complete_rows(tmp_path / where) >= 1
    assert command[1:] == args


def test_resume_command_drops_overwrite_and_quotes_for_the_shell(tmp_path):
    record_command_line("certkit", ["certify", "--out", "my results.tsv", "--overwrite", "--max", "6"])
    try:
        assert resume_command() == "certkit certify --out 'my results.tsv' --max 6"
    finally:
        record_command_line("certkit", [])
    assert images_saved(tmp_path / "none.tsv") == "no image is saved yet"
    results = tmp_path / "r.tsv"
    results.write_text("idx\tlabel\n0\t1\n1\t1\n2\t")  # a partial last line is not saved
    (tmp_path / "r.tsv.rank1").write_text("idx\tlabel\n5\t1\n1\t1\n")  # a part file of a distributed run
    assert images_saved(results) == f"3 images are saved in {results}"
