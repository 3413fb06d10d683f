"""Recipes: named, versioned YAML files of training settings (``certkit pretrain/finetune
--recipe NAME``) or certification settings (``certkit certify --protocol NAME``).

A plugin registers its recipe files through the ``certkit_register_recipes`` hook
(``register(name, path_to_yaml)``). A file looks like::

    recipe: dmae-finetune-vit-b      # must equal the registered name
    version: 1
    command: finetune                # pretrain | finetune | certify
    models: [vit-b]                  # the models it is for (training recipes)
    default_for: [vit-b]             # optional: used for these models without --recipe
    extends: another-recipe          # optional: start from that recipe's settings
    description: one line
    settings:                        # keys of `certkit <command> --print-config`
      epochs: 100                    # FINETUNE.md --epochs 100

Every error names the file and line. Values are checked against the setting's type here, so a
typo in a recipe never reaches a training run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import re

import yaml

from certkit.errors import ConfigError

COMMANDS = ("pretrain", "finetune", "certify")
HEADER_KEYS = {"recipe", "version", "command", "models", "default_for", "extends", "description", "settings"}

#: certification protocol settings -> the certify config key they set
PROTOCOL_SETTINGS = {"n0": "int", "n": "int", "alpha": "float", "skip": "int", "max": "int", "batch": "int", "certifier": "str", "smoother": "str"}


class _Loader(yaml.SafeLoader):
    """Reads ``5e-4`` as a float (YAML 1.2), as certkit's config loader does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def _value(node: yaml.Node) -> Any:
    return yaml.load(yaml.serialize(node), Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


class RecipeError(ConfigError):
    """A recipe is unknown, malformed, or does not fit the command or model."""


@dataclass(frozen=True)
class Recipe:
    name: str
    command: str
    version: int
    path: Path
    models: tuple[str, ...] = ()
    default_for: tuple[str, ...] = ()
    description: str = ""
    extends: str | None = None
    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # setting -> "recipe NAME (file:line)"

    def check_model(self, model: str, aliases: tuple[str, ...] = ()) -> None:
        if self.models and not ({model, *aliases} & set(self.models)):
            raise RecipeError(f"recipe '{self.name}' is for {', '.join(self.models)}, not '{model}'.", f"Drop --recipe, or pick a recipe for '{model}' (see 'certkit plugins').")


def _lines(node: yaml.Node, shown: str) -> tuple[Any, dict[str, int]]:
    """The mapping's plain values and the line of each key (1-based)."""
    if not isinstance(node, yaml.MappingNode):
        raise RecipeError(f"{shown}:{node.start_mark.line + 1}: expected a mapping of key: value.", "See docs/dmae.md for the recipe format.")
    values, lines = {}, {}
    for key_node, value_node in node.value:
        key = key_node.value
        if key in values:
            raise RecipeError(f"{shown}:{key_node.start_mark.line + 1}: duplicate key '{key}'.", "Keep one of them.")
        values[key] = _value(value_node) if not isinstance(value_node, yaml.MappingNode) else value_node
        lines[key] = key_node.start_mark.line + 1
    return values, lines


def load_recipe(path: Path, settings_of: Mapping[str, Mapping[str, Any]], registered_as: str | None = None) -> Recipe:
    """Read and check one recipe file. ``settings_of[command]`` maps setting names to objects
    with ``check(value) -> str | None`` (what was expected when the value does not fit)."""
    shown = str(path)
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"), Loader=_Loader)
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read recipe {shown} ({exc}).", "Reinstall the plugin that ships it.") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{shown}:{mark.line + 1}" if mark is not None else shown
        raise RecipeError(f"{where}: invalid YAML ({getattr(exc, 'problem', None) or exc}).", "Fix the recipe file.") from None
    if node is None:
        raise RecipeError(f"{shown}: the recipe is empty.", "See docs/dmae.md for the recipe format.")
    header, lines = _lines(node, shown)
    unknown = sorted(set(header) - HEADER_KEYS)
    if unknown:
        raise RecipeError(f"{shown}:{lines[unknown[0]]}: unknown recipe key '{unknown[0]}'.", f"Known keys: {', '.join(sorted(HEADER_KEYS))}.")
    for required in ("recipe", "version", "command", "settings"):
        if required not in header:
            raise RecipeError(f"{shown}: the recipe has no '{required}'.", "Add it.")
    name, command = header["recipe"], header["command"]
    if registered_as is not None and name != registered_as:
        raise RecipeError(f"{shown}:{lines['recipe']}: recipe '{name}' is registered as '{registered_as}'.", "Make the two names equal.")
    if command not in COMMANDS:
        raise RecipeError(f"{shown}:{lines['command']}: command must be one of {', '.join(COMMANDS)}, got {command!r}.", "Fix the recipe file.")
    if not isinstance(header["version"], int) or isinstance(header["version"], bool):
        raise RecipeError(f"{shown}:{lines['version']}: version must be an integer, got {header['version']!r}.", "Fix the recipe file.")
    known = settings_of[command]
    settings_node = header["settings"]
    values, value_lines = _lines(settings_node, shown) if isinstance(settings_node, yaml.Node) else ({}, {})
    if not isinstance(settings_node, yaml.Node) and settings_node is not None:
        raise RecipeError(f"{shown}:{lines['settings']}: settings must be a mapping.", "Fix the recipe file.")
    for key, value in values.items():
        if isinstance(value, yaml.Node):
            value = values[key] = _value(value)
        where = f"{shown}:{value_lines[key]}"
        if key not in known:
            raise RecipeError(f"{where}: '{key}' is not a {command} setting.", f"Known settings: {', '.join(sorted(known))}.")
        expected = known[key].check(value)
        if expected is not None:
            raise RecipeError(f"{where}: '{key}' must be {expected}, got {value!r}.", "Fix the recipe file.")
    sources = {key: f"recipe {name} ({shown.rsplit('/', 1)[-1]}:{value_lines[key]})" for key in values}
    as_tuple = lambda key: tuple(header.get(key) or ())  # noqa: E731
    extends = header.get("extends")
    if extends is not None and not isinstance(extends, str):
        raise RecipeError(f"{shown}:{lines['extends']}: extends must name one recipe, got {extends!r}.", "Fix the recipe file.")
    return Recipe(name, command, header["version"], path, as_tuple("models"), as_tuple("default_for"), str(header.get("description") or ""), extends, values, sources)


class ProtocolSetting:
    """The type check of a certification protocol setting."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def check(self, value: Any) -> str | None:
        if self.kind == "int":
            return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
        if self.kind == "float":
            return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "a number"
        return None if isinstance(value, str) else "a string"


def _known_settings() -> dict[str, Mapping[str, Any]]:
    from certkit.training.options import settings_for

    return {"pretrain": settings_for("pretrain"), "finetune": settings_for("finetune"), "certify": {k: ProtocolSetting(v) for k, v in PROTOCOL_SETTINGS.items()}}


def get_recipe(name: str, command: str) -> Recipe:
    """The registered recipe ``name`` for ``command`` (its ``extends`` chain merged in)."""
    return _extended(_registered(name, command), seen=(name,))


def _registered(name: str, command: str) -> Recipe:
    from certkit import plugins

    registry = plugins.host().registry("recipes")
    noun = "protocol" if command == "certify" else "recipe"
    fitting = sorted(r.name for r in all_recipes() if r.command == command)
    if name not in registry:
        raise RecipeError(f"unknown {noun} '{name}'.", f"Known {noun}s for {command}: {', '.join(fitting) or 'none'}.")
    recipe = _load(registry.get(name))
    if recipe.command != command:
        raise RecipeError(f"'{name}' is a {recipe.command} recipe, not a {command} {noun}.", f"Known {noun}s for {command}: {', '.join(fitting) or 'none'}.")
    return recipe


def _extended(recipe: Recipe, seen: tuple[str, ...]) -> Recipe:
    parent_name = recipe.extends
    if not parent_name:
        return recipe
    if parent_name in seen:
        raise RecipeError(f"{recipe.path}: recipe '{recipe.name}' extends itself through {' -> '.join(seen)}.", "Break the cycle.")
    parent = _extended(_registered(parent_name, recipe.command), (*seen, parent_name))
    return replace(recipe, models=recipe.models or parent.models, values={**parent.values, **recipe.values}, sources={**parent.sources, **recipe.sources})


def _load(component) -> Recipe:
    obj = component.obj
    if isinstance(obj, Recipe):
        return obj
    return load_recipe(Path(obj), _known_settings(), registered_as=component.name)


def all_recipes() -> list[Recipe]:
    """Every registered recipe, read and checked."""
    from certkit import plugins

    return [_load(c) for c in plugins.host().registry("recipes")]


def default_recipe(command: str, model: str) -> Recipe | None:
    """The recipe that names ``model`` in its ``default_for`` (at most one may). A broken
    recipe file stops only the models it claims; others skip it (a plugin's typo must not stop
    every training run)."""
    from certkit import plugins

    found = []
    for component in plugins.host().registry("recipes"):
        try:
            recipe = _load(component)
        except RecipeError:
            if model in _claimed_models(component.obj):
                raise
            continue
        if recipe.command == command and model in recipe.default_for:
            found.append(recipe)
    if len(found) > 1:
        raise RecipeError(f"recipes {', '.join(r.name for r in found)} all claim to be the default {command} recipe of '{model}'.", "Keep default_for in one of them.")
    return _extended(found[0], seen=(found[0].name,)) if found else None


def _claimed_models(obj: Any) -> tuple[str, ...]:
    """``default_for`` of a recipe file read leniently (for deciding whose error it is)."""
    try:
        claimed = (yaml.safe_load(Path(obj).read_text(encoding="utf-8")) or {}).get("default_for") or ()
        return tuple(str(m) for m in claimed)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError, TypeError):
        return ()


def protocol_overrides(name: str) -> dict[str, Any]:
    """``certify.<key>`` overrides of the certification protocol ``name``."""
    recipe = get_recipe(name, "certify")
    return {f"certify.{key}": value for key, value in recipe.values.items()}
