"""Workflows: what the CLI commands do, callable from Python."""
