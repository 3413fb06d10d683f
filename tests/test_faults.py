"""Fault injection: kill -9 certification 20 times and pretraining 5 times at random moments,
resume each time, and get exactly what an uninterrupted run gets (no lost or duplicated rows).

Each kill has a window bounded by file states, not by the clock: it comes a random delay after
one state (e.g. "the results file has 12 rows"), and at the latest when the next state is
reached ("13 rows"), so where kills land does not depend on the machine's speed or load.

Every run is a real process killed with SIGKILL. A fresh interpreter spends seconds importing
torch, so the runs are forked from a small server process that has imported certkit once (and
registered the tiny test model); a forked run starts at the command itself. The reference runs
go through the same server, so both sides start from the same state. Imports write nothing, so
a kill during them could not lose anything; every moment from the command's first line to its
exit is covered. The runs use the CPU (a forked process must not inherit a CUDA context).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from conftest import make_tiny_checkpoint
from test_cli_certify import rows_without_time

SERVER = r"""
import json, os, signal, sys, time, traceback
sys.path.insert(0, {tests!r})
from conftest import TinyPlugin
from certkit import plugins
from certkit.cli.main import build_app, run
plugins.host().register_plugin(TinyPlugin({checkpoint!r}), name="test-tiny")
build_app()  # loads every plugin and command module once, before any fork
# ... and the modules the commands import when they run, so every forked run starts at its first line
import certkit.cli.certify_cmd, certkit.cli.train_cmd, certkit.cli.progress, certkit.config, certkit.results.report  # noqa: E401
import certkit.workflows.certify, certkit.workflows.train  # noqa: E401

def lines_in(path):
    try:
        with open(path, "rb") as handle:
            return handle.read().count(b"\n")
    except FileNotFoundError:
        return -1

def identity(path):
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return (found.st_ino, found.st_mtime_ns, found.st_size)

class State:
    # A file state: "lines": it has at least that many newlines; "replaced": it was created or
    # replaced (atomic rename) at least that many times since the run started.
    def __init__(self, cwd, spec):
        self.path, self.lines, self.replaced = os.path.join(cwd, spec["file"]), spec.get("lines"), spec.get("replaced")
        self.last, self.changes = identity(self.path), 0

    def reached(self):
        if self.lines is not None:
            return lines_in(self.path) >= self.lines
        current = identity(self.path)
        if current is not None and current != self.last:
            self.changes += 1
        self.last = current
        return self.changes >= self.replaced

print("ready", flush=True)
for request in sys.stdin:
    request = json.loads(request)
    cwd = request["cwd"]
    watch = os.path.join(cwd, request["watch"]) if request.get("watch") else None
    sys.stdout.flush(); sys.stderr.flush()
    after = State(cwd, request["after"]) if request.get("after") else None
    before = State(cwd, request["before"]) if request.get("before") else None
    began = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the run: output to its log, exit status as the CLI's
        code = 1
        try:
            os.chdir(cwd)
            log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(log, 1); os.dup2(log, 2); os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            try:
                run(request["argv"]); code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush(); sys.stderr.flush()
            os._exit(code)
    # Watch the run (our unreaped child, so the pid is still its) and SIGKILL it inside its
    # window: `delay` seconds after state `after`, but never later than state `before`.
    kill_requested = request.get("delay") is not None or before is not None
    seen, line_times, kill_at, status, how = lines_in(watch) if watch else -1, [], None, None, None
    while status is None:
        done, raw = os.waitpid(pid, os.WNOHANG)
        now = time.monotonic()
        if done:
            status = raw
            break
        if watch:
            count = lines_in(watch)
            if count != seen:
                seen = count
                line_times.append([count, round(now - began, 3)])
        if kill_requested and kill_at is None and (after is None or after.reached()):
            kill_at = now + (request.get("delay") or 0.0)
        if before is not None and before.reached():
            how = "at the window's end"
        elif kill_at is not None and now >= kill_at:
            how = "after the delay"
        elif now - began > request.get("timeout", 1800):  # a hung run fails the test, it is not a kill moment
            how = "timeout"
        if how:
            os.kill(pid, signal.SIGKILL)
            status = os.waitpid(pid, 0)[1]
            break
        time.sleep(0.002)  # polling interval; every kill waits for a file state
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    code = None if killed else os.waitstatus_to_exitcode(status)
    print(json.dumps({{"killed": killed, "how": how, "code": code, "seconds": time.monotonic() - began, "line_times": line_times}}), flush=True)
"""


class ForkServer:
    """Runs ``certkit`` commands as forked processes and SIGKILLs them when asked."""

    def __init__(self, workdir: Path, checkpoint: Path) -> None:
        script = workdir / "fork_server.py"
        script.write_text(SERVER.format(tests=str(Path(__file__).parent), checkpoint=str(checkpoint)))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
        self.process = subprocess.Popen([sys.executable, str(script)], cwd=workdir, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "ready"
        self.attempt = 0

    def run(self, argv: list[str], watch: str | None = None, after: dict | None = None, delay: float | None = None, before: dict | None = None) -> dict:
        """Run ``certkit *argv`` in the current directory. Without ``delay`` and ``before`` it runs
        to its end. Otherwise it is SIGKILLed ``delay`` s after the file state ``after`` (from
        its start when None), and at the latest when the file state ``before`` is reached; a
        state is ``{"file": F, "lines": n}`` (F has n newlines) or ``{"file": F, "replaced": n}``
        (F was created or atomically replaced n times during this run). Answers ``killed``,
        ``how``, ``code`` (exit code unless killed), ``seconds`` and ``line_times`` (``[lines in
        watch, seconds]`` at each change seen)."""
        self.attempt += 1
        request = {"argv": argv, "cwd": os.getcwd(), "log": f"attempt-{self.attempt:02d}.log", "watch": watch, "after": after, "delay": delay, "before": before}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        assert answer, "the fork server died"
        result = {**json.loads(answer), "log": request["log"]}
        assert result["how"] != "timeout", Path(result["log"]).read_text()[-3000:]
        return result

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


@pytest.fixture(scope="module")
def fork_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("fork-server")
    forks = ForkServer(root, make_tiny_checkpoint(root / "tiny.safetensors"))
    try:
        yield forks
    finally:
        forks.close()


@pytest.fixture
def server(fork_server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return fork_server


def lines_of(path: Path) -> int:
    """Complete lines in ``path``; -1 when it does not exist."""
    return path.read_bytes().count(b"\n") if path.exists() else -1


def rows_in(results: Path) -> int:
    """Complete rows in a results file; -1 when it does not exist."""
    return lines_of(results) - 1 if results.exists() else -1


def landing(moment: dict, total: int) -> str:
    before, after = moment["rows_before"], moment["rows_after"]
    if not moment["killed"]:
        return "ran to the end"
    if after < 0:
        return "before the file existed"
    if after == total:
        return "after the last row"
    return "mid-run" if after > max(before, 0) else "before a new row"


def finished(result: dict) -> None:
    assert not result["killed"] and result["code"] == 0, Path(result["log"]).read_text()[-3000:]


def check_resumable(result: dict) -> None:
    """A run that ended before its kill must have succeeded (a failing resume shows up here)."""
    if not result["killed"]:
        finished(result)


# --- certification ------------------------------------------------------------------------------

IMAGES = 40
CERTIFY = ["certify", "--model", "tiny-cnn", "--sigma", "0.25", "--n0", "50", "--n", "4000", "--max", str(IMAGES), "--batch", "250", "--seed", "11", "--device", "cpu", "--out"]


def rows_state(rows: int) -> dict:
    """The state "killed.tsv has ``rows`` complete rows" (its header is one more line)."""
    return {"file": "killed.tsv", "lines": rows + 1}


def test_certify_killed_20_times_equals_the_uninterrupted_run(server, tmp_path):
    reference = server.run([*CERTIFY, "whole.tsv"], watch="whole.tsv")
    finished(reference)
    print(f"\nreference run: {reference['seconds']:.2f} s, (lines, s): {reference['line_times']}")
    # The reference's pace only sets the scale of the random delays; where each kill may land is
    # fixed by file states (its window), whatever the machine's speed or load.
    first_row = next(t for lines, t in reference["line_times"] if lines >= 2)
    last_row = next(t for lines, t in reference["line_times"] if lines >= IMAGES + 1)
    per_image = (last_row - first_row) / (IMAGES - 1)
    tail = max(reference["seconds"] - last_row, 0.01)

    rng = random.Random(20)
    killed_file = tmp_path / "killed.tsv"
    moments: list[dict] = []
    for kill in range(20):
        rows_before = rows_in(killed_file)
        done = max(rows_before, 0)
        if kill in (0, 1) or (2 <= kill < 18 and rng.random() < 0.3):  # start-up or resume, before a new row
            how, lowest, window = "start-up", rows_before, {"delay": rng.uniform(0, first_row), "before": rows_state(done + 1)}
        elif kill < 18:  # inside the 1st to 3rd image from now, never the last ones (those are kill 18's)
            target = min(done + rng.randint(1, 3), IMAGES - 3)
            how, lowest, window = "mid-run", target, {"after": rows_state(target), "delay": rng.uniform(0, per_image), "before": rows_state(target + 1)}
        elif kill == 18:  # in the last image
            how, lowest, window = "last image", IMAGES - 1, {"after": rows_state(IMAGES - 1), "delay": rng.uniform(0, per_image), "before": rows_state(IMAGES)}
        else:  # after the last row: sorting, closing, printing (the run may end first)
            how, lowest, window = "after the last row", IMAGES, {"after": rows_state(IMAGES), "delay": rng.uniform(0, tail / 2)}
        result = server.run([*CERTIFY, "killed.tsv"], watch="killed.tsv", **window)
        check_resumable(result)
        moments.append({"chosen": how, "lowest": lowest, "rows_before": rows_before, "rows_after": rows_in(killed_file), "killed": result["killed"], "how": result["how"]})
    finished(server.run([*CERTIFY, "killed.tsv"]))

    landed = Counter(landing(m, IMAGES) for m in moments)
    print(f"kill moments ({len(moments)}), where they landed: {dict(landed)}")
    for m in moments:
        print(f"  chosen {m['chosen']:18s} rows {m['rows_before']:3d} -> {m['rows_after']:3d}  {landing(m, IMAGES)} ({m['how']})")

    whole, resumed = rows_without_time(tmp_path / "whole.tsv"), rows_without_time(tmp_path / "killed.tsv")
    indices = [row[0] for row in resumed[1:]]
    assert [i for i, n in Counter(indices).items() if n > 1] == [], "duplicated rows"
    assert sorted(map(int, indices)) == list(range(IMAGES)), "lost rows"
    assert resumed == whole
    meta = json.loads((tmp_path / "killed.tsv.meta.json").read_text())
    reference_meta = json.loads((tmp_path / "whole.tsv.meta.json").read_text())
    for key in ("kind", "model", "checkpoint_sha256", "sigma", "n0", "n", "alpha", "seed", "dataset", "precision"):
        assert meta[key] == reference_meta[key], key
    assert meta["finished"] and len(meta["resumed"]) >= 1
    # Not vacuous: every kill but the last landed inside its window, most of them with new rows
    # on disk and the file part-written.
    assert all(m["killed"] for m in moments[:19]), moments
    assert all(m["rows_after"] >= m["lowest"] for m in moments if m["killed"]), moments
    after_new_rows = [m for m in moments if m["chosen"] == "mid-run" and max(m["rows_before"], 0) < m["lowest"]]  # windows that open on a new row
    assert len(after_new_rows) >= 8 and all(landing(m, IMAGES) == "mid-run" for m in after_new_rows), moments
    assert sum(1 for m in moments if m["killed"] and 0 < m["rows_after"] < IMAGES) >= 10, moments


# --- pretraining --------------------------------------------------------------------------------

EPOCHS = 8
PRETRAIN = ["pretrain", "dmae", "--max", "384", "--batch", "32", "--blr", "1.5e-3", "--warmup-epochs", "1", "--save-every", "2", "--seed", "3", "--device", "cpu", "--epochs", str(EPOCHS), "--out-dir"]


def committed_epochs(run: Path) -> int:
    last = run / "checkpoint-last.pth"
    return torch.load(last, weights_only=True)["epoch"] + 1 if last.exists() else 0


def test_pretrain_killed_5_times_equals_the_uninterrupted_run(server, tmp_path):
    from safetensors.torch import load_file

    reference = server.run([*PRETRAIN, "whole"], watch="whole/log.jsonl")
    finished(reference)
    print(f"\nreference run: {reference['seconds']:.2f} s, (lines, s): {reference['line_times']}")
    # As for certification, the reference's pace only scales the random delays.
    epoch_ends = [t for lines, t in reference["line_times"] if lines >= 1]
    epoch = (epoch_ends[-1] - epoch_ends[0]) / (len(epoch_ends) - 1)
    startup = max(epoch_ends[0] - epoch, 0.0)

    # Two of the five kills come after a commit of this run (so it resumes from a checkpoint), the
    # others before its first commit: at most 2 x 2 + 3 x 1 = 7 epochs commit, so every kill lands
    # before the run's end, whatever the machine's speed or load.
    rng = random.Random(5)
    after_a_commit = set(rng.sample(range(5), 2))
    commits = "killed/checkpoint-last.pth"  # replaced atomically at each epoch's end: the commit point
    log = tmp_path / "killed/log.jsonl"
    moments = []
    for kill in range(5):
        done = committed_epochs(tmp_path / "killed")
        if kill in after_a_commit:  # after this run's first commit, before its second
            how, window, allowed = "after a commit", {"after": {"file": commits, "replaced": 1}, "delay": rng.uniform(0, epoch), "before": {"file": commits, "replaced": 2}}, (done + 1, done + 2)
        else:  # in start-up (or resume), or in the first epoch it runs
            how, window, allowed = "from start", {"delay": rng.uniform(0, startup + epoch), "before": {"file": commits, "replaced": 1}}, (done, done + 1)
        result = server.run([*PRETRAIN, "killed"], watch="killed/log.jsonl", **window)
        check_resumable(result)
        moments.append({"chosen": how, "delay_s": round(window["delay"], 2), "epochs_before": done, "allowed": allowed, "epochs_after": committed_epochs(tmp_path / "killed"), "log_lines": max(lines_of(log), 0), "killed": result["killed"], "how": result["how"]})
    finished(server.run([*PRETRAIN, "killed"]))
    print("pretrain kills:", *moments, sep="\n  ")

    whole, resumed = load_file(tmp_path / "whole/weights.safetensors"), load_file(tmp_path / "killed/weights.safetensors")
    assert whole.keys() == resumed.keys()
    for key in whole:
        assert torch.equal(resumed[key], whole[key]), key
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["epoch"] for e in entries] == list(range(1, EPOCHS + 1))
    assert [e["loss"] for e in entries] == [json.loads(line)["loss"] for line in (tmp_path / "whole/log.jsonl").read_text().splitlines()]
    names = sorted(p.name for p in (tmp_path / "killed").iterdir())
    print("files:", names)
    assert [n for n in names if not n.startswith(".")] == sorted(p.name for p in (tmp_path / "whole").iterdir())
    for name, last_epoch in (("checkpoint-0002.pth", 1), ("checkpoint-0004.pth", 3), ("checkpoint-0006.pth", 5), ("checkpoint-0008.pth", 7), ("checkpoint-last.pth", 7)):
        state = torch.load(tmp_path / "killed" / name, weights_only=True)  # whole and loadable
        assert state["epoch"] == last_epoch
        for key, tensor in torch.load(tmp_path / "whole" / name, weights_only=True)["model"].items():
            assert torch.equal(state["model"][key], tensor), (name, key)
    assert all(m["killed"] and m["allowed"][0] <= m["epochs_after"] <= m["allowed"][1] < EPOCHS for m in moments), moments
    assert sum(1 for m in moments if m["epochs_after"] > m["epochs_before"]) >= 2, moments  # resumed from a checkpoint


@pytest.mark.parametrize("moment", ["before", "after"])
def test_kill_at_the_epoch_commit_point_loses_and_repeats_no_log_line(tiny_model, tmp_path, monkeypatch, moment):
    """The instant random kills almost never hit: just before or just after an epoch's
    checkpoint-last.pth replaces the previous one (a kill there once lost that epoch's log line)."""
    import certkit.training.trainer as trainer
    from certkit.training import TrainSettings
    from certkit.workflows.train import DataRequest, FinetuneOptions, run_finetune

    def settings(out: str) -> TrainSettings:
        return TrainSettings(out_dir=tmp_path / out, epochs=3, batch_size=32, blr=1e-3, warmup_epochs=1, device="cpu", seed=5)

    data, options = DataRequest("fashion-mnist-mini", max=128), FinetuneOptions(sigma=0.25, drop_path=0.0)
    run_finetune("tiny-cnn", data, settings("whole"), options, {})
    save = trainer.save_atomic

    def save_then_die(state, path):
        if path.name == "checkpoint-last.pth" and state["epoch"] == 1:
            if moment == "after":
                save(state, path)
            raise KeyboardInterrupt  # as kill -9: the run goes no further
        save(state, path)

    monkeypatch.setattr(trainer, "save_atomic", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_finetune("tiny-cnn", data, settings("killed"), options, {})
    monkeypatch.setattr(trainer, "save_atomic", save)
    run_finetune("tiny-cnn", data, settings("killed"), options, {})
    logs = [[json.loads(line) for line in (tmp_path / run / "log.jsonl").read_text().splitlines()] for run in ("whole", "killed")]
    assert [e["epoch"] for e in logs[1]] == [1, 2, 3]
    assert [e["loss"] for e in logs[1]] == [e["loss"] for e in logs[0]]
    whole = torch.load(tmp_path / "whole/checkpoint-last.pth", weights_only=True)["model"]
    killed = torch.load(tmp_path / "killed/checkpoint-last.pth", weights_only=True)["model"]
    assert all(torch.equal(killed[key], whole[key]) for key in whole)
