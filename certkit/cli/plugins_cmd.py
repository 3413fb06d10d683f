"""``certkit plugins``: every plugin, its version, and what it registers (or why it failed)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from certkit import plugins


def plugins_command() -> None:
    """List plugins with their versions and every component they register."""
    host = plugins.host()
    table = Table(title="certkit plugins")
    for column in ("plugin", "version", "source", "components"):
        table.add_column(column)
    failed = False
    infos = host.plugins()
    for info in infos:
        if info.blocked:
            table.add_row(info.name, info.version, info.source, f"[yellow]blocked by {plugins.BLOCK_ENV}[/yellow]")
            continue
        components = host.components_of(info.name) if info.error is None else []
        if info.error is not None:  # registration may also have failed while listing
            failed = True
            table.add_row(info.name, info.version, info.source, f"[red]failed: {info.error}[/red]")
            continue
        lines = [f"{c.kind[:-1]}: {plugins.display_name(c)}" + (f" (aliases: {', '.join(c.aliases)})" if c.aliases else "") for c in components]
        table.add_row(info.name, info.version, info.source, "\n".join(lines) or "-")
    Console().print(table)
    if failed:
        Console(stderr=True).print("[red]some plugins failed to load; other commands still work without them[/red]")
