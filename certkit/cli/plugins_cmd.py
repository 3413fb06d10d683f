"""``certkit plugins``: every plugin, its version, and what it registers (or why it failed)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from certkit import plugins
from certkit.models import checkpoint_noises, checkpoint_sigmas


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
        lines = [_describe(c) for c in components]
        table.add_row(info.name, info.version, info.source, "\n".join(lines) or "-")
    Console().print(table)
    if failed:
        Console(stderr=True).print("[red]some plugins failed to load; other commands still work without them[/red]")


def _describe(component: plugins.Component) -> str:
    """``model: vit-mini (aliases: ...) — what it is [checkpoints: σ 0.25, 0.5]``."""
    line = f"{component.kind[:-1]}: {plugins.display_name(component)}"
    if component.aliases:
        line += f" (aliases: {', '.join(component.aliases)})"
    description = component.description or _first_line(getattr(component.obj, "__doc__", None))
    if description:
        line += f" — {description}"
    if component.kind == "models" and not component.details.get("pretraining"):
        line += f" [{_checkpoints(component)}]"
    return escape(line)


def _checkpoints(component: plugins.Component) -> str:
    if component.details.get("needs_checkpoint", True) is False:
        return "needs no checkpoint"
    kinds = checkpoint_noises(component)
    if not kinds:
        return "no shipped checkpoint: pass --checkpoint"
    shown = [("" if kind == "gaussian" else f"{kind} ") + "σ " + ", ".join(f"{s:g}" for s in checkpoint_sigmas(component, noise=kind)) for kind in kinds]
    return "checkpoints: " + "; ".join(shown)


def _first_line(doc: str | None) -> str:
    return doc.strip().splitlines()[0] if doc and doc.strip() else ""
