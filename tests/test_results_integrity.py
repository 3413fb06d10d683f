"""Results integrity: one writer per results file (a lock the OS frees), repeated rows settled
the same way by report, resume and compare, and damaged rows dropped without losing good ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from certkit.cli.main import build_app
from certkit.errors import ResultsError
from certkit.results.lock import lock_path
from certkit.results.store import ResultsStore, repair
from tests_support import snapshot

FAST = ["--model", "tiny-cnn", "--sigma", "0.25", "--n0", "20", "--n", "300", "--max", "6", "--batch", "100"]

HOLDER = """
import sys
from certkit.results.lock import ResultsLock
lock = ResultsLock(sys.argv[1], "")
print("locked", flush=True)
sys.stdin.read()  # hold the lock until killed
"""


def invoke(*args: str):
    return CliRunner().invoke(build_app(), list(args), env={"COLUMNS": "200"})


def rows_without_time(path: Path) -> list[list[str]]:
    lines = path.read_text().splitlines()
    keep = [i for i, name in enumerate(lines[0].split("\t")) if name != "time"]
    return [[fields[i] for i in keep] for fields in (line.split("\t") for line in lines)]


def one_line(result) -> str:
    message = result.stderr.strip()
    assert message.startswith("error:") and len(message.splitlines()) == 1, message
    assert "Traceback" not in result.output
    return " ".join(message.split())


def retimed(rows: list[str]) -> list[str]:
    """The same rows as another run of the same configuration writes them: same results, other times."""
    out = []
    for row in rows:
        fields = row.rstrip("\n").split("\t")
        fields[5] = f"{float(fields[5]) + 1.5:.4f}"
        out.append("\t".join(fields) + "\n")
    return out


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --- the lock ----------------------------------------------------------------------------------


def test_a_run_on_a_locked_file_is_refused_naming_the_holder_and_a_kill_9_leaves_no_stale_lock(tiny_model, workdir):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, "r.tsv"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"  # the holder's state, not a timer
        refused = invoke("certify", *FAST, "--out", "r.tsv")
        assert refused.exit_code == 2, refused.output
        message = one_line(refused)
        assert f"r.tsv is being written by another certkit run (pid {holder.pid})" in message
        assert not (workdir / "r.tsv").exists()
    finally:
        holder.kill()  # SIGKILL: no chance to clean up
        holder.wait()
    assert lock_path(workdir / "r.tsv").exists()  # the file it leaves is no lock: the kernel freed it
    result = invoke("certify", *FAST, "--out", "r.tsv")
    assert result.exit_code == 0, result.output
    assert len(rows_without_time(workdir / "r.tsv")) == 7  # header + 6 images, once each
    assert not lock_path(workdir / "r.tsv").exists()  # a run that ends removes its lock file


def test_two_stores_on_one_file_in_one_process_conflict_too(tmp_path):
    first = ResultsStore.open(tmp_path / "x.tsv", {"kind": "certify"})
    try:
        with pytest.raises(ResultsError, match="being written by another certkit run"):
            ResultsStore.open(tmp_path / "x.tsv", {"kind": "certify"})
    finally:
        first.close()
    ResultsStore.open(tmp_path / "x.tsv", {"kind": "certify"}).close()  # released: open again


# --- repeated rows -----------------------------------------------------------------------------


def test_identical_repeats_count_once_in_report_and_resume_and_are_named(tiny_model, workdir):
    assert invoke("certify", *FAST, "--out", "full.tsv").exit_code == 0
    assert invoke("certify", *FAST, "--max", "3", "--out", "r.tsv").exit_code == 0
    header, *rows = Path("r.tsv").read_text().splitlines(keepends=True)
    Path("r.tsv").write_text(header + "".join(rows + retimed(rows)))  # two writers, before the lock

    report = invoke("report", "r.tsv", "--out-dir", "rep", "--radii", "0")
    assert report.exit_code == 0, report.output
    assert "3 repeated rows (images 0-2) had the same results as earlier rows" in " ".join(report.output.split())
    assert "| 3 |" in (workdir / "rep/report.md").read_text()  # 3 images, not 6

    resumed = invoke("certify", *FAST, "--out", "r.tsv")
    assert resumed.exit_code == 0, resumed.output
    assert "3 repeated rows" in " ".join(resumed.output.split()) and "3 of 6 images already" in resumed.output
    assert rows_without_time(workdir / "r.tsv") == rows_without_time(workdir / "full.tsv")


def test_conflicting_repeats_are_refused_naming_the_image_and_lines(tiny_model, workdir):
    assert invoke("certify", *FAST, "--max", "3", "--out", "r.tsv").exit_code == 0
    header, *rows = Path("r.tsv").read_text().splitlines(keepends=True)
    fields = rows[1].split("\t")
    fields[3] = "9.99"  # image 1 again, with another radius
    Path("r.tsv").write_text(header + "".join(rows) + "\t".join(fields))
    before = snapshot(workdir)
    for args in (["report", "r.tsv", "--out-dir", "rep"], ["certify", *FAST, "--out", "r.tsv"]):
        result = invoke(*args)
        assert result.exit_code == 2, result.output
        assert "r.tsv: image 1 has different results on lines 3 and 5" in one_line(result)
    assert snapshot(workdir) == before


def test_compare_counts_a_repeated_row_once_and_refuses_a_conflicting_one(tiny_model, workdir):
    args = ["--sigma", "0.25", "--n0", "20", "--n", "300", "--max", "3", "--batch", "100"]
    assert invoke("certify", "--model", "tiny-cnn", *args, "--out", "a.tsv").exit_code == 0
    for name in ("b.tsv", "c.tsv"):
        Path(name).write_text(Path("a.tsv").read_text())
        Path(name + ".meta.json").write_text(Path("a.tsv.meta.json").read_text())
    header, *rows = Path("b.tsv").read_text().splitlines(keepends=True)
    Path("b.tsv").write_text(header + "".join(rows + retimed(rows[:1])))
    fields = rows[0].split("\t")
    fields[2] = str((int(fields[2]) + 1) % 10)  # image 0 again, another prediction
    Path("c.tsv").write_text(header + "".join(rows) + "\t".join(fields))

    result = invoke("compare", "a.tsv", "b.tsv", *args, "--out-dir", "cmp")
    assert result.exit_code == 0, result.output
    assert "1 repeated row (images 0)" in " ".join(result.output.split())
    with open(workdir / "cmp/compare.csv") as handle:
        assert [line.split(",")[2] for line in handle.read().splitlines()[1:]] == ["3", "3"]  # images

    refused = invoke("compare", "a.tsv", "c.tsv", *args, "--out-dir", "cmp")
    assert refused.exit_code == 2
    assert "c.tsv: image 0 has different results on lines 2 and 5" in one_line(refused)


# --- damaged rows ------------------------------------------------------------------------------


def test_a_damaged_row_is_dropped_alone_with_a_backup_and_the_run_resumes(tiny_model, workdir):
    assert invoke("certify", *FAST, "--out", "full.tsv").exit_code == 0
    assert invoke("certify", *FAST, "--max", "4", "--out", "r.tsv").exit_code == 0
    header, *rows = Path("r.tsv").read_text().splitlines(keepends=True)
    damaged = header + "".join(rows[:2]) + "2\t1\tgarbage\n" + "".join(rows[2:])
    Path("r.tsv").write_text(damaged)

    refused = invoke("certify", *FAST, "--out", "r.tsv")
    assert refused.exit_code == 2
    message = one_line(refused)
    assert "r.tsv:4: expected 10 tab-separated fields, found 3" in message
    assert "certkit report --repair r.tsv" in message and "--overwrite" not in message  # it would throw away 4 good rows

    repaired = invoke("report", "--repair", "r.tsv", "--out-dir", "rep")
    assert repaired.exit_code == 0, repaired.output
    assert "r.tsv: dropped line 4 (expected 10 tab-separated fields, found 3); the original is in r.tsv.bak" in " ".join(repaired.output.split())
    assert Path("r.tsv.bak").read_text() == damaged
    assert Path("r.tsv").read_text() == header + "".join(rows)

    resumed = invoke("certify", *FAST, "--out", "r.tsv")
    assert resumed.exit_code == 0, resumed.output
    assert "4 of 6 images already" in resumed.output
    assert rows_without_time(workdir / "r.tsv") == rows_without_time(workdir / "full.tsv")


def test_repair_keeps_good_rows_of_any_layout_and_refuses_conflicts(tmp_path):
    cohen = tmp_path / "sigma_0.50"
    cohen.write_text("idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t1\t1\t0.5\t1\t0:00:01\n0\t1\t1\t0.5\t1\t0:00:02\nxx\n20\t3\t3\t0.2\t1\t0:00:01\n40\t2")
    done = repair(cohen)
    assert done.copies == 1 and [line for line, _ in done.dropped] == [4, 6]
    assert cohen.read_text().splitlines()[1:] == ["0\t1\t1\t0.5\t1\t0:00:01", "20\t3\t3\t0.2\t1\t0:00:01"]
    assert done.backup == tmp_path / "sigma_0.50.bak" and not repair(cohen).changed  # once is enough
    conflict = tmp_path / "c.tsv"
    conflict.write_text("idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t1\t1\t0.5\t1\t1\n0\t1\t2\t0.5\t0\t1\n")
    with pytest.raises(ResultsError, match="image 0 has different results on lines 2 and 3"):
        repair(conflict)
    assert not (tmp_path / "c.tsv.bak").exists()


def test_the_sidecar_and_rows_survive_a_refused_open(tiny_model, workdir):
    """A refusal (here: another configuration) writes nothing, lock file included."""
    assert invoke("certify", *FAST, "--max", "2", "--out", "r.tsv").exit_code == 0
    before = snapshot(workdir)
    assert invoke("certify", *FAST, "--max", "2", "--seed", "5", "--out", "r.tsv").exit_code == 2
    assert snapshot(workdir) == before
    assert json.loads(Path("r.tsv.meta.json").read_text())["seed"] == 0
