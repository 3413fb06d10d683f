"""certkit.yaml -> typed, validated :class:`Settings`, with where every value came from.

Lookup order, last wins: built-in defaults < ``./certkit.yaml`` < ``--config FILE`` < CLI flags.
Layers merge key by key (``datasets.cifar10.path`` in one file keeps the other fields of that
entry), so a user file only needs the keys it changes.

YAML is composed into nodes (SafeLoader only) rather than loaded straight into dicts, because
every error must name the file and line of the offending key, and ``certkit config`` shows the
line each effective value came from.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from certkit.config_schema import (
    DATASET_FIELDS,
    SCHEMA,
    CertifyDefaults,
    DatasetConfig,
    Key,
    Leaf,
    Leaves,
    ModelConfig,
    Node,
    PredictDefaults,
    ReportDefaults,
    Settings,
    read_layer,
)
from certkit.errors import ConfigError

__all__ = [
    "CONFIG_FILENAME",
    "DEFAULT_SOURCE",
    "CertifyDefaults",
    "DatasetConfig",
    "ModelConfig",
    "PredictDefaults",
    "Provenance",
    "ReportDefaults",
    "Settings",
    "dump_settings_yaml",
    "load_settings",
    "settings_as_dict",
]

CONFIG_FILENAME = "certkit.yaml"
DEFAULT_SOURCE = "default"

@dataclass(frozen=True)
class Provenance:
    """Where one effective value came from: ``"default"``, ``"<path>:<line>"`` or ``"CLI --sigma"``.

    :func:`load_settings` reports sources as these plain strings; wrap one when code needs to
    ask a question of it.
    """

    source: str

    @property
    def is_default(self) -> bool:
        return self.source == DEFAULT_SOURCE


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float, as YAML 1.2 does.

    PyYAML follows YAML 1.1, where a float needs a dot, so ``alpha: 1e-3`` would be the string
    "1e-3" and fail as "wrong type" although the user wrote a number.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


class _Dumper(yaml.SafeDumper):
    """Block style, except lists of numbers (report.radii), which read best on one line."""


_Dumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)
)


# --- public API ----------------------------------------------------------------------------


def load_settings(
    config_file: Path | None = None,
    cli_overrides: Mapping[str, object] | None = None,
    cwd: Path | None = None,
) -> tuple[Settings, dict[str, str]]:
    """The effective settings and, for every leaf key ("certify.sigma"), where it came from.

    ``cli_overrides`` maps dotted keys to already-typed values; None means "flag not given".
    Relative paths in a YAML file are resolved against that file's folder, relative paths
    from the CLI against ``cwd``. Any problem raises :class:`ConfigError` naming file and line.
    """
    cwd = Path(os.path.abspath(cwd if cwd is not None else Path.cwd()))
    leaves = _default_leaves()
    for path, shown in _config_files(config_file, cwd):
        leaves.update(read_layer(_parse_yaml(path, shown), base_dir=path.parent))
    if cli_overrides:
        leaves.update(read_layer(_cli_tree(cli_overrides), base_dir=cwd))
    settings = _build(leaves)
    return settings, _sources(settings, leaves)


def settings_as_dict(settings: Settings) -> dict:
    """Plain str/int/float/list/dict data for YAML or JSON (and for results-file metadata)."""
    return {
        "output_dir": str(settings.output_dir),
        "device": settings.device,
        "seed": settings.seed,
        "certify": asdict(settings.certify),
        "predict": asdict(settings.predict),
        "report": {"radii": list(settings.report.radii)},
        "datasets": {
            name: {"type": entry.type, "path": _path_text(entry.path), "split": entry.split}
            for name, entry in settings.datasets.items()
        },
        "models": {
            name: {"checkpoints": {sigma: str(path) for sigma, path in entry.checkpoints.items()}, **({"spec": entry.spec} if entry.spec else {})}
            for name, entry in settings.models.items()
        },
    }


def dump_settings_yaml(settings: Settings) -> str:
    """The effective settings as YAML that :func:`load_settings` reads back to equal settings."""
    return yaml.dump(settings_as_dict(settings), Dumper=_Dumper, sort_keys=False, default_flow_style=False)


# --- finding and parsing files -------------------------------------------------------------


def _config_files(config_file: Path | None, cwd: Path) -> list[tuple[Path, str]]:
    """(absolute path, name to show in messages) of each file to apply, lowest priority first."""
    files: list[tuple[Path, str]] = []
    local = cwd / CONFIG_FILENAME
    if local.is_file():
        shown = CONFIG_FILENAME if cwd == Path(os.path.abspath(Path.cwd())) else str(local)
        files.append((local, shown))
    if config_file is not None:
        explicit = Path(os.path.abspath(cwd / config_file.expanduser()))
        if not explicit.exists():
            raise ConfigError(
                f"--config {config_file}: no such file.",
                "Check the path, or leave out --config to use ./certkit.yaml and the defaults.",
            )
        if not explicit.is_file():
            raise ConfigError(f"--config {config_file}: not a file.", "Pass the path of a YAML file.")
        if files and local.samefile(explicit):
            files.clear()  # the same file twice: keep it once, shown as the user named it
        files.append((explicit, str(config_file)))
    return files


def _parse_yaml(path: Path, shown: str) -> Node | None:
    """The document's node tree, or None for an empty file (which sets nothing)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{shown}: cannot read the file ({exc}).", "Check the path and that it is UTF-8 text."
        ) from None
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        return None if root is None else _to_tree(root, loader, shown)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{shown}:{mark.line + 1}" if mark is not None else shown
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if isinstance(exc, yaml.constructor.ConstructorError):
            fix = "Remove the '!' tag: certkit reads plain YAML values only."
        elif mark is not None:
            fix = f"Fix the syntax near line {mark.line + 1}, column {mark.column + 1}."
        else:
            fix = "Fix the YAML syntax."
        raise ConfigError(f"{where}: invalid YAML: {problem}.", fix) from None
    finally:
        loader.dispose()


#: The tags of plain lists and mappings. Scalars are built by the SafeLoader, which refuses
#: any other tag; lists and mappings are walked here, so their tags must be checked here.
_PLAIN_COLLECTION_TAGS = (yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG)


def _to_tree(node: yaml.Node, loader: _Loader, shown: str) -> Node:
    source = f"{shown}:{node.start_mark.line + 1}"
    if not isinstance(node, yaml.ScalarNode) and node.tag not in _PLAIN_COLLECTION_TAGS:
        # e.g. !!python/object/apply:os.system [...]: never constructed, but never silently
        # read as a plain list either.
        raise yaml.constructor.ConstructorError(None, None, f"could not determine a constructor for the tag {node.tag!r}", node.start_mark)
    if isinstance(node, yaml.SequenceNode):
        return Node([_to_tree(item, loader, shown) for item in node.value], source, source)
    if not isinstance(node, yaml.MappingNode):
        return Node(loader.construct_object(node), source, source)
    loader.flatten_mapping(node)  # apply "<<" merge keys as yaml.safe_load would
    items: dict[object, Node] = {}
    for key_node, value_node in node.value:
        key_source = f"{shown}:{key_node.start_mark.line + 1}"
        if not isinstance(key_node, yaml.ScalarNode):
            raise ConfigError(f"{key_source}: a key must be a plain name, not a list or mapping.", "Fix the key.")
        key = loader.construct_object(key_node)
        if key in items:
            raise ConfigError(
                f"{key_source}: duplicate key {key} (first at {items[key].key_source}).", "Keep one of them."
            )
        child = _to_tree(value_node, loader, shown)
        child.key_source = key_source
        items[key] = child
    return Node(items, source, source)


def _cli_tree(overrides: Mapping[str, object]) -> Node:
    """CLI flags as the same node tree a YAML file gives, so one validator checks both."""
    root = Node({}, "CLI", "CLI")
    for dotted, value in overrides.items():
        if value is None:
            continue
        parts = _split_key(dotted)
        flag = "--checkpoint" if parts[0] == "models" else f"--{str(parts[-1]).replace('_', '-')}"
        source = f"CLI {flag}"
        node = root
        for part in parts[:-1]:
            node = node.value.setdefault(part, Node({}, source, source))  # type: ignore[union-attr]
        node.value[parts[-1]] = _wrap(value, source)  # type: ignore[index]
    return root


def _split_key(dotted: str) -> tuple[str, ...]:
    """Split a dotted key; dataset names and sigmas ("0.25") may themselves contain dots."""
    head, _, rest = dotted.partition(".")
    if head == "models" and ".checkpoints." in rest:
        name, _, sigma = rest.partition(".checkpoints.")
        return ("models", name, "checkpoints", sigma)
    if head == "datasets" and rest.count(".") >= 1:
        name, _, field = rest.rpartition(".")
        return ("datasets", name, field)
    return tuple(dotted.split("."))


def _wrap(value: object, source: str) -> Node:
    if isinstance(value, (list, tuple)):
        return Node([_wrap(item, source) for item in value], source, source)
    return Node(value, source, source)


# --- merging and building ------------------------------------------------------------------


def _default_leaves() -> Leaves:
    """The built-in defaults (``Settings()``) as leaves, each with source "default"."""
    defaults = Settings()
    leaves: Leaves = {}
    for key, spec in SCHEMA.items():
        if isinstance(spec, Leaf):
            leaves[(key,)] = (getattr(defaults, key), DEFAULT_SOURCE)
        elif key not in ("datasets", "models"):
            section = getattr(defaults, key)
            for name in spec:
                leaves[(key, name)] = (getattr(section, name), DEFAULT_SOURCE)
    for name, entry in defaults.datasets.items():
        leaves[("datasets", name)] = (None, DEFAULT_SOURCE)
        for field in DATASET_FIELDS:
            leaves[("datasets", name, field)] = (getattr(entry, field), DEFAULT_SOURCE)
    return leaves


def _build(leaves: Leaves) -> Settings:
    def get(*key: object) -> object:
        return leaves[key][0]

    def section(name: str) -> dict[str, object]:
        return {field: get(name, field) for field in SCHEMA[name]}  # type: ignore[union-attr]

    datasets: dict[str, DatasetConfig] = {}
    models: dict[str, ModelConfig] = {}
    for key in leaves:
        if len(key) == 2 and key[0] == "datasets":
            name = str(key[1])
            fields = {f: leaves.get(("datasets", name, f), (None, ""))[0] for f in DATASET_FIELDS}
            datasets[name] = DatasetConfig(type=fields["type"] or name, path=fields["path"], split=fields["split"])  # type: ignore[arg-type]
        elif len(key) == 2 and key[0] == "models":
            name = str(key[1])
            checkpoints = {k[3]: v for k, (v, _) in leaves.items() if len(k) == 4 and k[:2] == ("models", name)}
            spec = leaves.get(("models", name, "spec"), (None, ""))[0]
            models[name] = ModelConfig(checkpoints=dict(sorted(checkpoints.items())), spec=spec)  # type: ignore[arg-type]
    return Settings(
        output_dir=get("output_dir"),  # type: ignore[arg-type]
        device=get("device"),  # type: ignore[arg-type]
        seed=get("seed"),  # type: ignore[arg-type]
        certify=CertifyDefaults(**section("certify")),  # type: ignore[arg-type]
        predict=PredictDefaults(**section("predict")),  # type: ignore[arg-type]
        report=ReportDefaults(radii=tuple(get("report", "radii"))),  # type: ignore[arg-type]
        datasets=datasets,
        models=models,
    )


def _sources(settings: Settings, leaves: Leaves) -> dict[str, str]:
    """dotted key -> source for every leaf of ``settings_as_dict``, in the order it prints."""
    sources: dict[str, str] = {}

    def walk(value: object, key: Key) -> None:
        if isinstance(value, dict) and value:
            for child_key, child in value.items():
                walk(child, (*key, child_key))
            return
        found = leaves.get(key)
        if found is None and isinstance(value, dict):  # an empty entry: where it was declared
            found = leaves.get(key[:-1])
        sources[".".join(str(part) for part in key)] = found[1] if found else DEFAULT_SOURCE

    walk(settings_as_dict(settings), ())
    return sources


def _path_text(path: Path | None) -> str | None:
    return None if path is None else str(path)
