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
    plugin ships for Gaussian noise; a key ``(smoother, sigma)`` for weights trained on another
    smoother's noise, e.g. ``("uniform", 0.25)``), ``checkpoint_filter`` (``(state_dict, model) -> state_dict`` for foreign
    checkpoint formats), ``pretraining=True`` (an encoder-decoder for ``certkit pretrain``, not
    a classifier), and ``prefix=True``: ``name`` (e.g. ``"timm/"``) is a family answering every
    name that starts with it, whose factory gets the rest as ``arch=``; with it, ``check_name``
    (``(rest) -> None``, raising :class:`certkit.errors.PluginError`) refuses unknown members.

    ``needs_checkpoint=False``: the model gets its weights itself (an off-the-shelf classifier,
    or one composed of other registered models loaded with :func:`certkit.load_classifier`).
    certkit then calls ``factory(sigma=..., checkpoint=<--checkpoint or None>, **options)``
    (options from ``-M key=value``); the module may list the files it used as ``certkit_parts``
    (dicts with ``role``, ``name``, ``checkpoint``, ``checkpoint_sha256``), which results record.
    """


@hookspec
def certkit_register_corruptions(register: Register) -> None:
    """Register training-time corruptions. ``component`` is a factory
    ``(**options) -> certkit.Corruption``."""


@hookspec
def certkit_register_objectives(register: Register) -> None:
    """Register training objectives. A pretraining objective's ``component`` is a factory
    ``(**options) -> certkit.PretrainObjective`` (detail ``default_model``: the model
    ``certkit pretrain`` uses without ``--model``). A supervised one is registered with the
    detail ``supervised=True`` and its factory ``(sigma, **options) ->
    certkit.ClassificationObjective`` is what ``certkit finetune --objective NAME`` trains with."""


@hookspec
def certkit_register_smoothers(register: Register) -> None:
    """Register smoothing distributions. ``component`` is a factory
    ``(sigma: float, **options) -> certkit.Smoother`` (options from ``-S key=value``, checked
    against the factory's keyword parameters and their annotations). The smoother must declare
    ``norm`` (``"l2"``, ``"l1"`` or ``"linf"``): the norm its ``radius`` is measured in."""


@hookspec
def certkit_register_certifiers(register: Register) -> None:
    """Register certifiers. ``component`` is a factory ``() -> certkit.Certifier``."""


@hookspec
def certkit_register_datasets(register: Register) -> None:
    """Register datasets. ``component`` is a :class:`certkit.data.DatasetEntry`
    (a ``(path, split) -> ImageDataset`` factory plus whether it needs a path)."""


@hookspec
def certkit_register_recipes(register: Register) -> None:
    """Register recipes: named YAML files of settings. ``component`` is the file's path. A
    recipe of command ``pretrain`` or ``finetune`` is chosen with ``--recipe NAME`` (or is the
    default of the models in its ``default_for``); one of command ``certify`` is a
    certification protocol (``certkit certify --protocol NAME``). The file format is in
    :mod:`certkit.recipes`; the name registered must equal the file's ``recipe`` key."""


@hookspec
def certkit_register_commands(register: Register) -> None:
    """Register CLI commands. ``component`` is a ``typer.Typer`` (added as a command group), a
    plain function (added as a command), or a ``"module:attribute"`` string naming one, which
    is imported only when that command runs. ``description`` is the command's line in
    ``certkit --help``. Called when the CLI lists or runs commands (not for ``--version``)."""
