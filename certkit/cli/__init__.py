"""The Typer command-line interface: thin commands that call workflows."""
