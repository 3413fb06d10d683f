"""Bad input, swept as a table: every case is one line on stderr naming the problem and the
fix, exit code 2, no traceback, and every file already on disk left byte-identical.

This extends ``BAD_INPUTS`` in test_cli_certify.py (names, sigma/n checks, malformed YAML,
checkpoint shapes, image size) with YAML, data directory, checkpoint, results-file and CLI
cases. Each case builds its bad input under the test's working directory; a good results
file is made first, so a refused command visibly leaves an earlier run alone. Payload cases
(a YAML tag, a pickled checkpoint, a pickled CIFAR batch) also assert that the file their
code would create does not exist, and ``test_the_payloads_are_real`` shows that it would.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from certkit import plugins
from certkit.checkpoints import write_weights
from conftest import make_tiny_checkpoint
from test_cli_certify import FAST, invoke, workdir  # noqa: F401  (workdir is a fixture)
from test_data import _Payload, _fake_cifar, _fake_fmnist
from tests_support import snapshot

GOOD = "results/keep.tsv"  # the earlier run every bad command must leave alone
MARKER = "pwned"  # what a payload would create in the working directory


@dataclass(frozen=True)
class Case:
    name: str
    setup: Callable[[Path], list[str]]  # builds the bad input under the work dir; returns the command
    expected: tuple[str, ...]  # fragments that name the problem and the fix
    damage: Callable[[Path], None] | None = None  # results-file cases: runs after GOOD exists
    marks: tuple[Any, ...] = ()


# --- building bad input -------------------------------------------------------------------


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def yaml_file(d: Path, text: str) -> list[str]:
    return ["certify", *FAST, "--config", str(write(d / "c.yaml", text))]


def certify_with(*args: str) -> Callable[[Path], list[str]]:
    return lambda d: ["certify", *FAST, *args]


def empty_fashion_mnist_dir(d: Path) -> list[str]:
    (d / "empty").mkdir()
    return ["certify", *FAST, "--data", "fashion-mnist", "--data-path", str(d / "empty")]


def image_folder(d: Path, files: dict[str, bytes]) -> list[str]:
    """``--data DIR`` for a folder holding ``files`` (relative path -> content)."""
    root = d / "images"
    root.mkdir()
    for name, content in files.items():
        write(root / name, content)
    return ["certify", *FAST, "--data", str(root)]


def idx_dir(d: Path, damage: Callable[[Path], None]) -> list[str]:
    """A valid Fashion-MNIST IDX directory (raw files), then ``damage`` applied to it."""
    root = d / "fmnist"
    _fake_fmnist(root, gz=False)
    damage(root)
    return ["certify", *FAST, "--data", "fashion-mnist", "--data-path", str(root)]


def cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def idx_32x32(root: Path) -> None:
    """Well-formed IDX images of the wrong size (what a CIFAR-to-IDX conversion gives)."""
    images = root / "t10k-images-idx3-ubyte"
    count = int.from_bytes(images.read_bytes()[4:8], "big")
    header = bytes.fromhex("00000803") + b"".join(v.to_bytes(4, "big") for v in (count, 32, 32))
    images.write_bytes(header + bytes(count * 32 * 32))


def checkpoint(d: Path, name: str, content: bytes) -> list[str]:
    return ["certify", *FAST, "--checkpoint", str(write(d / name, content))]


def truncated_checkpoint(d: Path) -> list[str]:
    path = make_tiny_checkpoint(d / "tiny.safetensors")
    cut_in_half(path)
    return ["certify", *FAST, "--checkpoint", str(path)]


def other_model(name: str) -> torch.nn.Module:
    return plugins.get("models", name).obj()


def other_model_safetensors(d: Path) -> list[str]:
    """A valid certkit file, written for the gaussian plugin's cnn-mini."""
    model = other_model("cnn-mini")
    path = d / "cnn-mini.safetensors"
    write_weights(path, model, "cnn-mini", model.input_spec)
    return ["certify", *FAST, "--checkpoint", str(path)]


def other_model_pth(d: Path) -> list[str]:
    """A plain state dict of another architecture: no metadata says which model it is."""
    path = d / "cnn-mini.pth"
    torch.save(other_model("cnn-mini").state_dict(), path)
    return ["certify", *FAST, "--checkpoint", str(path)]


class CreatesAFile:
    """Unpickling this opens ``target`` for writing, i.e. creates it: code run from a file."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def malicious_pth(path: Path, marker: Path) -> Path:
    torch.save({"model": {"w": torch.zeros(1)}, "args": CreatesAFile(marker)}, path)
    return path


def malicious_checkpoint(d: Path) -> list[str]:
    return ["certify", *FAST, "--checkpoint", str(malicious_pth(d / "evil.pth", d / MARKER))]


def malicious_cifar(d: Path) -> list[str]:
    batches = _fake_cifar(d / "cifar")
    evil = {b"data": _Payload(d / MARKER), b"labels": [0]}
    (batches / "test_batch").write_bytes(pickle.dumps(evil, protocol=2))
    return ["certify", *FAST, "--data", "cifar10", "--data-path", str(batches)]


def yaml_payload(marker: Path) -> str:
    return f'certify: !!python/object/apply:os.system ["touch {marker}"]\n'


def edit_results(change: Callable[[bytes], bytes], path: str = GOOD) -> Callable[[Path], None]:
    def damage(d: Path) -> None:
        target = d / path
        target.write_bytes(change(target.read_bytes()))

    return damage


def insert_after_header(line: bytes) -> Callable[[bytes], bytes]:
    def change(data: bytes) -> bytes:
        header, _, rows = data.partition(b"\n")
        return header + b"\n" + line + rows

    return change


def row(**changed: str) -> bytes:
    """A results row of GOOD's shape, with some fields replaced."""
    fields = dict(idx="5", label="1", predict="1", radius="0.5", correct="1", time="0.1", pA_lower="0.9", n="320", nA="300", n0A="20")
    return ("\t".join({**fields, **changed}.values()) + "\n").encode()


def remove(path: str) -> Callable[[Path], None]:
    return lambda d: (d / path).unlink()


def other_tiny_checkpoint(d: Path) -> list[str]:
    return ["certify", *FAST, "--checkpoint", str(make_tiny_checkpoint(d / "other.safetensors", seed=1))]


def report_of_damaged(d: Path) -> list[str]:
    return ["report", GOOD, "--out-dir", str(d / "report")]


# --- the table ----------------------------------------------------------------------------

REFUSE_RESULTS = ("--out to write a new file", "--overwrite")
REPAIR_RESULTS = ("Drop the damaged line(s) with `certkit report --repair results/keep.tsv`", "keeps a backup")  # never --overwrite: it would lose the good rows

CASES = [
    # YAML
    Case("yaml unknown key", lambda d: yaml_file(d, "certify:\n  sigma: 0.25\n  sigmaa: 0.5\n"), ("c.yaml:3", "unknown key certify.sigmaa", "Did you mean sigma?")),
    Case("yaml wrong type", lambda d: yaml_file(d, "certify:\n  n: many\n"), ("c.yaml:2", "wrong type for key certify.n", "expected an integer", "For example: n: 10000")),
    Case("yaml not a mapping", lambda d: yaml_file(d, "- certify\n- sigma\n"), ("c.yaml:1", "must be a mapping of keys", "documented certkit.yaml")),
    Case("yaml file missing", lambda d: ["certify", *FAST, "--config", str(d / "nope.yaml")], ("nope.yaml: no such file", "Check the path")),
    Case("yaml python tag", lambda d: yaml_file(d, yaml_payload(d / MARKER)), ("c.yaml:1", "invalid YAML", "python/object/apply:os.system", "Remove the '!' tag")),
    Case("yaml python tag on a mapping", lambda d: yaml_file(d, f"certify: !!python/object/new:os.system\n  args: ['touch {d / MARKER}']\n"), ("c.yaml:1", "python/object/new:os.system", "Remove the '!' tag")),
    Case("yaml not utf-8", lambda d: ["certify", *FAST, "--config", str(write(d / "c.yaml", b"certify:\n  model: \xff\xfe\n"))], ("c.yaml: cannot read the file", "that it is UTF-8 text")),
    # data directories
    Case("data path is a file", lambda d: ["certify", *FAST, "--data", "fashion-mnist", "--data-path", str(write(d / "f.gz", b"x"))], ("f.gz is a file, not a directory", "--data-path")),
    Case("empty idx dir", empty_fashion_mnist_dir, ("missing t10k-images-idx3-ubyte.gz", "--data-path")),
    Case("empty image folder", lambda d: image_folder(d, {}), ("no class subdirectories in", "Expected layout root/<class>/<image>.png")),
    Case("images without class folders", lambda d: image_folder(d, {"x.png": b"png"}), ("images lie directly in", "Expected layout root/<class>/<image>.png")),
    Case("class folders without images", lambda d: image_folder(d, {"a/notes.txt": b"hi", "b/notes.txt": b"hi"}), ("no images found under", "Expected layout")),
    Case("corrupt image", lambda d: image_folder(d, {"a/x.png": b"\x89PNG garbage", "b/y.png": b"garbage"}), ("cannot read image", "a/x.png", "Remove or replace the file")),
    Case("truncated idx file", lambda d: idx_dir(d, lambda r: cut_in_half(r / "t10k-images-idx3-ubyte")), ("t10k-images-idx3-ubyte holds", "truncated or corrupt; download it again")),
    Case("corrupt idx magic", lambda d: idx_dir(d, lambda r: write(r / "t10k-labels-idx1-ubyte", b"not an idx file")), ("is not an unsigned-byte IDX file", "original Fashion-MNIST files")),
    Case("idx labels missing", lambda d: idx_dir(d, lambda r: (r / "t10k-labels-idx1-ubyte").unlink()), ("missing t10k-labels-idx1-ubyte.gz", "--data-path")),
    Case("idx wrong image size", lambda d: idx_dir(d, idx_32x32), ("1x32x32", "expects 1x28x28", "Use a dataset that matches the model's input spec")),
    Case("malicious cifar batch", malicious_cifar, ("test_batch is not a plain CIFAR-10 batch (refused global", "Use the original cifar-10-python.tar.gz")),
    # checkpoints
    Case("truncated safetensors", truncated_checkpoint, ("tiny.safetensors is not a readable safetensors file", "Re-download or re-export it")),
    Case("empty checkpoint", lambda d: checkpoint(d, "empty.safetensors", b""), ("empty.safetensors is not a readable safetensors file", "Re-download")),
    Case("text named .safetensors", lambda d: checkpoint(d, "notes.safetensors", b"these are not weights\n"), ("notes.safetensors is not a readable safetensors file", "Re-download")),
    Case("text named .pth", lambda d: checkpoint(d, "notes.pth", b"these are not weights\n"), ("notes.pth is truncated or not a PyTorch file (malformed pickle data)", "Re-download it")),
    Case("random bytes named .pth", lambda d: checkpoint(d, "noise.pth", np.random.default_rng(0).bytes(4096)), ("noise.pth is truncated or not a PyTorch file (Unsupported operand", "Re-download it")),
    Case("checkpoint is a directory", lambda d: ["certify", *FAST, "--checkpoint", str(d)], ("is a directory, not a weights file", "Pass --checkpoint with the .safetensors or .pth file itself")),
    Case("checkpoint of another model", other_model_safetensors, ("holds a 'cnn-mini' model, not 'tiny-cnn'", "Pass --model cnn-mini")),
    Case("state dict of another model", other_model_pth, ("cnn-mini.pth does not fit the model", "Pass the --model this checkpoint was trained as")),
    Case("malicious checkpoint", malicious_checkpoint, ("refused to load", "evil.pth: it refers to 'io.open'", "Only load checkpoints from sources you trust")),
    # results files (GOOD is damaged after it is written)
    Case("results header cut", certify_with(), ("keep.tsv does not start with the expected header", *REFUSE_RESULTS), damage=edit_results(lambda b: b[5:])),
    Case("results garbage line", certify_with(), ("keep.tsv:2: expected 10 tab-separated fields, found 1", *REPAIR_RESULTS), damage=edit_results(insert_after_header(b"garbage\n"))),
    Case("results non-numeric row", certify_with(), ("keep.tsv:2: idx 'x' is not an image index", *REPAIR_RESULTS), damage=edit_results(insert_after_header(row(idx="x")))),
    Case("results garbled value", certify_with(), ("keep.tsv:2: radius '0.5?x' is not a number", *REPAIR_RESULTS), damage=edit_results(insert_after_header(row(radius="0.5?x")))),
    Case("results binary garbage", certify_with(), ("keep.tsv:2: not UTF-8 text", *REPAIR_RESULTS), damage=edit_results(insert_after_header(b"\xff\xfe\x00\x01\n"))),
    Case("results from other n", certify_with("--n", "400"), ("different configuration", "n 300 vs 400", *REFUSE_RESULTS)),
    Case("results from other seed", certify_with("--seed", "3"), ("different configuration", "seed 0 vs 3", *REFUSE_RESULTS)),
    Case("results from other checkpoint", other_tiny_checkpoint, ("different configuration", "checkpoint_sha256", *REFUSE_RESULTS)),
    Case("results sidecar missing", certify_with(), ("has no keep.tsv.meta.json", *REFUSE_RESULTS), damage=remove(GOOD + ".meta.json")),
    Case("results sidecar corrupt", certify_with(), ("keep.tsv.meta.json is not valid JSON", *REFUSE_RESULTS), damage=edit_results(lambda b: b[:40], GOOD + ".meta.json")),
    Case("results sidecar not an object", certify_with(), ("keep.tsv.meta.json is not a JSON object", *REFUSE_RESULTS), damage=edit_results(lambda b: b"[1, 2]\n", GOOD + ".meta.json")),
    Case("report of damaged results", report_of_damaged, ("keep.tsv:2: expected 10 tab-separated fields, found 1", "Fix or delete that line", "certkit report --repair results/keep.tsv"), damage=edit_results(insert_after_header(b"garbage\n"))),
    # CLI arguments
    Case("skip zero", certify_with("--skip", "0"), ("certify.skip: must be >= 1, got 0", "skip: 1")),
    Case("max zero", certify_with("--max", "0"), ("certify.max: must be >= 1, got 0", "max: 500")),
    Case("max negative", certify_with("--max=-3"), ("certify.max: must be >= 1, got -3", "max: 500")),
    Case("batch zero", certify_with("--batch", "0"), ("certify.batch: must be >= 1, got 0", "batch: 1000")),
    Case("alpha above one", certify_with("--alpha", "1.5"), ("certify.alpha: must be strictly between 0 and 1, got 1.5", "alpha: 0.001")),
    Case("unknown device", certify_with("--device", "gpu"), ("must be auto, cpu, cuda or cuda:N, got 'gpu'", "device: cuda:0")),
    Case("unknown engine", certify_with("--engine", "tensorflow"), ("unknown engine 'tensorflow'", "Known engines: torch, onnx")),
    Case("unknown precision", certify_with("--precision", "fp64"), ("unknown precision 'fp64'", "Use one of: fp32, bf16, fp16")),
    Case("out is a directory", certify_with("--out", "results"), ("results file results is a directory", "Pass --out with a file name, e.g. --out results/results.tsv")),
    Case("out parent is a file", certify_with("--out", GOOD + "/r.tsv"), ("cannot create results/keep.tsv/r.tsv: results/keep.tsv is a file, not a directory", "Pass --out with a path inside a directory")),
    Case("cuda without a gpu", certify_with("--device", "cuda"), ("device 'cuda' was asked for but CUDA is not available", "Use --device cpu"),
         marks=(pytest.mark.skipif(torch.cuda.is_available(), reason="--device cuda is good input here"),)),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name, marks=c.marks) for c in CASES])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(tiny_model, workdir, case):
    args = case.setup(workdir)
    assert invoke("certify", *FAST, "--max", "2", "--out", GOOD).exit_code == 0
    if case.damage is not None:
        case.damage(workdir)
    before = snapshot(workdir)
    if args[0] == "certify" and "--out" not in args:
        args = [*args, "--out", GOOD]
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert message.startswith("error:") and len(message.splitlines()) == 1, message
    assert "Traceback" not in result.output + result.stderr
    for fragment in case.expected:
        assert fragment in " ".join(message.split()), (fragment, message)
    assert snapshot(workdir) == before
    assert not (workdir / MARKER).exists()  # no payload ran (the snapshot would show it too)


def test_at_least_20_bad_input_cases():
    from test_cli_certify import BAD_INPUTS

    assert len(CASES) + len(BAD_INPUTS) >= 20


def test_the_payloads_are_real(tmp_path):
    """Without certkit's safe loaders the payloads above do run: each creates its marker."""
    marker = tmp_path / "from-checkpoint"
    torch.load(malicious_pth(tmp_path / "evil.pth", marker), weights_only=False)
    assert marker.exists()
    marker = tmp_path / "from-yaml"
    yaml.unsafe_load(yaml_payload(marker))
    assert marker.exists()
    marker = tmp_path / "from-cifar"
    pickle.loads(pickle.dumps({b"data": _Payload(marker)}, protocol=2))
    assert marker.exists()
