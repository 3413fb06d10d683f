"""The ``certkit`` command: a Typer app whose commands come from the plugin hooks.

certkit's own commands are registered by its builtin plugin through the same hook as any
outside plugin's (``certkit_register_commands``). Errors a user can cause are printed as one
line and exit with code 2; anything else is a bug and keeps its traceback.

Start-up is kept short: ``--version`` loads no plugin, ``--help`` lists the registered commands
from their names and descriptions, and a command's module (with torch) is imported only when
that command runs or shows its own help.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperCommand, TyperGroup

from certkit import __version__
from certkit.cli.options import ARGV_KEY, command_class, record_command_line
from certkit.errors import CertkitError

if TYPE_CHECKING:
    import click

    from certkit.plugins import Component


def _version(value: bool) -> None:
    if value:
        typer.echo(f"certkit {__version__}")
        raise typer.Exit()


def _print_error(error: CertkitError) -> None:
    from rich.console import Console  # imported here: --version and --help print no error
    from rich.text import Text

    # The message quotes user text (paths, labels, file contents): a Text is printed literally,
    # never parsed for markup ("[/b]") or emoji codes (":100:").
    message = Text("error: ", style="bold red") + Text(str(error))
    Console(stderr=True).print(message, highlight=False, soft_wrap=True)


class _CertkitGroup(TyperGroup):
    """Commands from the ``commands`` registry, imported when used; a user error raised anywhere
    below becomes one line on stderr and exit code 2."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self._loaded: dict[str, click.Command] = {}
        self._listing = False

    def _components(self) -> dict[str, Component]:
        from certkit import plugins

        return {component.name: component for component in plugins.host().registry("commands")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self._components())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        component = self._components().get(cmd_name)
        if component is None:
            return None
        if self._listing and cmd_name not in self._loaded:
            return _summary(component)
        if cmd_name not in self._loaded:
            self._loaded[cmd_name] = _load(component)
        return self._loaded[cmd_name]

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The command list needs names and one-line descriptions, not the commands' modules.
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def resolve_command(self, ctx: click.Context, args: list[str]):
        self.commands = dict.fromkeys(self.list_commands(ctx))  # the names typer's "did you mean" offers
        return super().resolve_command(ctx, args)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[ARGV_KEY] = list(args)  # what the user typed, for help defaults and "resume with: ..."
        record_command_line(ctx.info_name or "certkit", args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except CertkitError as error:
            _print_error(error)
            raise SystemExit(error.exit_code) from None


def _summary(component: Component) -> click.Command:
    """The command as ``certkit --help`` lists it: its name and one line, nothing imported."""
    if not component.description and isinstance(component.obj, str):
        return _load(component)  # nothing to list it by without importing it
    return TyperCommand(component.name, help=component.description or _docstring(component.obj))


def _docstring(obj: Any) -> str:
    if isinstance(obj, typer.Typer):
        return obj.info.help if isinstance(obj.info.help, str) else ""
    return (inspect.getdoc(obj) or "") if callable(obj) else ""


def _resolve(obj: Any) -> Any:
    """A ``"module:attribute"`` reference imported; anything else as it is."""
    if not isinstance(obj, str):
        return obj
    module, _, attribute = obj.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _load(component: Component) -> click.Command:
    """The real click command: a Typer sub-app as a group, a function as a command. The
    description is the command's line in ``certkit --help``; its docstring is the full help
    (the description when it has none)."""
    obj = _resolve(component.obj)
    holder = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    holder.callback()(lambda: None)  # a callback makes typer build a group, from which we take the command
    short = component.description or None
    if isinstance(obj, typer.Typer):
        holder.add_typer(obj, name=component.name, short_help=short, help=None if _docstring(obj) else short)
    else:
        holder.command(component.name, cls=command_class(obj), short_help=short, help=None if _docstring(obj) else short)(obj)
    group = typer.main.get_group(holder)
    return group.commands[component.name]


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

    return app


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        app = build_app()
        app(args=argv, standalone_mode=True)
    except CertkitError as error:  # raised while loading plugins, before any command runs
        _print_error(error)
        sys.exit(error.exit_code)
