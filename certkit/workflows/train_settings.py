"""From the command line to the effective settings of a training run, and from those to what
the trainer takes: recipe lookup, layering (:mod:`certkit.training.options`), the values that
are worked out rather than given (warm-up, workers, accumulation), and the run record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from certkit import plugins
from certkit.config import Settings, load_settings
from certkit.data.transforms import TrainAugmentation
from certkit.errors import CertkitError
from certkit.recipes import RecipeError, default_recipe, get_recipe
from certkit.training import TrainSettings
from certkit.training.options import CONFIG_KEYS, FINETUNE, PRETRAIN, EffectiveSettings, auto_workers, resolve
from certkit.training.run_record import RunRecord
from certkit.workflows.train import DataRequest, FinetuneOptions, find_objective


@dataclass
class ResolvedRun:
    """Everything one ``certkit pretrain/finetune`` invocation resolved to."""

    effective: EffectiveSettings
    config: Settings
    out_dir: Path
    objective: str


def resolve_run(command: str, flags: dict[str, Any], recipe_name: str | None, config_file: Path | None, objective: str | None = None, out_dir: Path | None = None) -> ResolvedRun:
    """Layer defaults < recipe < config file < flags and work out the automatic values.

    The recipe is ``recipe_name``, else the default recipe of the chosen model (if any)."""
    config, sources = load_settings(config_file, {})
    config_values = {name: (getattr(config, key), sources.get(key, "default")) for name, key in CONFIG_KEYS.items()}
    objective = objective if command == PRETRAIN else (flags.get("objective") or "noisy-ce")
    component = find_objective(objective, supervised=command == FINETUNE)
    recipe = get_recipe(recipe_name, command) if recipe_name else None
    model, model_source = _model(command, flags, recipe, component)
    model_component = plugins.get("models", model)
    if recipe is not None:
        recipe.check_model(model_component.name, model_component.aliases)
    else:
        recipe = default_recipe(command, model_component.name)
    effective = resolve(command, flags, recipe.values if recipe else None, recipe.sources if recipe else None, recipe.name if recipe else None, config_values)
    effective.set("model", model, model_source)
    if command == FINETUNE:
        effective.set("objective", component.name, effective.sources["objective"])
    _accumulation_source(effective)
    _check_ranges(effective)
    _auto_values(effective, config)
    name = out_dir or _default_out_dir(command, component.name, effective)
    return ResolvedRun(effective, config, Path(name), component.name)


def _model(command: str, flags: dict[str, Any], recipe, component) -> tuple[str, str]:
    if flags.get("model"):
        return flags["model"], "flag --model"
    if recipe is not None and recipe.models:
        return recipe.models[0], f"recipe {recipe.name}"
    if command == PRETRAIN:
        model = component.details.get("default_model")
        if model is None:
            raise CertkitError(f"objective '{component.name}' names no default model.", "Pass --model.")
        return model, f"default (objective {component.name}'s model)"
    return "vit-mini", "default"


def _accumulation_source(effective: EffectiveSettings) -> None:
    """``--accum`` on the command line replaces a recipe's effective batch; giving both
    ``--accum`` and ``--effective-batch`` is ambiguous."""
    accum_flag = effective.sources["accum"].startswith("flag")
    if effective["effective_batch"] is None or not accum_flag:
        return
    if effective.sources["effective_batch"].startswith("flag"):
        raise CertkitError("--accum and --effective-batch both set the accumulation.", "Pass one of them.")
    effective.set("effective_batch", None, f"flag --accum (replaces {effective.sources['effective_batch']})")


def _check_ranges(effective: EffectiveSettings) -> None:
    values = effective.values
    for name in ("epochs", "batch", "accum", "save_every"):
        if values[name] < 1:
            raise CertkitError(f"{name.replace('_', '-')} must be >= 1, got {values[name]} ({effective.sources[name]}).", "Pass a positive value.")
    if values["workers"] is not None and values["workers"] < 0:
        raise CertkitError(f"--workers must be >= 0, got {values['workers']}.", "Pass 0 to load in the training process, or a number of worker processes.")
    if values["amp"] not in ("auto", "off", "bf16", "fp16"):
        raise CertkitError(f"amp must be auto, off, bf16 or fp16, got '{values['amp']}' ({effective.sources['amp']}).", "Pass e.g. --amp off.")
    if effective.command == FINETUNE:
        if values["sigma"] is None:
            raise CertkitError("finetune needs the noise level to train for.", "Pass --sigma (e.g. 0.25), or a --recipe that sets it.")
        if values["eval_every"] < 0 or values["eval_images"] < 1 or values["eval_n"] < 10:
            raise CertkitError("--eval-every must be >= 0, --eval-images >= 1 and --eval-n >= 10 (fewer samples can never certify at alpha 0.001).", "Pass e.g. --eval-every 5 --eval-images 200 --eval-n 100.")


def _auto_values(effective: EffectiveSettings, config: Settings) -> None:
    """Values left to certkit, resolved here so that run.json and --print-config show them."""
    values, command = effective.values, effective.command
    if values["warmup_epochs"] is None:
        cap = 40.0 if command == PRETRAIN else 5.0
        effective.set("warmup_epochs", min(cap, values["epochs"] / 10), f"default (auto: min({cap:g}, epochs / 10))")
    if values["workers"] is None:
        lazy = _reads_files(values["data"], dict(config.datasets))
        effective.set("workers", auto_workers(in_memory=not lazy), f"default (auto: {'files read per image' if lazy else 'dataset in memory'})")


def _reads_files(name: str, configured: dict[str, Any]) -> bool:
    """Whether the dataset ``name`` reads a file per image (an image folder, ImageNet), which is
    what loader workers are for; decided from its type, before (and whether or not) it opens."""
    entry = configured.get(name)
    kind = (entry.type or name) if entry is not None else name
    registry = plugins.host().registry("datasets")
    if kind in registry:
        return bool(getattr(registry.get(kind).obj, "lazy", False))
    return Path(name).expanduser().is_dir()  # a folder of class folders


def _default_out_dir(command: str, objective: str, effective: EffectiveSettings) -> Path:
    model = str(effective["model"]).replace("/", "-")
    if command == PRETRAIN:
        return Path("runs") / f"pretrain-{objective}-{model}"
    suffix = "" if objective == "noisy-ce" else f"-{objective}"
    return Path("runs") / f"finetune-{model}{suffix}-sigma{effective['sigma']:g}"


def _path(value: Any) -> Path | None:
    return None if value is None else Path(value).expanduser()


def _pair(value: Any) -> tuple[float, float] | None:
    return None if value is None else (float(value[0]), float(value[1]))


def train_settings(run: ResolvedRun, resume: bool, accept_changes: bool) -> TrainSettings:
    v = run.effective.values
    accum = v["accum"]
    if v.get("effective_batch") is not None:
        accum = _accumulation(v["effective_batch"], v["batch"], run.effective)
    return TrainSettings(
        out_dir=run.out_dir, epochs=v["epochs"], batch_size=v["batch"], accum_iter=accum, blr=v["blr"], lr=v["lr"], min_lr=v["min_lr"],
        warmup_epochs=v["warmup_epochs"], weight_decay=v["weight_decay"], betas=_pair(v["betas"]), clip_grad=v["clip_grad"], amp=v["amp"],
        save_every=v["save_every"], seed=v["seed"], device=v["device"], num_workers=v["workers"], resume=resume,
        accept_changes=accept_changes, eval_every=v.get("eval_every", 0) or 0,
    )


def _accumulation(target: int, batch: int, effective: EffectiveSettings) -> int:
    """Accumulation steps that make ``batch`` x accum x processes equal the recipe's effective batch."""
    from certkit.training.distributed import world_size_from_env

    per_step = batch * world_size_from_env()
    if target % per_step:
        raise CertkitError(
            f"effective batch {target} ({effective.sources['effective_batch']}) is not a multiple of --batch {batch} x {world_size_from_env()} processes.",
            "Change --batch so that it divides, or pass --effective-batch (or --accum) yourself.",
        )
    return target // per_step


def data_request(run: ResolvedRun) -> DataRequest:
    v = run.effective.values
    augmentation = TrainAugmentation(crop_scale=_pair(v["crop_scale"]), crop_ratio=_pair(v["crop_ratio"]), hflip=v["hflip"], rand_augment=v["rand_augment"], interpolation=v["interpolation"])
    return DataRequest(v["data"], _path(v["data_path"]), v["split"], v["max_images"], v["label_fraction"], augmentation)


def pretrain_options(run: ResolvedRun) -> dict[str, Any]:
    v = run.effective.values
    return {**v["options"], **{k: v[k] for k in ("sigma", "mask_ratio") if v[k] is not None}}


def finetune_options(run: ResolvedRun) -> FinetuneOptions:
    v = run.effective.values
    return FinetuneOptions(
        sigma=v["sigma"], init=_path(v["init"]), objective=v["objective"], objective_options=objective_options(v), layer_decay=v["layer_decay"],
        drop_path=0.0 if v["linear_probe"] else v["drop_path"], linear_probe=v["linear_probe"], model_overrides=dict(v["model_options"]),
        eval_images=v["eval_images"], eval_n=v["eval_n"], eval_split=v["eval_split"],
    )


def objective_options(v: dict[str, Any]) -> dict[str, Any]:
    """Only settings that are set become objective options, so an objective that does not
    take them (e.g. stability) refuses them instead of ignoring them."""
    options = dict(v["options"])
    if v["consistency"] is False:
        options.update(consistency_lambda=0.0, consistency_eta=0.0)
    else:
        if v["consistency"] is True:
            options.setdefault("consistency_lambda", 2.0)
        if v["lbd"] is not None:
            options["consistency_lambda"] = v["lbd"]
        if v["eta"] is not None:
            options["consistency_eta"] = v["eta"]
    if v["label_smoothing"] is not None:
        options["label_smoothing"] = v["label_smoothing"]
    if v["mixup"] or v["cutmix"]:
        options.update(mixup=v["mixup"], cutmix=v["cutmix"], mixup_prob=v["mixup_prob"], mixup_switch_prob=v["mixup_switch_prob"])
    return options


def run_record(run: ResolvedRun, command: str) -> RunRecord:
    """``command``: the command line that started the run (for run.json and resume hints)."""
    record = run.effective.to_record()
    return RunRecord(record["recipe"], record["settings"], record["sources"], run.effective.identity(), command)


__all__ = ["RecipeError", "ResolvedRun", "data_request", "finetune_options", "pretrain_options", "resolve_run", "run_record", "train_settings"]
