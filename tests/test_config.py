"""Settings: defaults, the shipped certkit.yaml, precedence with sources, paths, every user error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from certkit.cli.config_cmd import config
from certkit.config import CONFIG_FILENAME, Settings, load_settings, settings_as_dict
from certkit.config_schema import SCHEMA, Leaf
from certkit.errors import CertkitError, ConfigError

ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def config_error(tmp_path: Path, text: str) -> str:
    """The one-line message a user sees for this --config file."""
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path / "bad.yaml", text), cwd=tmp_path)
    return str(caught.value)


# --- defaults and the shipped file ----------------------------------------------------------


def test_defaults_without_any_file(tmp_path: Path) -> None:
    settings, sources = load_settings(cwd=tmp_path)
    assert settings == Settings()
    assert (settings.certify.sigma, settings.certify.n0, settings.certify.n, settings.certify.alpha) == (
        0.25,
        100,
        10_000,
        0.001,
    )
    assert settings.certify.model == "vit-mini" and settings.certify.data == "fashion-mnist-mini"
    assert settings.predict.n == 1000 and settings.report.radii[-1] == 3.0
    assert settings.output_dir == Path("results") and settings.device == "auto"
    assert settings.datasets["fashion-mnist"].path is None  # no machine's path: each user sets it
    assert settings.datasets["cifar10"].type == "cifar10" and settings.datasets["imagenet"].path is None
    assert settings.models == {}
    assert set(sources.values()) == {"default"}
    assert {"certify.sigma", "predict.alpha", "report.radii", "datasets.cifar10.path"} <= set(sources)


def test_shipped_certkit_yaml_equals_the_defaults_and_sets_every_key(tmp_path: Path) -> None:
    shipped, sources = load_settings(cwd=ROOT)
    assert shipped == load_settings(cwd=tmp_path)[0]
    fixed = [name for name, spec in SCHEMA.items() if isinstance(spec, Leaf)]
    fixed += [f"{section}.{key}" for section, spec in SCHEMA.items() if isinstance(spec, dict) for key in spec]
    for key in fixed:
        assert re.fullmatch(r".*certkit\.yaml:\d+", sources[key]), f"{key} is not documented in certkit.yaml"


def test_shipped_certkit_yaml_comments_every_key() -> None:
    for number, line in enumerate((ROOT / CONFIG_FILENAME).read_text(encoding="utf-8").splitlines(), 1):
        if re.match(r"\s*[\w-]+:", line):
            assert "#" in line, f"certkit.yaml:{number} has a key without a comment: {line!r}"


# --- precedence and sources -----------------------------------------------------------------


def test_precedence_default_local_file_config_file_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "certkit.yaml", "certify:\n  n: 500\n  n0: 50\n  sigma: 0.5\n")
    other = write(tmp_path / "conf" / "other.yaml", "certify:\n  n0: 20\n  sigma: 1\n")

    settings, sources = load_settings(other, cli_overrides={"certify.sigma": 0.12, "certify.alpha": None})

    assert (settings.certify.n, settings.certify.n0, settings.certify.sigma) == (500, 20, 0.12)
    assert settings.certify.alpha == 0.001  # None = flag not given
    assert sources["certify.n"] == "certkit.yaml:2"
    assert sources["certify.n0"] == f"{other}:2"
    assert sources["certify.sigma"] == "CLI --sigma"
    assert sources["certify.alpha"] == "default" and sources["certify.batch"] == "default"


def test_config_file_alone_and_ints_as_floats(tmp_path: Path) -> None:
    settings, sources = load_settings(write(tmp_path / "c.yaml", "certify:\n  sigma: 1\n  alpha: 1e-3\n"), cwd=tmp_path)
    assert settings.certify.sigma == 1.0 and isinstance(settings.certify.sigma, float)
    assert settings.certify.alpha == 0.001  # YAML 1.1 would read 1e-3 as a string
    assert sources["certify.sigma"] == f"{tmp_path / 'c.yaml'}:2"


def test_dataset_and_model_entries_merge_key_by_key(tmp_path: Path) -> None:
    write(tmp_path / "certkit.yaml", "datasets:\n  cifar10: {split: test}\n  my-photos:\n    type: image-folder\n")
    other = write(tmp_path / "o.yaml", "datasets:\n  cifar10:\n    path: /data/c10\nmodels:\n  vit-b:\n    checkpoints:\n      0.5: /c/b.pth\n")
    settings, sources = load_settings(other, cwd=tmp_path)
    assert settings.datasets["cifar10"].path == Path("/data/c10") and settings.datasets["cifar10"].split == "test"
    assert settings.datasets["my-photos"].type == "image-folder" and settings.datasets["my-photos"].path is None
    assert settings.datasets["fashion-mnist"].path is None
    assert settings.models["vit-b"].checkpoints == {0.5: Path("/c/b.pth")}
    assert sources["models.vit-b.checkpoints.0.5"] == f"{other}:7"
    assert sources["datasets.my-photos.path"] == "default"


def test_relative_paths_follow_the_yaml_file_and_tilde_expands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    conf = write(
        tmp_path / "conf" / "c.yaml",
        "output_dir: out\n"
        "datasets:\n  mine: {type: image-folder, path: ../photos}\n  cifar10: {path: ~/c10}\n"
        "models:\n  vit-b:\n    checkpoints: {'0.25': ckpt/b.pth, 1: /abs/b1.pth}\n",
    )
    settings, _ = load_settings(conf, cwd=tmp_path / "elsewhere")
    assert settings.datasets["mine"].path == tmp_path / "conf" / ".." / "photos"
    assert settings.datasets["cifar10"].path == tmp_path / "home" / "c10"
    assert settings.models["vit-b"].checkpoints == {0.25: tmp_path / "conf" / "ckpt" / "b.pth", 1.0: Path("/abs/b1.pth")}
    assert settings.output_dir == Path("out")  # results follow the working directory, not the file


def test_cli_paths_resolve_against_cwd(tmp_path: Path) -> None:
    overrides = {"datasets.mine.path": "pics", "models.vit-b.checkpoints.0.25": Path("b.pth")}
    settings, sources = load_settings(cli_overrides=overrides, cwd=tmp_path)
    assert settings.datasets["mine"].path == tmp_path / "pics"
    assert settings.models["vit-b"].checkpoints == {0.25: tmp_path / "b.pth"}
    assert sources["models.vit-b.checkpoints.0.25"] == "CLI --checkpoint"


def test_empty_file_and_empty_sections_set_nothing(tmp_path: Path) -> None:
    settings, _ = load_settings(write(tmp_path / "e.yaml", "# only a comment\n"), cwd=tmp_path)
    assert settings == Settings()
    settings, _ = load_settings(write(tmp_path / "s.yaml", "certify:\nmodels: {}\n"), cwd=tmp_path)
    assert settings == Settings()


# --- errors ----------------------------------------------------------------------------------


def test_unknown_key_names_file_line_key_and_allowed_keys(tmp_path: Path) -> None:
    message = config_error(tmp_path, "seed: 1\ncertify:\n  sigma: 0.5\n  sigmaa: 0.5\n")
    assert f"{tmp_path / 'bad.yaml'}:4: unknown key certify.sigmaa" in message
    assert "Did you mean sigma?" in message and "n0, n, alpha" in message
    assert "bad.yaml:1: unknown key colour" in config_error(tmp_path, "colour: red\n")
    assert "bad.yaml:3: unknown key datasets.x.paht" in config_error(tmp_path, "datasets:\n  x:\n    paht: /d\n")
    assert "unknown key models.m.checkpoint." in config_error(tmp_path, "models:\n  m:\n    checkpoint: {}\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("certify:\n  n: ten\n", "bad.yaml:2: wrong type for key certify.n: expected an integer, got string 'ten'"),
        ("certify:\n  sigma: [1]\n", "bad.yaml:2: wrong type for key certify.sigma: expected a number, got a list"),
        ("certify:\n  n0: 1.5\n", "bad.yaml:2: wrong type for key certify.n0: expected an integer, got number 1.5"),
        ("certify:\n  n0: '100'\n", "bad.yaml:2: wrong type for key certify.n0: expected an integer, got string '100'"),
        ("seed: true\n", "bad.yaml:1: wrong type for key seed: expected an integer, got boolean true"),
        ("certify:\n  alpha: yes\n", "wrong type for key certify.alpha: expected a number, got boolean true"),
        ("certify:\n  max: false\n", "wrong type for key certify.max: expected an integer or null, got boolean false"),
        ("certify:\n  model: null\n", "wrong type for key certify.model: expected a string, got null"),
        ("report:\n  radii: [0.5, x]\n", "bad.yaml:2: wrong type for key report.radii: expected a number"),
        ("certify: 3\n", "bad.yaml:1: wrong type for key certify: expected a mapping"),
        ("- a\n- b\n", "bad.yaml:1: the file must be a mapping"),
    ],
)
def test_wrong_types(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in config_error(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("certify:\n  sigma: 0\n", "bad.yaml:2: invalid value for key certify.sigma: must be > 0, got 0.0"),
        ("certify:\n  sigma: -0.5\n", "invalid value for key certify.sigma: must be > 0"),
        ("certify:\n  alpha: 1\n", "invalid value for key certify.alpha: must be strictly between 0 and 1"),
        ("predict:\n  alpha: 0\n", "invalid value for key predict.alpha"),
        ("certify:\n  n0: 0\n", "invalid value for key certify.n0: must be >= 1, got 0"),
        ("certify:\n  n: -3\n", "invalid value for key certify.n: must be >= 1"),
        ("certify:\n  batch: 0\n", "invalid value for key certify.batch"),
        ("certify:\n  skip: 0\n", "invalid value for key certify.skip"),
        ("certify:\n  max: 0\n", "invalid value for key certify.max"),
        ("device: gpu\n", "bad.yaml:1: invalid value for key device: must be auto, cpu, cuda or cuda:N"),
        ("report:\n  radii: [0.5, -1]\n", "invalid value for key report.radii"),
        ("models:\n  m:\n    checkpoints:\n      big: /x.pth\n", "bad.yaml:4: key 'big' under models.m.checkpoints is not a sigma"),
        ("models:\n  m:\n    checkpoints: {0.25: /a, '0.25': /b}\n", "duplicate key models.m.checkpoints.0.25"),
        ("seed: 1\nseed: 2\n", "bad.yaml:2: duplicate key seed (first at"),
    ],
)
def test_bad_values(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in config_error(tmp_path, text)


def test_accepted_device_spellings(tmp_path: Path) -> None:
    for device in ("auto", "cpu", "cuda", "cuda:1"):
        assert load_settings(write(tmp_path / "d.yaml", f"device: {device}\n"), cwd=tmp_path)[0].device == device


def test_malformed_yaml_gives_the_parser_line(tmp_path: Path) -> None:
    message = config_error(tmp_path, "seed: 1\ncertify:\n  sigma: 0.5\n  n: [1, 2\nreport: {}\n")
    assert re.search(r"bad\.yaml:5: invalid YAML: .*expected ',' or ']'", message), message
    message = config_error(tmp_path, "certify:\n  sigma: 0.5\n n: 3\n")
    assert "bad.yaml:3: invalid YAML" in message, message
    assert "invalid YAML" in config_error(tmp_path, "a: !!python/object:os.system x\n")  # SafeLoader only


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--config nope\.yaml: no such file"):
        load_settings(Path("nope.yaml"), cwd=tmp_path)


def test_cli_override_values_are_checked_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"CLI --sigma: invalid value for key certify.sigma"):
        load_settings(cli_overrides={"certify.sigma": -1.0}, cwd=tmp_path)


# --- `certkit config` ----------------------------------------------------------------------


def run_cli(args: list[str]) -> tuple[int, str]:
    """Invoke `config` as the real app does, mapping CertkitError to exit code 2 as it does centrally."""
    app = typer.Typer()
    app.callback()(lambda: None)  # keep "config" a sub-command, as in the real app
    app.command("config")(config)
    result = CliRunner().invoke(app, ["config", *args], env={"COLUMNS": "200"})
    if isinstance(result.exception, CertkitError):
        return 2, result.output + str(result.exception)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_config_command_shows_value_and_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "certkit.yaml", "seed: 3\ncertify:\n  n: 500\n")
    code, output = run_cli([])
    assert code == 0, output
    rows = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:4]] for line in output.splitlines() if line.count("│") >= 4}
    assert rows["certify.n"] == ["500", "certkit.yaml:3"]
    assert rows["certify.sigma"] == ["0.25", "default"]
    assert rows["certify.max"] == ["null", "default"]
    assert rows["models"] == ["{}", "default"]


def test_config_command_yaml_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    other = write(tmp_path / "o.yaml", "certify: {sigma: 0.5}\ndatasets:\n  mine: {path: pics}\nmodels:\n  m: {checkpoints: {1: a.pth}}\n")
    code, output = run_cli(["--config", str(other), "--yaml"])
    assert code == 0, output
    assert yaml.safe_load(output) == settings_as_dict(load_settings(other)[0])
    echoed = write(tmp_path / "sub" / "echo.yaml", output)
    assert load_settings(echoed, cwd=tmp_path / "sub")[0] == load_settings(other)[0]


def test_config_command_reports_errors_as_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, output = run_cli(["--config", "missing.yaml"])
    assert code == 2 and "missing.yaml" in output
