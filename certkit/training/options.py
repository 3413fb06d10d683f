"""Every setting of ``certkit pretrain`` and ``certkit finetune``: one table, four layers.

Each effective value comes from one place, recorded next to it: the built-in default, a recipe
(``--recipe NAME``, or the chosen model's default recipe), the config file (``certkit.yaml:12``)
or a command-line flag, last wins in that order. ``run.json`` records all of them; a resume
compares the *identity* settings (what changes the trained weights) with the recorded ones.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from certkit.errors import ConfigError

PRETRAIN, FINETUNE = "pretrain", "finetune"
BOTH = (PRETRAIN, FINETUNE)
DEFAULT = "default"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _pair(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(_number(v) for v in value)


#: kind -> (check, words for an error message)
KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "float": (_number, "a number"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "pair": (_pair, "a list of two numbers, e.g. [0.08, 1.0]"),
    "map": (lambda v: isinstance(v, Mapping), "a mapping of option: value"),
}


@dataclass(frozen=True)
class Setting:
    """One training setting. ``default`` may differ per command; ``optional`` allows null.
    ``identity``: part of what a resumed run must keep (see :func:`identity_differences`)."""

    name: str
    kind: str
    help: str
    default: Any = None
    commands: tuple[str, ...] = BOTH
    optional: bool = False
    identity: bool = True
    finetune_default: Any = field(default=None, compare=False)  # when it differs from ``default``

    def default_for(self, command: str) -> Any:
        return self.finetune_default if command == FINETUNE and self.finetune_default is not None else self.default

    def check(self, value: Any) -> str | None:
        """None when ``value`` fits, else what was expected."""
        if value is None:
            return None if self.optional else f"{KINDS[self.kind][1]} (not null)"
        if self.kind == "float" and _number(value):
            return None
        ok, words = KINDS[self.kind]
        return None if ok(value) else words


def _s(name: str, kind: str, help: str, default: Any = None, **more: Any) -> Setting:
    return Setting(name, kind, help, default, **more)


SETTINGS: dict[str, Setting] = {s.name: s for s in (
    # what is trained, on what
    _s("model", "str", "registered model (pretrain: an encoder-decoder; finetune: a classifier)", optional=True),
    _s("objective", "str", "registered objective (pretrain: the command's argument; finetune: a supervised one)", "noisy-ce", commands=(FINETUNE,)),
    _s("init", "str", "pretrained weights to start from (none = from scratch)", commands=(FINETUNE,), optional=True),
    _s("data", "str", "dataset name or a folder of class folders", "fashion-mnist-mini"),
    _s("data_path", "str", "where the dataset lives (overrides datasets.<name>.path)", optional=True),
    _s("split", "str", "dataset split to train on", "train"),
    _s("max_images", "int", "train on the first N images only", optional=True),
    _s("label_fraction", "float", "train on a class-balanced fraction of the labelled images", optional=True),
    # noise and objective
    _s("sigma", "float", "noise std in [0,1]-pixel units (pretrain: the corruption's; finetune: the one model is trained for)", optional=True),
    _s("mask_ratio", "float", "fraction of patches masked (DMAE: 0.75)", commands=(PRETRAIN,), optional=True),
    _s("consistency", "bool", "noisy-ce: consistency regularization, 2 noise copies (objective default: on)", commands=(FINETUNE,), optional=True),
    _s("lbd", "float", "noisy-ce: weight of the KL-to-mean term (objective default 2.0)", commands=(FINETUNE,), optional=True),
    _s("eta", "float", "noisy-ce: weight of the entropy term (objective default 0.5; 0.1 at sigma >= 1)", commands=(FINETUNE,), optional=True),
    _s("label_smoothing", "float", "noisy-ce: label smoothing (objective default 0.1)", commands=(FINETUNE,), optional=True),
    _s("mixup", "float", "noisy-ce: mixup alpha, after the noise (0 = off)", 0.0, commands=(FINETUNE,)),
    _s("cutmix", "float", "noisy-ce: cutmix alpha (0 = off)", 0.0, commands=(FINETUNE,)),
    _s("mixup_prob", "float", "noisy-ce: probability of mixing a batch", 1.0, commands=(FINETUNE,)),
    _s("mixup_switch_prob", "float", "noisy-ce: probability of cutmix instead of mixup", 0.5, commands=(FINETUNE,)),
    _s("options", "map", "other objective options (-O key=value)", {}),
    _s("model_options", "map", "model factory options (-M key=value), stored with the weights", {}, commands=(FINETUNE,)),
    # augmentation (timm)
    _s("crop_scale", "pair", "RandomResizedCrop area range on the full-resolution image (none: fit to size)", optional=True),
    _s("crop_ratio", "pair", "RandomResizedCrop aspect-ratio range", [0.75, 1.3333333333333333]),
    _s("hflip", "float", "horizontal flip probability", 0.0),
    _s("rand_augment", "str", "timm RandAugment config string (none: off)", optional=True),
    _s("interpolation", "str", "crop/resize interpolation", "bicubic"),
    # optimisation
    _s("epochs", "int", "epochs to train (a resumed run stops at the same total)", 100),
    _s("batch", "int", "images per step and process (effective batch = batch x accum x processes)", 64, identity=False),
    _s("accum", "int", "gradient accumulation steps", 1, identity=False),
    _s("effective_batch", "int", "images per optimizer step over all processes; sets accum = effective_batch / (batch x processes)", optional=True, identity=False),
    _s("blr", "float", "base lr: lr = blr x effective batch / 256", 1.5e-4, finetune_default=1e-3),
    _s("lr", "float", "absolute lr (overrides blr)", optional=True),
    _s("min_lr", "float", "lr at the end of the cosine", 0.0, finetune_default=1e-6),
    _s("warmup_epochs", "float", "linear warm-up epochs (default: pretrain min(40, epochs/10), finetune min(5, epochs/10))", optional=True),
    _s("weight_decay", "float", "AdamW weight decay (not on biases, norms, tokens)", 0.05),
    _s("betas", "pair", "AdamW betas", [0.9, 0.95], finetune_default=[0.9, 0.999]),
    _s("clip_grad", "float", "clip the gradient norm to this value", optional=True),
    _s("layer_decay", "float", "layer-wise lr decay (default: 0.75 when fine-tuning a ViT from --init, off from scratch)", commands=(FINETUNE,), optional=True),
    _s("drop_path", "float", "stochastic depth rate", 0.1, commands=(FINETUNE,)),
    _s("linear_probe", "bool", "train only a BatchNorm + Linear head on frozen features", False, commands=(FINETUNE,)),
    _s("seed", "int", "seed of initial weights, data order, augmentation and noise", 0),
    # how it runs (a resume may change these)
    _s("amp", "str", "auto (bf16 on CUDA, off on CPU), off, bf16 or fp16", "auto", identity=False),
    _s("device", "str", "auto, cpu, cuda or cuda:N", "auto", identity=False),
    _s("workers", "int", "data-loader worker processes (default: 0 for in-memory datasets, else up to 8)", optional=True, identity=False),
    _s("save_every", "int", "keep a numbered checkpoint every k epochs", 20, identity=False),
    _s("eval_every", "int", "evaluate every k epochs on a fixed validation subset (0 = never)", 5, commands=(FINETUNE,), identity=False),
    _s("eval_images", "int", "images in the validation subset", 200, commands=(FINETUNE,), identity=False),
    _s("eval_n", "int", "noisy samples per image for the smoothed accuracy at radius 0 (Cohen CERTIFY, N0 = N)", 100, commands=(FINETUNE,), identity=False),
    _s("eval_split", "str", "split of the validation subset (default: the dataset's certification split)", commands=(FINETUNE,), optional=True, identity=False),
)}

#: settings that take their value from certkit's config file (``certkit.yaml``) when it sets them
CONFIG_KEYS = {"seed": "seed", "device": "device"}


def settings_for(command: str) -> dict[str, Setting]:
    return {name: s for name, s in SETTINGS.items() if command in s.commands}


@dataclass
class EffectiveSettings:
    """The value of every setting of one command, and where it came from."""

    command: str
    values: dict[str, Any]
    sources: dict[str, str]
    recipe: str | None = None

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def set(self, name: str, value: Any, source: str) -> None:
        self.values[name], self.sources[name] = value, source

    def identity(self) -> dict[str, Any]:
        """The settings a resume must keep, as plain JSON values."""
        return {name: _plain(value) for name, value in self.values.items() if SETTINGS[name].identity}

    def to_record(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "settings": {k: _plain(v) for k, v in self.values.items()}, "sources": dict(self.sources)}


def resolve(
    command: str,
    flags: Mapping[str, Any],
    recipe_values: Mapping[str, Any] | None = None,
    recipe_sources: Mapping[str, str] | None = None,
    recipe_name: str | None = None,
    config_values: Mapping[str, tuple[Any, str]] | None = None,
) -> EffectiveSettings:
    """Layer built-in defaults < recipe < config file < flags (a flag of None = not given)."""
    known = settings_for(command)
    effective = EffectiveSettings(command, {n: s.default_for(command) for n, s in known.items()}, {n: DEFAULT for n in known}, recipe_name)
    for name, value in (recipe_values or {}).items():
        effective.set(name, value, (recipe_sources or {}).get(name, f"recipe {recipe_name}"))
    for name, (value, source) in (config_values or {}).items():
        if name in known and source != DEFAULT:
            effective.set(name, value, source)
    for name, value in flags.items():
        if value is not None:
            if name not in known:
                raise ConfigError(f"'{name}' is not a {command} setting.", "See 'certkit {command} --help'.")
            effective.set(name, value, f"flag --{name.replace('_', '-')}")
    return effective


def auto_workers(in_memory: bool) -> int:
    """0 for datasets already in memory (a worker would only add start-up time); else up to 8
    processes, leaving one core for the training process."""
    if in_memory:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, cores - 1))


def identity_differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Names of identity settings whose values differ (a setting missing on one side differs)."""
    names = sorted(set(recorded) | set(current))
    return [n for n in names if json.dumps(recorded.get(n), sort_keys=True) != json.dumps(current.get(n), sort_keys=True)]


def format_table(effective: EffectiveSettings, derived: Mapping[str, tuple[Any, str]] = {}) -> str:  # noqa: B006 - read only
    """``name  value  source`` lines, for ``--print-config``; ``derived`` adds computed values
    (effective batch, lr, ...) with how they were computed."""
    rows = [(name, _shown(value), effective.sources[name]) for name, value in effective.values.items()]
    rows += [(name, _shown(value), how) for name, (value, how) in derived.items()]
    width = max(len(r[0]) for r in rows)
    value_width = min(max(len(r[1]) for r in rows), 40)
    head = f"certkit {effective.command}: effective settings" + (f" (recipe {effective.recipe})" if effective.recipe else " (no recipe)")
    return "\n".join([head, *(f"  {n:<{width}}  {v:<{value_width}}  {s}" for n, v, s in rows)])


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(_plain(value))
    return str(value)


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value
