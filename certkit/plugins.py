"""Plugin loading and the registries that registrar hooks fill.

Built-in components live in :mod:`certkit.builtins` and register through the same hooks as
outside plugins. Entry points of group ``certkit`` load lazily, once. A plugin that fails to
import or to register is recorded (name and error) and skipped, so one broken plugin never
takes the CLI down; ``certkit plugins`` shows it.

A component registered with the detail ``prefix=True`` names a *family*: registered as
``"timm/"``, it answers every name that starts with ``"timm/"`` (``"timm/resnet18"``), and its
factory receives the rest of the name as ``arch=``. Exact names win over families; the longest
matching family wins over shorter ones. An optional detail ``check_name(rest)`` may raise
:class:`certkit.errors.PluginError` for a rest the family cannot build.

Environment:
- ``CERTKIT_DISABLE_PLUGIN_AUTOLOAD=1``: load no entry points (built-ins only).
- ``CERTKIT_BLOCK_PLUGINS=a,b``: skip the entry points named ``a`` and ``b``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pluggy

from certkit import __version__, hookspecs
from certkit.errors import PluginError

ENTRY_POINT_GROUP = "certkit"
DISABLE_AUTOLOAD_ENV = "CERTKIT_DISABLE_PLUGIN_AUTOLOAD"
BLOCK_ENV = "CERTKIT_BLOCK_PLUGINS"
BUILTIN_PLUGINS = ("certkit.builtins",)

#: registry kind -> the registrar hook that fills it
KINDS = {
    "models": "certkit_register_models",
    "corruptions": "certkit_register_corruptions",
    "objectives": "certkit_register_objectives",
    "smoothers": "certkit_register_smoothers",
    "certifiers": "certkit_register_certifiers",
    "datasets": "certkit_register_datasets",
    "recipes": "certkit_register_recipes",
    "commands": "certkit_register_commands",
}


@dataclass(frozen=True)
class Component:
    """One registered thing: a model factory, a certifier factory, a dataset entry, ..."""

    kind: str
    name: str
    obj: Any
    plugin: str
    aliases: tuple[str, ...] = ()
    description: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class PluginInfo:
    """A plugin as ``certkit plugins`` shows it; ``error`` is set when it failed to load."""

    name: str
    version: str
    source: str
    error: str | None = None
    blocked: bool = False


class Registry:
    """Name -> component for one kind; the core decides what a duplicate means."""

    def __init__(self, kind: str, failed: Callable[[], list[PluginInfo]] | None = None) -> None:
        self.kind = kind
        self._failed = failed or list  # plugins that failed to load, named when a name is unknown
        self._by_name: dict[str, Component] = {}
        self._families: dict[str, Component] = {}  # prefix -> component registered with prefix=True
        self._ambiguous: dict[str, PluginError] = {}  # names two plugins registered
        self._canonical: list[Component] = []

    def add(self, component: Component) -> None:
        family = bool(component.details.get("prefix"))
        if family and component.aliases:
            raise PluginError(f"{self.kind[:-1]} family '{component.name}' of plugin '{component.plugin}' has aliases.", "A prefix component takes no aliases.")
        for key in (component.name, *component.aliases):
            clash = self._by_name.get(key) or self._families.get(key)
            if clash is not None:
                raise PluginError(
                    f"{self.kind[:-1]} name '{key}' is registered twice: by plugin '{clash.plugin}' "
                    f"and by plugin '{component.plugin}'.",
                    f"Uninstall one of them or block it with {BLOCK_ENV}=<name>.",
                )
        if family:
            self._families[component.name] = component
        else:
            for key in (component.name, *component.aliases):
                self._by_name[key] = component
        self._canonical.append(component)

    def mark_ambiguous(self, component: Component, clash: PluginError) -> None:
        """Make the clashing names unusable (with ``clash`` as the error) while every other
        name keeps working: one bad plugin must not take the whole registry down."""
        for key in (component.name, *component.aliases):
            if key in self._by_name or key in self._families:
                self._ambiguous[key] = clash

    def get(self, name: str) -> Component:
        if name in self._ambiguous:
            raise self._ambiguous[name]
        found = self._by_name.get(name)
        if found is not None:
            return found
        family = self._family_of(name)
        if family is not None:
            if family.name in self._ambiguous:
                raise self._ambiguous[family.name]
            return self._member(family, name)
        known = ", ".join(sorted([*self._by_name, *map(display_name, self._families.values())])) or "none"
        broken = "; ".join(f"{info.name} ({info.error})" for info in self._failed())
        hint = f" Plugins that failed to load, which may provide it: {broken}." if broken else ""
        raise PluginError(
            f"unknown {self.kind[:-1]} '{name}'.",
            f"Known {self.kind}: {known}.{hint} Run 'certkit plugins' to see what each plugin provides.",
        )

    def _family_of(self, name: str) -> Component | None:
        matches = [prefix for prefix in self._families if name.startswith(prefix)]
        return self._families[max(matches, key=len)] if matches else None

    def _member(self, family: Component, name: str) -> Component:
        """The family's component for one full name: its factory gets ``arch=<rest>``."""
        rest = name[len(family.name):]
        if not rest:
            raise PluginError(f"'{name}' names a {self.kind[:-1]} family, not one {self.kind[:-1]}.", f"Add a name after the prefix, e.g. {display_name(family)}.")
        check = family.details.get("check_name")
        if check is not None:
            check(rest)
        details = {k: v for k, v in family.details.items() if k not in ("prefix", "check_name")}
        return replace(family, name=name, obj=functools.partial(family.obj, arch=rest), details={**details, "family": family.name})

    def __contains__(self, name: str) -> bool:
        if name in self._by_name:
            return True
        family = self._family_of(name)
        return family is not None and len(name) > len(family.name)

    def __iter__(self) -> Iterator[Component]:
        return iter(self._canonical)

    def names(self) -> list[str]:
        """Registered names, families shown as ``prefix<arch>``."""
        return sorted(display_name(c) for c in self._canonical)


def one_line(exc: BaseException) -> str:
    """``ImportError: No module named 'x'``: the type and the first line of the message."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def display_name(component: Component) -> str:
    """``timm/<arch>`` for a family registered as ``timm/``, else the plain name."""
    return f"{component.name}<arch>" if component.details.get("prefix") else component.name


class PluginHost:
    """Owns the pluggy manager; loads plugins on first use and builds registries on demand."""

    def __init__(self) -> None:
        self._pm: pluggy.PluginManager | None = None
        self._registries: dict[str, Registry] = {}
        self._infos: dict[str, PluginInfo] = {}

    @property
    def manager(self) -> pluggy.PluginManager:
        if self._pm is None:
            self._pm = self._load()
        return self._pm

    def _load(self) -> pluggy.PluginManager:
        pm = pluggy.PluginManager("certkit")
        pm.add_hookspecs(hookspecs)
        for module_name in BUILTIN_PLUGINS:
            pm.register(importlib.import_module(module_name), name=module_name)
            self._infos[module_name] = PluginInfo(module_name, __version__, "builtin")
        if os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip() not in ("", "0", "false", "no"):
            return pm
        blocked = {n.strip() for n in os.environ.get(BLOCK_ENV, "").split(",") if n.strip()}
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in self._infos:
                continue  # the same distribution seen twice on sys.path
            version = ep.dist.version if ep.dist is not None else "?"
            info = PluginInfo(ep.name, version, f"entry point {ep.value}")
            self._infos[ep.name] = info
            if ep.name in blocked:
                info.blocked = True
                continue
            try:
                pm.register(ep.load(), name=ep.name)
            except Exception as exc:  # a broken plugin is reported, never fatal
                info.error = one_line(exc)
        self._drop_invalid(pm)
        return pm

    def _drop_invalid(self, pm: pluggy.PluginManager) -> None:
        """check_pending turns a misspelled hook implementation into a reported error."""
        while True:
            try:
                pm.check_pending()
                return
            except pluggy.PluginValidationError as exc:
                name = pm.get_name(exc.plugin) or str(exc.plugin)
                pm.unregister(exc.plugin)
                if name in self._infos:
                    self._infos[name].error = f"invalid hook implementation: {exc}"

    def registry(self, kind: str) -> Registry:
        """The registry of ``kind`` (see :data:`KINDS`), filled by calling each plugin's hook."""
        if kind not in self._registries:
            self._registries[kind] = self._build(kind)
        return self._registries[kind]

    def _build(self, kind: str) -> Registry:
        registry = Registry(kind, failed=lambda: [info for info in self._infos.values() if info.error])
        caller = getattr(self.manager.hook, KINDS[kind])
        # Call implementations one at a time so each component is attributed to its plugin
        # and a plugin whose hook raises is dropped without losing the others.
        for impl in caller.get_hookimpls():  # registration order: built-ins first, so they keep their names
            staged: list[Component] = []

            def register(name: str, component: Any, *, aliases: tuple[str, ...] = (), description: str = "", **details: Any) -> None:
                staged.append(Component(kind, name, component, impl.plugin_name, tuple(aliases), description, details))

            try:
                impl.function(register=register)
            except Exception as exc:
                info = self._infos.get(impl.plugin_name)
                if info is not None:
                    info.error = f"{KINDS[kind]} failed: {one_line(exc)}"
                continue
            for component in staged:
                try:
                    registry.add(component)
                except PluginError as clash:
                    registry.mark_ambiguous(component, clash)
                    info = self._infos.get(impl.plugin_name)
                    if info is not None:
                        info.error = str(clash)
        return registry

    def register_plugin(self, plugin: object, name: str) -> None:
        """Add a plugin object at run time (tests, notebooks); registries are rebuilt."""
        self.manager.register(plugin, name=name)
        self._infos[name] = PluginInfo(name, getattr(plugin, "__version__", "0"), "registered at run time")
        self._drop_invalid(self.manager)
        self._registries.clear()

    def unregister_plugin(self, name: str) -> None:
        self.manager.unregister(name=name)
        self._infos.pop(name, None)
        self._registries.clear()

    def plugins(self) -> list[PluginInfo]:
        self.manager  # noqa: B018 - loading fills the infos
        return list(self._infos.values())

    def components_of(self, plugin: str) -> list[Component]:
        return [c for kind in KINDS for c in self.registry(kind) if c.plugin == plugin]


_host: PluginHost | None = None


def host() -> PluginHost:
    """The process-wide plugin host (created on first use)."""
    global _host
    if _host is None:
        _host = PluginHost()
    return _host


def reset() -> None:
    """Forget loaded plugins and registries (tests, and after installing a plugin)."""
    global _host
    _host = None


def get(kind: str, name: str) -> Component:
    """Shortcut: ``get("models", "vit-b")``."""
    return host().registry(kind).get(name)
