"""``certkit plugin new NAME``: write a working plugin distribution to start from."""

from __future__ import annotations

import importlib.metadata
import re
from importlib import resources
from pathlib import Path
from string import Template
from typing import Annotated

import typer
from rich.console import Console

from certkit import __version__, plugins
from certkit.errors import CertkitError

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_-]*")

#: file of the new distribution -> its template in certkit/templates/plugin/
FILES = {
    "pyproject.toml": "pyproject.toml.tmpl",
    "README.md": "README.md.tmpl",
    "src/certkit_{module}/__init__.py": "__init__.py.tmpl",
    "src/certkit_{module}/plugin.py": "plugin.py.tmpl",
    "tests/test_plugin.py": "test_plugin.py.tmpl",
}

plugin_app = typer.Typer(no_args_is_help=True, help="Start a plugin of your own.")


@plugin_app.command("new")
def new(
    name: Annotated[str, typer.Argument(help="Plugin name: lowercase letters, digits, '-' and '_', starting with a letter.")],
    directory: Annotated[Path, typer.Option("--dir", help="Folder in which the certkit-NAME folder is created.")] = Path("."),
) -> None:
    """Write certkit-NAME/: pyproject with the entry point, a hook module registering an example
    model and corruption, tests and a README. `pip install -e certkit-NAME` and it is in `certkit plugins`."""
    target = write_plugin(name, directory)
    console = Console(markup=False, emoji=False, highlight=False)  # paths and labels are user text: printed literally
    for relative in FILES:
        console.print(f"  {target / relative.format(module=module_name(name))}")
    console.print(f"created {target}\nnext: pip install -e {target} && certkit plugins && python -m pytest {target / 'tests'}")


def module_name(name: str) -> str:
    return name.replace("-", "_")


def write_plugin(name: str, directory: Path) -> Path:
    """Render the template into ``directory/certkit-NAME``; refuse a bad name or an existing folder."""
    if not NAME_PATTERN.fullmatch(name):
        raise CertkitError(f"'{name}' is not a valid plugin name.", "Use lowercase letters, digits, '-' and '_', starting with a letter, e.g. my-noise.")
    installed = {ep.name for ep in importlib.metadata.entry_points(group=plugins.ENTRY_POINT_GROUP)}
    if name in installed:
        raise CertkitError(f"a plugin named '{name}' is already installed.", "Pick another name; two plugins with one name cannot be told apart.")
    target = Path(directory).expanduser() / f"certkit-{name}"
    if target.exists():
        raise CertkitError(f"{target} already exists.", "Pick another --dir or NAME; nothing was written.")
    module = module_name(name)
    values = {"name": name, "module": module, "certkit_version": __version__}
    templates = resources.files("certkit") / "templates" / "plugin"
    rendered = {relative.format(module=module): Template((templates / source).read_text(encoding="utf-8")).substitute(values) for relative, source in FILES.items()}
    for relative, text in rendered.items():  # everything rendered before the first file is written
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return target
