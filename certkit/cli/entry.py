"""The console script's entry point.

``certkit --version`` is answered from the version string alone: importing typer (and the
command tree) would cost more than the whole answer. Everything else goes to
:func:`certkit.cli.main.run`.
"""

from __future__ import annotations

import sys


def run() -> None:
    if sys.argv[1:] == ["--version"]:
        from certkit import __version__

        print(f"certkit {__version__}")
        return
    from certkit.cli.main import run as run_cli

    run_cli()
