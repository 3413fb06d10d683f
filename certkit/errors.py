"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class CertkitError(Exception):
    """A problem with the user's input: what is wrong, and how to fix it.

    ``str(error)`` is the single line shown to the user, so keep ``what`` and ``fix``
    short and concrete (name the file, the key, the allowed values).
    """

    exit_code = 2

    def __init__(self, what: str, fix: str | None = None) -> None:
        self.what = what
        self.fix = fix
        super().__init__(f"{what} {fix}" if fix else what)


class ConfigError(CertkitError):
    """Malformed or invalid configuration (YAML syntax, unknown key, wrong type)."""


class DataError(CertkitError):
    """A dataset path is missing, empty, in the wrong layout, or does not fit the model."""


class CheckpointError(CertkitError):
    """A checkpoint is missing, unreadable, unsafe, or does not fit the model."""


class PluginError(CertkitError):
    """A component name is unknown or registered twice."""


class ResultsError(CertkitError):
    """A results file cannot be read, or belongs to a different configuration."""
