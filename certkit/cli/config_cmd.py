"""`certkit config`: the effective settings and where each one came from.

Answers "why did certify use N=500?" without reading three files: every key is shown with its
source (``default``, ``certkit.yaml:17`` or the ``--config`` file and line).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from certkit.config import DEFAULT_SOURCE, dump_settings_yaml, load_settings, settings_as_dict


def config(
    config_file: Annotated[
        Path | None,
        typer.Option("--config", help="YAML settings file; applied over ./certkit.yaml and the built-in defaults."),
    ] = None,
    as_yaml: Annotated[
        bool, typer.Option("--yaml", help="Print the effective settings as YAML (usable as a --config file).")
    ] = False,
) -> None:
    """Show every setting's effective value and its source: default, a file and line, or a flag."""
    settings, sources = load_settings(config_file)
    if as_yaml:
        # Plain stdout, not rich: the output must stay valid YAML at any terminal width.
        typer.echo(dump_settings_yaml(settings), nl=False)
        return
    values = _flatten(settings_as_dict(settings))
    table = Table("key", "value", "source", title="certkit settings")
    for key, source in sources.items():
        style = "dim" if source == DEFAULT_SOURCE else None
        table.add_row(key, values.get(key, ""), source, style=style)
    for column in table.columns:
        column.overflow = "fold"  # long paths wrap instead of being cut off with an ellipsis
    Console().print(table)


def _flatten(data: dict, prefix: str = "") -> dict[str, str]:
    """dotted key -> value as YAML would write it (null, [0.0, 0.5], {}), matching the sources."""
    flat: dict[str, str] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{dotted}."))
        else:
            flat[dotted] = _format(value)
    return flat


def _format(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(_format(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{}"
    return str(value)
