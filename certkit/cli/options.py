"""Option types shared by several commands, declared once; help that shows config defaults."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer
from typer.core import TyperCommand

from certkit.errors import CertkitError

#: ``ctx.meta`` key under which the ``certkit`` group keeps the arguments the user typed
ARGV_KEY = "certkit.argv"

#: the command line of the running command, as typed: program ("certkit", "python -m certkit")
#: and arguments. Recorded by the ``certkit`` group (typer may bring its own copy of click, so
#: click's current-context stack is not a reliable way to find it).
_typed: tuple[str, list[str]] | None = None


def record_command_line(program: str, arguments: list[str]) -> None:
    global _typed
    _typed = (program, list(arguments))


def command_line() -> tuple[str, list[str]] | None:
    """``(program, arguments)`` of the running command, or None outside the CLI."""
    return _typed

ConfigFile = Annotated[Optional[Path], typer.Option("--config", help="YAML config file (overrides ./certkit.yaml).", show_default=False)]
Model = Annotated[Optional[str], typer.Option("--model", "-m", help="Registered model name (see 'certkit plugins').", show_default=False)]
Sigma = Annotated[Optional[float], typer.Option("--sigma", help="Noise level in [0,1] pixel units.", show_default=False)]
Data = Annotated[Optional[str], typer.Option("--data", help="Dataset name (config key or registered) or a folder of class folders.", show_default=False)]
DataPath = Annotated[Optional[Path], typer.Option("--data-path", help="Directory of the dataset (overrides datasets.<name>.path).", show_default=False)]
Split = Annotated[Optional[str], typer.Option("--split", help="Dataset split (default: the dataset's evaluation split).", show_default=False)]
Checkpoint = Annotated[Optional[Path], typer.Option("--checkpoint", help="Weights file (default: the model's checkpoint for --sigma).", show_default=False)]
N = Annotated[Optional[int], typer.Option("--n", help="Noisy samples per image.", show_default=False)]
Alpha = Annotated[Optional[float], typer.Option("--alpha", help="Failure probability of each certificate.", show_default=False)]
Batch = Annotated[Optional[int], typer.Option("--batch", help="Noisy samples per forward pass; null means 32 on a CPU, 1000 on CUDA (memory is bounded by it, not by N).", show_default=False)]
Skip = Annotated[Optional[int], typer.Option("--skip", help="Use every k-th image.", show_default=False)]
Max = Annotated[Optional[int], typer.Option("--max", help="At most this many images (after --skip).", show_default=False)]
Seed = Annotated[Optional[int], typer.Option("--seed", help="Noise seed; same seed, same results file.", show_default=False)]
Out = Annotated[Optional[Path], typer.Option("--out", "-o", help="Results TSV (default: <output_dir>/<model>_sigma<s>_<data>_<certifier>.tsv).", show_default=False)]
Device = Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda or cuda:N.", show_default=False)]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing results file instead of resuming it.")]
Smoother = Annotated[Optional[str], typer.Option("--smoother", help="Registered smoothing distribution, e.g. gaussian (L2) or uniform (L1); see 'certkit plugins'.", show_default=False)]
SmootherOption = Annotated[list[str], typer.Option("--smoother-option", "-S", help="Smoother option as key=value (repeatable); part of the results file's identity and name.")]
ModelOption = Annotated[list[str], typer.Option("--model-option", "-M", help="Model factory option as key=value (repeatable), e.g. -M denoiser=PATH for a composed model.")]
Spec = Annotated[Optional[str], typer.Option("--spec", help="Input spec of a weights file that carries none (a foreign state dict): imagenet, cifar10, mnist-like, fashion-mnist, or a .json/.yaml file.", show_default=False)]


def parse_key_values(pairs: list[str], flag: str = "--option", example: str = "mask_ratio=0.6") -> dict:
    """``key=value`` flags as a dict; values are read as YAML scalars (numbers, booleans)."""
    import yaml

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CertkitError(f"{flag} '{pair}' is not key=value.", f"Pass e.g. {flag} {example}.")
        options[key.replace("-", "_")] = yaml.safe_load(value)
    return options


# --- defaults that come from the config, shown in --help ------------------------------------

CONFIG_KEYS_ATTRIBUTE = "certkit_config_keys"
Command = TypeVar("Command", bound=Callable[..., Any])


def config_defaults(keys: Mapping[str, str]) -> Callable[[Command], Command]:
    """Declare which parameters of a command default to a config key (parameter name ->
    dotted key, e.g. ``{"n": "certify.n"}``); its ``--help`` then shows each one's effective
    value and where that value comes from (built-in default, certkit.yaml:LINE, --config file)."""

    def mark(command: Command) -> Command:
        setattr(command, CONFIG_KEYS_ATTRIBUTE, dict(keys))
        return command

    return mark


def command_class(command: Callable[..., Any]) -> type[TyperCommand] | None:
    """The click command class for a command function: one that fills in config defaults in
    its help when the function declares them with :func:`config_defaults`."""
    keys = getattr(command, CONFIG_KEYS_ATTRIBUTE, None)
    if not keys:
        return None
    return type("ConfigDefaultsCommand", (ConfigDefaultsCommand,), {"config_keys": keys})


class ConfigDefaultsCommand(TyperCommand):
    """A command whose help shows ``[default: (VALUE, from SOURCE)]`` for config-backed options.

    The settings are read when the help is shown (YAML only, no torch), with the ``--config``
    file given on the same command line, because ``--help`` is handled before any other option.
    """

    config_keys: Mapping[str, str] = {}

    def format_help(self, ctx: Any, formatter: Any) -> None:
        epilog = self.epilog
        try:
            shown = effective_defaults(self.config_keys, _config_argument(ctx))
        except CertkitError as error:  # a broken config must not hide the help; say why values are missing
            self.epilog = "\n\n".join(filter(None, [epilog, f"Config defaults not shown: {error}"]))
            shown = {}
        for param in self.params:
            if param.name in shown:
                param.show_default = shown[param.name]
        try:
            super().format_help(ctx, formatter)
        finally:
            self.epilog = epilog


def effective_defaults(keys: Mapping[str, str], config_file: Path | None) -> dict[str, str]:
    """Parameter name -> "VALUE, from SOURCE" for every parameter in ``keys``."""
    from certkit.config import DEFAULT_SOURCE, load_settings, settings_as_dict

    settings, sources = load_settings(config_file)
    values = settings_as_dict(settings)
    shown = {}
    for param, key in keys.items():
        value: Any = values
        for part in key.split("."):
            value = value[part]
        source = sources.get(key, DEFAULT_SOURCE)
        shown[param] = f"{_format_value(value)}, {'built-in' if source == DEFAULT_SOURCE else 'from ' + source}"
    return shown


def _format_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return ",".join(_format_value(item) for item in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _config_argument(ctx: Any) -> Path | None:
    """The ``--config FILE`` on the command line, read from what the user typed."""
    argv = ctx.meta.get(ARGV_KEY, [])
    for i, token in enumerate(argv):
        if token == "--config" and i + 1 < len(argv):
            return Path(argv[i + 1])
        if token.startswith("--config="):
            return Path(token.split("=", 1)[1])
    return None
