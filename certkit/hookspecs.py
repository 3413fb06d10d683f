"""Every hook a certkit plugin can implement.

All hooks are *registrar* hooks: certkit calls each implementation once, with a ``register``
callable. The core owns names, aliases and duplicate detection, so a name registered twice is
an error that names both plugins, whichever hook order pluggy chose. Implementations return
nothing; results do not combine.

A plugin is a module or object with functions decorated by ``certkit.hookimpl`` whose names
match the specifications below, exposed through the entry-point group ``certkit``.
"""

from __future__ import annotations

from typing import Any, Protocol

import pluggy

hookspec = pluggy.HookspecMarker("certkit")


class Register(Protocol):
    """``register(name, component, *, aliases=(), description="", **details)``."""

    def __call__(self, name: str, component: Any, *, aliases: tuple[str, ...] = (), description: str = "", **details: Any) -> None: ...


@hookspec
def certkit_register_models(register: Register) -> None:
    """Register base-classifier factories.

    Called once when the models registry is first used. ``component`` is a callable
    ``factory(**overrides) -> torch.nn.Module`` whose result has an ``input_spec``
    (:class:`certkit.InputSpec`). Details: ``checkpoints`` (``{sigma: path}`` of weights the
    plugin ships) and ``checkpoint_filter`` (``(state_dict, model) -> state_dict`` for foreign
    checkpoint formats).
    """


@hookspec
def certkit_register_corruptions(register: Register) -> None:
    """Register training-time corruptions. ``component`` is a factory
    ``(**options) -> certkit.Corruption``."""


@hookspec
def certkit_register_objectives(register: Register) -> None:
    """Register pretraining objectives. ``component`` is a factory
    ``(**options) -> certkit.PretrainObjective``."""


@hookspec
def certkit_register_smoothers(register: Register) -> None:
    """Register smoothing distributions. ``component`` is a factory
    ``(sigma: float) -> certkit.Smoother``."""


@hookspec
def certkit_register_certifiers(register: Register) -> None:
    """Register certifiers. ``component`` is a factory ``() -> certkit.Certifier``."""


@hookspec
def certkit_register_datasets(register: Register) -> None:
    """Register datasets. ``component`` is a :class:`certkit.data.DatasetEntry`
    (a ``(path, split) -> ImageDataset`` factory plus whether it needs a path)."""


@hookspec
def certkit_register_commands(register: Register) -> None:
    """Register CLI commands. ``component`` is a ``typer.Typer`` (added as a command group)
    or a plain function (added as a command). Called when the CLI starts."""
