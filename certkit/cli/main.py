"""The ``certkit`` command: a Typer app whose commands come from the plugin hooks.

certkit's own commands are registered by its builtin plugin through the same hook as any
outside plugin's (``certkit_register_commands``). Errors a user can cause are printed as one
line and exit with code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

import click
import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from certkit import __version__, plugins
from certkit.errors import CertkitError


def _version(value: bool) -> None:
    if value:
        typer.echo(f"certkit {__version__}")
        raise typer.Exit()


def _print_error(error: CertkitError) -> None:
    # The message quotes user text (paths, labels, file contents): a Text is printed literally,
    # never parsed for markup ("[/b]") or emoji codes (":100:").
    message = Text("error: ", style="bold red") + Text(str(error))
    Console(stderr=True).print(message, highlight=False, soft_wrap=True)


class _CertkitGroup(TyperGroup):
    """Turns a user error raised anywhere below into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except CertkitError as error:
            _print_error(error)
            raise SystemExit(error.exit_code) from None


def build_app() -> typer.Typer:
    app = typer.Typer(
        cls=_CertkitGroup,
        name="certkit",
        help="Certified robustness of image classifiers by randomized smoothing.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )

    @app.callback()
    def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit.")) -> None:
        """Certified robustness of image classifiers by randomized smoothing."""

    for component in plugins.host().registry("commands"):
        if isinstance(component.obj, typer.Typer):
            app.add_typer(component.obj, name=component.name, help=component.description or None)
        else:
            app.command(component.name, help=component.description or None)(component.obj)
    return app


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        app = build_app()
        app(args=argv, standalone_mode=True)
    except CertkitError as error:  # raised while loading plugins, before any command runs
        _print_error(error)
        sys.exit(error.exit_code)
