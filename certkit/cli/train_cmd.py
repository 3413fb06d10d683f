"""``certkit pretrain OBJECTIVE`` and ``certkit finetune``: thin wrappers over the trainer.

Every setting flag defaults to None ("not given"), so that a flag overrides a recipe value
only when it is on the command line; the help shows the built-in default. Settings are listed
in :mod:`certkit.training.options`; ``--print-config`` shows each one's value and source.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from certkit.checkpoints import read_weights
from certkit.cli import options as opt
from certkit.cli.launch import NprocPerNode, launch, wants_launch
from certkit.cli.train_progress import EpochProgress
from certkit.errors import CertkitError, DataError
from certkit.training.options import SETTINGS, format_table
from certkit.training.trainer import TrainingInterrupted


def _flag(name: str, *names: str, kind: type = float, extra: str = "") -> Any:
    setting = SETTINGS[name]
    default = setting.default if setting.finetune_default is None else f"{setting.default} (finetune: {setting.finetune_default})"
    shown = "" if default is None or default == {} else f" (default: {default})"
    return Annotated[Optional[kind], typer.Option(*(names or (f"--{name.replace('_', '-')}",)), help=f"{setting.help}{extra}.{shown}", show_default=False)]


Recipe = Annotated[Optional[str], typer.Option("--recipe", help="A registered recipe (see 'certkit plugins'): its settings under your flags. Default: the model's own recipe, if it has one.", show_default=False)]
PrintConfig = Annotated[bool, typer.Option("--print-config", "--dry-run", help="Print every effective setting with its source (default, recipe, config file:line, flag) and exit.")]
AcceptChanges = Annotated[bool, typer.Option("--accept-changes", help="Resume even though settings differ from the run's; the change is recorded in run.json.")]
Resume = Annotated[bool, typer.Option("--resume/--no-resume", help="Continue the run in --out-dir if there is one (refused with --no-resume).")]
OutDir = Annotated[Optional[Path], typer.Option("--out-dir", help="Run directory (checkpoints, log.jsonl, summary.csv, run.json, weights.safetensors).", show_default=False)]
Options = Annotated[Optional[list[str]], typer.Option("--option", "-O", help="Other objective option as key=value (repeatable), e.g. -O loss_on=masked.", show_default=False)]
Pair = str  # "LOW,HIGH" on the command line

Data = _flag("data", kind=str)
DataPath = _flag("data_path", kind=Path)
Split = _flag("split", kind=str)
MaxImages = _flag("max_images", "--max", kind=int)
LabelFraction = _flag("label_fraction")
CropScale = _flag("crop_scale", kind=Pair, extra=" (LOW,HIGH or none)")
CropRatio = _flag("crop_ratio", kind=Pair, extra=" (LOW,HIGH)")
HFlip = _flag("hflip")
RandAugment = _flag("rand_augment", kind=str, extra=" (e.g. rand-m9-mstd0.5-inc1, or none)")
Interpolation = _flag("interpolation", kind=str)
Epochs = _flag("epochs", kind=int)
Batch = _flag("batch", kind=int)
Accum = _flag("accum", kind=int)
EffectiveBatch = _flag("effective_batch", kind=int)
Blr = _flag("blr")
Lr = _flag("lr")
MinLr = _flag("min_lr")
Warmup = _flag("warmup_epochs")
WeightDecay = _flag("weight_decay")
Betas = _flag("betas", kind=Pair, extra=" (B1,B2)")
ClipGrad = _flag("clip_grad")
Amp = _flag("amp", kind=str)
SaveEvery = _flag("save_every", kind=int)
Workers = _flag("workers", kind=int)
Seed = _flag("seed", kind=int)
Device = _flag("device", kind=str)


def _pair(text: str | None, flag: str) -> list[float] | None | str:
    if text is None:
        return None
    if text.strip().lower() == "none":
        return "none"
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise CertkitError(f"{flag} '{text}' is not two numbers LOW,HIGH.", f"Pass e.g. {flag} 0.08,1.") from None
    return [low, high]


def _nullable(value: Any) -> Any:
    """'none' on the command line turns a setting off (crop, RandAugment)."""
    return "none" if isinstance(value, str) and value.strip().lower() == "none" else value


def _common_flags(**given: Any) -> dict[str, Any]:
    flags = dict(given)
    for name, flag in (("crop_scale", "--crop-scale"), ("crop_ratio", "--crop-ratio"), ("betas", "--betas")):
        flags[name] = _pair(flags.get(name), flag)
    flags["rand_augment"] = _nullable(flags.get("rand_augment"))
    if flags.get("data_path") is not None:
        flags["data_path"] = str(flags["data_path"])
    return flags


def _off(flags: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Flags given as 'none' set the setting to null; None stays 'not given'."""
    return {k: v for k, v in flags.items() if v != "none"}, [k for k, v in flags.items() if v == "none"]


def _run(ctx: typer.Context, command: str, flags: dict[str, Any], recipe: str | None, config_file: Path | None, out_dir: Path | None, resume: bool, accept_changes: bool, print_config: bool, objective: str | None = None) -> None:
    from certkit.workflows import train_settings as ts
    from certkit.workflows.train import plan_finetune, plan_pretrain

    given, nulled = _off(flags)
    run = ts.resolve_run(command, given, recipe, config_file, objective=objective, out_dir=out_dir)
    for name in nulled:
        run.effective.set(name, None, f"flag --{name.replace('_', '-')} none")
    settings = ts.train_settings(run, resume, accept_changes)
    record = ts.run_record(run, _command_line(ctx))
    try:
        if command == "pretrain":
            plan = plan_pretrain(run.objective, run.effective["model"], ts.data_request(run), settings, ts.pretrain_options(run), run.config.datasets, record)
        else:
            plan = plan_finetune(run.effective["model"], ts.data_request(run), settings, ts.finetune_options(run), run.config.datasets, record)
    except DataError as error:
        if not print_config:
            raise
        _print_config(run, settings, None, out_dir, [f"the data cannot be opened yet, so the model and data checks did not run: {error}"])
        return
    console = Console(highlight=False, markup=False, emoji=False)  # run paths are user text: printed literally
    if print_config:
        _print_config(run, settings, plan, out_dir, plan.notes)
        return
    console.print(f"run directory: {run.out_dir}", markup=False)
    try:
        with EpochProgress(console) as progress:
            outcome = plan.run(progress)
    except TrainingInterrupted as stop:
        if os.environ.get("RANK", "0") == "0":  # under torchrun, one line from rank 0
            Console(stderr=True, highlight=False).print(_interrupted_line(stop, record.command, out_dir is None, run.out_dir), markup=False, soft_wrap=True)
        raise SystemExit(130) from None
    if command == "pretrain":
        console.print(f"pretrained weights: {outcome.weights}\nfine-tune them: certkit finetune --init {outcome.weights} --sigma 0.25 ...", markup=False)
    else:
        best = outcome.out_dir / "weights-best.safetensors"
        extra = f"\nbest validation epoch: {best}" if best.exists() else ""
        smoother = read_weights(outcome.weights).input_spec.noise or "gaussian"
        console.print(f"weights: {outcome.weights}{extra}\ncertify them: certkit certify --model {run.effective['model']} --sigma {run.effective['sigma']:g} --smoother {smoother} --checkpoint {outcome.weights}", markup=False)


def _print_config(run, settings, plan, out_dir: Path | None, notes: list[str]) -> None:
    """The effective settings, the values worked out from them, and the plan's notes."""
    effective = run.effective
    derived = {
        "out_dir": (str(run.out_dir), "flag --out-dir" if out_dir else "default (from the command and model)"),
        "accum (used)": (settings.accum_iter, "effective_batch / (batch x processes)" if effective["effective_batch"] else "accum"),
        "lr (used)": (settings.base_lr(_world()), "lr" if settings.lr is not None else f"blr x {settings.effective_batch(_world())} / 256"),
    }
    if plan is not None:
        for name, value in plan.record.settings.items():  # values the workflow worked out (e.g. layer decay)
            if plan.record.sources.get(name) != effective.sources.get(name):
                effective.set(name, value, plan.record.sources[name])
        described = plan.task.describe()
        derived["input_spec"] = (_spec_text(plan.task.model.input_spec), plan.spec_source)
        used = described.get("objective_options") or described.get("options")
        if used:
            derived["objective options (used)"] = (used, f"objective {described['objective']} with the settings above")
    console = Console(highlight=False, markup=False, emoji=False)  # run paths are user text: printed literally
    console.print(format_table(effective, derived), soft_wrap=True, markup=False)
    for note in notes:
        console.print(f"note: {note}", markup=False, soft_wrap=True)


def _command_line(ctx: typer.Context) -> str:
    """The command as given: ``certkit <command>`` and the parameters that came from the
    command line, in declaration order (what resumes the run)."""
    import shlex

    words = ctx.command_path.split()
    words[0] = "certkit"
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if source is None or source.name != "COMMANDLINE":
            continue
        value = ctx.params[param.name]
        if param.param_type_name == "argument":
            words.append(str(value))
        elif param.is_flag:
            words.append(param.opts[0] if value else (param.secondary_opts or param.opts)[0])
        else:
            for item in value if param.multiple else [value]:
                words += [param.opts[0], str(item)]
    return shlex.join(words)


def _world() -> int:
    from certkit.training.distributed import world_size_from_env

    return world_size_from_env()


def _spec_text(spec) -> str:
    return f"{spec.channels}x{spec.image_size[0]}x{spec.image_size[1]}, {spec.num_classes} classes"


def _interrupted_line(stop: TrainingInterrupted, command: str, default_out_dir: bool, out_dir: Path) -> str:
    resume = command if not default_out_dir else f"{command} --out-dir {out_dir}"
    if stop.committed == 0:
        return f"interrupted in epoch 1 of {stop.epochs}: no epoch is checkpointed yet; rerun to start again: {resume}"
    done = "epoch 1" if stop.committed == 1 else f"epochs 1-{stop.committed}"
    return f"interrupted: {done} of {stop.epochs} safely checkpointed in {out_dir / 'checkpoint-last.pth'}; resume with: {resume}"


def pretrain(
    ctx: typer.Context,
    objective: Annotated[str, typer.Argument(help="Registered pretraining objective, e.g. dmae.")],
    recipe: Recipe = None,
    model: opt.Model = None,
    data: Data = None,
    data_path: DataPath = None,
    split: Split = None,
    max_images: MaxImages = None,
    label_fraction: LabelFraction = None,
    sigma: _flag("sigma", extra=" (DMAE: 0.25; 0 with -O loss_on=masked is MAE)") = None,
    mask_ratio: _flag("mask_ratio") = None,
    option: Options = None,
    crop_scale: CropScale = None,
    crop_ratio: CropRatio = None,
    hflip: HFlip = None,
    rand_augment: RandAugment = None,
    interpolation: Interpolation = None,
    epochs: Epochs = None,
    batch: Batch = None,
    accum: Accum = None,
    effective_batch: EffectiveBatch = None,
    blr: Blr = None,
    lr: Lr = None,
    min_lr: MinLr = None,
    warmup_epochs: Warmup = None,
    weight_decay: WeightDecay = None,
    betas: Betas = None,
    clip_grad: ClipGrad = None,
    amp: Amp = None,
    save_every: SaveEvery = None,
    workers: Workers = None,
    seed: Seed = None,
    device: Device = None,
    out_dir: OutDir = None,
    resume: Resume = True,
    accept_changes: AcceptChanges = False,
    print_config: PrintConfig = False,
    config_file: opt.ConfigFile = None,
    nproc_per_node: NprocPerNode = 1,
) -> None:
    """Self-supervised pretraining with a registered objective (e.g. `certkit pretrain dmae`).

    The defaults shown are certkit's own; a recipe (--recipe, or the model's own) replaces them
    and flags replace both. --print-config shows every value that applies and its source.
    """
    if wants_launch(nproc_per_node):
        return launch(nproc_per_node)
    flags = _common_flags(
        model=model, data=data, data_path=data_path, split=split, max_images=max_images, label_fraction=label_fraction, sigma=sigma,
        mask_ratio=mask_ratio, options=opt.parse_key_values(option or []) or None, crop_scale=crop_scale, crop_ratio=crop_ratio, hflip=hflip,
        rand_augment=rand_augment, interpolation=interpolation, epochs=epochs, batch=batch, accum=accum, effective_batch=effective_batch, blr=blr,
        lr=lr, min_lr=min_lr, warmup_epochs=warmup_epochs, weight_decay=weight_decay, betas=betas, clip_grad=clip_grad, amp=amp,
        save_every=save_every, workers=workers, seed=seed, device=device,
    )
    _run(ctx, "pretrain", flags, recipe, config_file, out_dir, resume, accept_changes, print_config, objective=objective)


def finetune(
    ctx: typer.Context,
    sigma: _flag("sigma", extra=" (one model per sigma; required unless the recipe sets it)") = None,
    recipe: Recipe = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Registered classifier (see 'certkit plugins'; e.g. timm/resnet18 with certkit-gaussian). (default: vit-mini)", show_default=False)] = None,
    objective: _flag("objective", kind=str, extra=": noisy-ce (Gaussian noise + cross-entropy, optional consistency and mixup), or a plugin's (e.g. stability)") = None,
    option: Annotated[Optional[list[str]], typer.Option("--option", "-O", help="Other objective option as key=value (repeatable), e.g. -O gamma=6 for stability.", show_default=False)] = None,
    model_option: Annotated[Optional[list[str]], typer.Option("--model-option", "-M", help="Model factory option as key=value (repeatable; stored with the weights), e.g. -M depth=32.", show_default=False)] = None,
    init: _flag("init", kind=Path, extra=" (certkit safetensors or a DMAE/MAE .pth)") = None,
    data: Data = None,
    data_path: DataPath = None,
    split: Split = None,
    max_images: MaxImages = None,
    label_fraction: LabelFraction = None,
    consistency: Annotated[Optional[bool], typer.Option("--consistency/--no-consistency", help=SETTINGS["consistency"].help + "; --no-consistency --label-smoothing 0 is Cohen et al.'s plain Gaussian augmentation.", show_default=False)] = None,
    lbd: _flag("lbd") = None,
    eta: _flag("eta") = None,
    label_smoothing: _flag("label_smoothing") = None,
    mixup: _flag("mixup") = None,
    cutmix: _flag("cutmix") = None,
    mixup_prob: _flag("mixup_prob") = None,
    mixup_switch_prob: _flag("mixup_switch_prob") = None,
    crop_scale: CropScale = None,
    crop_ratio: CropRatio = None,
    hflip: HFlip = None,
    rand_augment: RandAugment = None,
    interpolation: Interpolation = None,
    layer_decay: _flag("layer_decay", extra="; 1 = none") = None,
    drop_path: _flag("drop_path") = None,
    linear_probe: Annotated[Optional[bool], typer.Option("--linear-probe/--no-linear-probe", help=SETTINGS["linear_probe"].help + ".", show_default=False)] = None,
    epochs: Epochs = None,
    batch: Batch = None,
    accum: Accum = None,
    effective_batch: EffectiveBatch = None,
    blr: Blr = None,
    lr: Lr = None,
    min_lr: MinLr = None,
    warmup_epochs: Warmup = None,
    weight_decay: WeightDecay = None,
    betas: Betas = None,
    clip_grad: ClipGrad = None,
    amp: Amp = None,
    eval_every: _flag("eval_every", kind=int) = None,
    eval_images: _flag("eval_images", kind=int) = None,
    eval_n: _flag("eval_n", kind=int) = None,
    eval_split: _flag("eval_split", kind=str) = None,
    save_every: SaveEvery = None,
    workers: Workers = None,
    seed: Seed = None,
    device: Device = None,
    out_dir: OutDir = None,
    resume: Resume = True,
    accept_changes: AcceptChanges = False,
    print_config: PrintConfig = False,
    config_file: opt.ConfigFile = None,
    nproc_per_node: NprocPerNode = 1,
) -> None:
    """Train a classifier for smoothing at --sigma with a supervised objective, from --init or from scratch.

    Without --init this trains from scratch: with --no-consistency --label-smoothing 0 it is
    Cohen et al.'s Gaussian-augmentation baseline; the default adds consistency regularization.
    The defaults shown are certkit's own; a recipe (--recipe, or the model's own) replaces them
    and flags replace both. --print-config shows every value that applies and its source.
    """
    if wants_launch(nproc_per_node):
        return launch(nproc_per_node)
    flags = _common_flags(
        model=model, objective=objective, init=None if init is None else str(init), data=data, data_path=data_path, split=split,
        max_images=max_images, label_fraction=label_fraction, sigma=sigma, consistency=consistency, lbd=lbd, eta=eta,
        label_smoothing=label_smoothing, mixup=mixup, cutmix=cutmix, mixup_prob=mixup_prob, mixup_switch_prob=mixup_switch_prob,
        options=opt.parse_key_values(option or [], "--option", "gamma=6") or None,
        model_options=opt.parse_key_values(model_option or [], "--model-option", "depth=32") or None,
        crop_scale=crop_scale, crop_ratio=crop_ratio, hflip=hflip, rand_augment=rand_augment, interpolation=interpolation,
        layer_decay=layer_decay, drop_path=drop_path, linear_probe=linear_probe, epochs=epochs, batch=batch, accum=accum,
        effective_batch=effective_batch, blr=blr, lr=lr, min_lr=min_lr, warmup_epochs=warmup_epochs, weight_decay=weight_decay, betas=betas,
        clip_grad=clip_grad, amp=amp, eval_every=eval_every, eval_images=eval_images, eval_n=eval_n, eval_split=eval_split,
        save_every=save_every, workers=workers, seed=seed, device=device,
    )
    _run(ctx, "finetune", flags, recipe, config_file, out_dir, resume, accept_changes, print_config)
