"""``certkit pretrain OBJECTIVE`` and ``certkit finetune``: thin wrappers over the trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from certkit.cli import options as opt
from certkit.cli.launch import NprocPerNode, launch, wants_launch
from certkit.cli.train_progress import EpochProgress
from certkit.checkpoints import read_weights
from certkit.config import load_settings
from certkit.errors import CertkitError
from certkit.training import TrainSettings
from certkit.workflows.train import DataRequest, FinetuneOptions, find_objective, run_finetune, run_pretrain

Epochs = Annotated[int, typer.Option("--epochs", help="Epochs to train (a resumed run stops at the same total).")]
TrainBatch = Annotated[int, typer.Option("--batch", help="Images per step and process; effective batch = batch x accum x processes.")]
Accum = Annotated[int, typer.Option("--accum", help="Gradient accumulation steps.")]
Lr = Annotated[Optional[float], typer.Option("--lr", help="Absolute learning rate (overrides --blr).", show_default=False)]
MinLr = Annotated[float, typer.Option("--min-lr", help="Learning rate at the end of the cosine.")]
Warmup = Annotated[Optional[float], typer.Option("--warmup-epochs", help="Linear warmup epochs (default: DMAE's, at most a tenth of --epochs).", show_default=False)]
WeightDecay = Annotated[float, typer.Option("--weight-decay", help="AdamW weight decay (not on biases, norms, tokens).")]
ClipGrad = Annotated[Optional[float], typer.Option("--clip-grad", help="Clip the gradient norm to this value.", show_default=False)]
Amp = Annotated[str, typer.Option("--amp", help="auto (bf16 on CUDA, off on CPU), off, bf16 or fp16.")]
SaveEvery = Annotated[int, typer.Option("--save-every", help="Keep a numbered checkpoint (and preview) every k epochs; the last is always kept.")]
OutDir = Annotated[Optional[Path], typer.Option("--out-dir", help="Run directory (checkpoints, log.jsonl, previews, weights.safetensors).", show_default=False)]
Workers = Annotated[int, typer.Option("--workers", help="DataLoader worker processes.")]
Resume = Annotated[bool, typer.Option("--resume/--no-resume", help="Continue the run in --out-dir if there is one (refused with --no-resume).")]
TrainSplit = Annotated[str, typer.Option("--split", help="Dataset split to train on.")]
Augment = Annotated[str, typer.Option("--augment", help="none, or crop-flip (RandomResizedCrop 0.2-1 + flip, DMAE's pretraining augmentation).")]


def _settings(out_dir: Path, epochs: int, batch: int, accum: int, blr: float, lr, min_lr, warmup, weight_decay, betas, clip_grad, amp, save_every, seed, device, workers, resume) -> TrainSettings:
    if epochs < 1 or batch < 1 or accum < 1 or save_every < 1:
        raise CertkitError("--epochs, --batch, --accum and --save-every must be >= 1.", "Pass positive values.")
    if amp not in ("auto", "off", "bf16", "fp16"):
        raise CertkitError(f"--amp must be auto, off, bf16 or fp16, got '{amp}'.", "Pass e.g. --amp off.")
    warmup = min(40.0, epochs / 10) if warmup is None else warmup
    return TrainSettings(
        out_dir=out_dir, epochs=epochs, batch_size=batch, accum_iter=accum, blr=blr, lr=lr, min_lr=min_lr,
        warmup_epochs=warmup, weight_decay=weight_decay, betas=betas, clip_grad=clip_grad, amp=amp,
        save_every=save_every, seed=seed, device=device, num_workers=workers, resume=resume,
    )


def pretrain(
    objective: Annotated[str, typer.Argument(help="Registered pretraining objective, e.g. dmae.")],
    model: opt.Model = None,
    data: Annotated[str, typer.Option("--data", help="Dataset name or a folder of class folders.")] = "fashion-mnist-mini",
    data_path: opt.DataPath = None,
    split: TrainSplit = "train",
    max_images: opt.Max = None,
    augment: Augment = "none",
    sigma: Annotated[Optional[float], typer.Option("--sigma", help="Noise of the corruption (DMAE: 0.25).", show_default=False)] = None,
    mask_ratio: Annotated[Optional[float], typer.Option("--mask-ratio", help="Fraction of patches masked (DMAE: 0.75).", show_default=False)] = None,
    option: Annotated[list[str], typer.Option("--option", "-O", help="Other objective option as key=value (repeatable).")] = [],  # noqa: B006
    epochs: Epochs = 100,
    batch: TrainBatch = 64,
    accum: Accum = 1,
    blr: Annotated[float, typer.Option("--blr", help="Base lr; lr = blr x effective batch / 256.")] = 1.5e-4,
    lr: Lr = None,
    min_lr: MinLr = 0.0,
    warmup_epochs: Warmup = None,
    weight_decay: WeightDecay = 0.05,
    clip_grad: ClipGrad = None,
    amp: Amp = "auto",
    save_every: SaveEvery = 20,
    out_dir: OutDir = None,
    seed: opt.Seed = None,
    device: opt.Device = None,
    workers: Workers = 0,
    resume: Resume = True,
    config_file: opt.ConfigFile = None,
    nproc_per_node: NprocPerNode = 1,
) -> None:
    """Self-supervised pretraining with a registered objective (e.g. `certkit pretrain dmae`)."""
    if wants_launch(nproc_per_node):
        return launch(nproc_per_node)
    config, _ = load_settings(config_file, {"seed": seed, "device": device})
    component = find_objective(objective, supervised=False)
    model = model or component.details.get("default_model")
    if model is None:
        raise CertkitError(f"objective '{objective}' names no default model.", "Pass --model.")
    options = {**opt.parse_key_values(option), **{k: v for k, v in {"sigma": sigma, "mask_ratio": mask_ratio}.items() if v is not None}}
    out_dir = out_dir or Path("runs") / f"pretrain-{component.name}-{model}"
    settings = _settings(out_dir, epochs, batch, accum, blr, lr, min_lr, warmup_epochs, weight_decay, (0.9, 0.95), clip_grad, amp, save_every, config.seed, config.device, workers, resume)
    console = Console()
    with EpochProgress(console) as progress:
        outcome = run_pretrain(component.name, model, DataRequest(data, data_path, split, max_images, augment), settings, options, config.datasets, progress)
    console.print(f"pretrained weights: {outcome.weights}\nfine-tune them: certkit finetune --init {outcome.weights} --sigma 0.25 ...")


def finetune(
    sigma: Annotated[float, typer.Option("--sigma", help="Gaussian noise level to train for (one model per sigma).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Registered classifier (see 'certkit plugins'; e.g. timm/resnet18 with certkit-gaussian).")] = "vit-mini",
    objective: Annotated[str, typer.Option("--objective", help="Registered supervised objective: noisy-ce (Gaussian noise + cross-entropy, optional consistency), or a plugin's (e.g. stability).")] = "noisy-ce",
    option: Annotated[list[str], typer.Option("--option", "-O", help="Other objective option as key=value (repeatable), e.g. -O gamma=6 for stability.")] = [],  # noqa: B006
    model_option: Annotated[list[str], typer.Option("--model-option", "-M", help="Model factory option as key=value (repeatable; stored with the weights), e.g. -M depth=32.")] = [],  # noqa: B006
    init: Annotated[Optional[Path], typer.Option("--init", help="Pretrained weights (certkit safetensors or a DMAE/MAE .pth).", show_default=False)] = None,
    data: Annotated[str, typer.Option("--data", help="Dataset name or a folder of class folders.")] = "fashion-mnist-mini",
    data_path: opt.DataPath = None,
    split: TrainSplit = "train",
    max_images: opt.Max = None,
    augment: Augment = "none",
    consistency: Annotated[Optional[bool], typer.Option("--consistency/--no-consistency", help="noisy-ce: consistency regularization (Jeong & Shin 2020) with 2 noise copies [default: on]; --no-consistency --label-smoothing 0 is Cohen et al.'s plain Gaussian augmentation.", show_default=False)] = None,
    consistency_lambda: Annotated[Optional[float], typer.Option("--lbd", help="noisy-ce: weight of the KL-to-mean term [default: 2.0].", show_default=False)] = None,
    consistency_eta: Annotated[Optional[float], typer.Option("--eta", help="noisy-ce: weight of the entropy term (default 0.5; 0.1 at sigma >= 1).", show_default=False)] = None,
    label_smoothing: Annotated[Optional[float], typer.Option("--label-smoothing", help="noisy-ce: label smoothing [default: 0.1].", show_default=False)] = None,
    layer_decay: Annotated[Optional[float], typer.Option("--layer-decay", help="Layer-wise lr decay (DMAE: 0.65 ViT-B, 0.75 ViT-L).", show_default=False)] = None,
    drop_path: Annotated[float, typer.Option("--drop-path", help="Stochastic depth rate (DMAE: 0.1 ViT-B, 0.2 ViT-L).")] = 0.1,
    linear_probe: Annotated[bool, typer.Option("--linear-probe", help="Train only a BatchNorm + Linear head on frozen features.")] = False,
    epochs: Epochs = 100,
    batch: TrainBatch = 64,
    accum: Accum = 1,
    blr: Annotated[float, typer.Option("--blr", help="Base lr; lr = blr x effective batch / 256.")] = 1e-3,
    lr: Lr = None,
    min_lr: MinLr = 1e-6,
    warmup_epochs: Warmup = None,
    weight_decay: WeightDecay = 0.05,
    clip_grad: ClipGrad = None,
    amp: Amp = "auto",
    save_every: SaveEvery = 20,
    out_dir: OutDir = None,
    seed: opt.Seed = None,
    device: opt.Device = None,
    workers: Workers = 0,
    resume: Resume = True,
    config_file: opt.ConfigFile = None,
    nproc_per_node: NprocPerNode = 1,
) -> None:
    """Train a classifier for smoothing at --sigma with a supervised objective, from --init or from scratch.

    Without --init this trains from scratch: with --no-consistency --label-smoothing 0 it is
    Cohen et al.'s Gaussian-augmentation baseline; the default adds consistency regularization.
    """
    if wants_launch(nproc_per_node):
        return launch(nproc_per_node)
    config, _ = load_settings(config_file, {"seed": seed, "device": device})
    objective_options = _objective_options(opt.parse_key_values(option, "--option", "gamma=6"), consistency, consistency_lambda, consistency_eta, label_smoothing)
    options = FinetuneOptions(
        sigma=sigma, init=init, objective=objective, objective_options=objective_options, layer_decay=layer_decay,
        drop_path=0.0 if linear_probe else drop_path, linear_probe=linear_probe, model_overrides=opt.parse_key_values(model_option, "--model-option", "depth=32"),
    )
    run_name = f"finetune-{model.replace('/', '-')}" + ("" if objective == "noisy-ce" else f"-{objective}") + f"-sigma{sigma:g}"
    out_dir = out_dir or Path("runs") / run_name
    settings = _settings(out_dir, epochs, batch, accum, blr, lr, min_lr, warmup_epochs, weight_decay, (0.9, 0.999), clip_grad, amp, save_every, config.seed, config.device, workers, resume)
    console = Console()
    with EpochProgress(console) as progress:
        outcome = run_finetune(model, DataRequest(data, data_path, split, max_images, augment), settings, options, config.datasets, progress)
    smoother = read_weights(outcome.weights).input_spec.noise or "gaussian"
    console.print(f"weights: {outcome.weights}\ncertify them: certkit certify --model {model} --sigma {sigma:g} --smoother {smoother} --checkpoint {outcome.weights}")


def _objective_options(options: dict, consistency: bool | None, lbd: float | None, eta: float | None, label_smoothing: float | None) -> dict:
    """Only flags given on the command line become objective options, so an objective that
    does not take them (e.g. stability) refuses them instead of ignoring them."""
    if consistency is False:
        options.update(consistency_lambda=0.0, consistency_eta=0.0)
    else:
        if consistency is True:
            options.setdefault("consistency_lambda", 2.0)
        if lbd is not None:
            options["consistency_lambda"] = lbd
        if eta is not None:
            options["consistency_eta"] = eta
    if label_smoothing is not None:
        options["label_smoothing"] = label_smoothing
    return options
