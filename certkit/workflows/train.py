"""``certkit pretrain`` and ``certkit finetune``: build the model and task, then run the trainer."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from certkit import plugins
from certkit.checkpoints import load_into, read_weights
from certkit.data import select_indices
from certkit.errors import CertkitError
from certkit.training import TrainOutcome, TrainSettings, train
from certkit.training.tasks import NoisyClassificationTask, PretrainTask
from certkit.training.trainer import TrainProgress
from certkit.workflows.resolve import open_dataset, resolve_dataset


AUGMENTATIONS = ("none", "crop-flip")


@dataclass(frozen=True)
class DataRequest:
    name: str
    path: Path | None = None
    split: str = "train"
    max: int | None = None  # train on the first images only (quick runs)
    augment: str = "none"  # "crop-flip": RandomResizedCrop(scale 0.2-1, bicubic) + flip, as DMAE pretraining


class _Augmented(torch.utils.data.Dataset):
    """Applies a random transform per item; draws from the global RNG, which the trainer
    seeds per epoch, so a resumed run sees the same crops."""

    def __init__(self, dataset, transform) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, label = self.dataset[index]
        return self.transform(image), label


def _augmentation(name: str, image_size: tuple[int, int]):
    from torchvision.transforms import v2

    if name not in AUGMENTATIONS:
        raise CertkitError(f"unknown augmentation '{name}'.", f"Known: {', '.join(AUGMENTATIONS)}.")
    if name == "none":
        return None
    crop = v2.RandomResizedCrop(image_size, scale=(0.2, 1.0), interpolation=v2.InterpolationMode.BICUBIC, antialias=True)
    return v2.Compose([crop, v2.RandomHorizontalFlip(), v2.Lambda(lambda x: x.clamp(0, 1))])


def _training_data(request: DataRequest, configured_datasets: dict[str, Any], spec) -> Any:
    choice = resolve_dataset(request.name, request.path, request.split, configured_datasets)
    dataset = open_dataset(choice)
    info = dataset.info
    spec.check_data(info.channels, info.image_size, info.num_classes, f"dataset '{choice.name}' ({info.source})")
    transform = _augmentation(request.augment, tuple(spec.image_size))
    if request.max is not None:
        dataset = Subset(dataset, select_indices(len(dataset), 1, request.max))
    if transform is not None:
        dataset = _Augmented(dataset, transform)
    return dataset, info


def find_objective(name: str, supervised: bool) -> plugins.Component:
    """The registered objective ``name``, refused when it is of the other sort: ``pretrain``
    takes self-supervised objectives, ``finetune`` supervised ones (detail ``supervised=True``)."""
    component = plugins.get("objectives", name)
    if bool(component.details.get("supervised")) != supervised:
        fitting = ", ".join(sorted(c.name for c in plugins.host().registry("objectives") if bool(c.details.get("supervised")) == supervised)) or "none"
        if supervised:
            raise CertkitError(f"objective '{name}' is a pretraining objective; finetune trains with a supervised one.", f"Use 'certkit pretrain {name}', or --objective with one of: {fitting}.")
        raise CertkitError(f"objective '{name}' is a supervised classification objective; pretrain takes a self-supervised one.", f"Use 'certkit finetune --objective {name}', or pretrain with one of: {fitting}.")
    return component


def run_pretrain(objective: str, model: str, data: DataRequest, settings: TrainSettings, options: dict[str, Any], configured_datasets: dict[str, Any], progress: TrainProgress | None = None) -> TrainOutcome:
    """Pretrain ``model`` (a registered pretraining model) with the registered ``objective``."""
    objective_component = find_objective(objective, supervised=False)
    model_component = plugins.get("models", model)
    if not model_component.details.get("pretraining"):
        pretrainable = [c.name for c in plugins.host().registry("models") if c.details.get("pretraining")]
        raise CertkitError(f"model '{model}' is a classifier, not a pretraining model.", f"Pretraining models: {', '.join(pretrainable) or 'none'}.")
    try:
        objective_obj = objective_component.obj(**options)
    except TypeError as exc:
        raise CertkitError(f"objective '{objective}' does not take these options: {exc}.", "See 'certkit pretrain --help'.") from None
    torch.manual_seed(settings.seed)  # same initial weights for the same seed (and on every rank)
    net = model_component.obj()
    dataset, _ = _training_data(data, configured_datasets, net.input_spec)
    task = PretrainTask(net, model_component.name, objective_obj, objective_component.name, options)
    return train(task, dataset, settings, progress)


@dataclass(frozen=True)
class FinetuneOptions:
    """``objective`` is a registered supervised objective, built as
    ``factory(sigma=sigma, **objective_options)``; ``model_overrides`` are factory options of the
    model, stored with the weights so that certify rebuilds the same architecture."""

    sigma: float
    init: Path | None = None
    objective: str = "noisy-ce"
    objective_options: dict[str, Any] = field(default_factory=dict)
    layer_decay: float | None = None
    drop_path: float = 0.0
    linear_probe: bool = False
    model_overrides: dict[str, Any] = field(default_factory=dict)


def run_finetune(model: str, data: DataRequest, settings: TrainSettings, options: FinetuneOptions, configured_datasets: dict[str, Any], progress: TrainProgress | None = None) -> TrainOutcome:
    """Train a classifier for smoothing at ``options.sigma`` with a supervised objective, from
    ``options.init`` (a pretrained checkpoint, through the model's checkpoint filter) or from
    scratch."""
    if options.sigma < 0:
        raise CertkitError(f"sigma must be >= 0, got {options.sigma}.", "Pass e.g. --sigma 0.25 (0: a classifier of clean images).")
    objective = find_objective(options.objective, supervised=True)
    try:
        objective_obj = objective.obj(sigma=options.sigma, **options.objective_options)
    except TypeError as exc:
        raise CertkitError(f"objective '{objective.name}' does not take the options {sorted(options.objective_options)} ({exc}).", "Drop them; see the objective's documentation for its options.") from None
    component = plugins.get("models", model)
    if component.details.get("pretraining"):
        raise CertkitError(f"model '{model}' is a pretraining model; finetune trains a classifier.", "Pass the classifier, e.g. --model vit-mini --init <pretrained weights>.")
    structural = {**({"linear_probe": True} if options.linear_probe else {}), **options.model_overrides}
    torch.manual_seed(settings.seed)  # same initial weights for the same seed (and on every rank)
    factory_options = {**({"drop_path_rate": options.drop_path} if options.drop_path else {}), **structural}
    try:
        net = component.obj(**factory_options)
    except TypeError as exc:
        raise CertkitError(f"model '{model}' does not take the options {sorted(factory_options)} ({exc}).", "Pass --drop-path 0, or drop --linear-probe or the --model-option values it does not take.") from None
    if options.init is not None:
        weights = read_weights(options.init)
        state = weights.state_dict
        checkpoint_filter = component.details.get("checkpoint_filter")
        if checkpoint_filter is not None:
            state = checkpoint_filter(state, net)
        load_into(net, state, weights.path)
    if options.linear_probe:
        for name, param in net.named_parameters():
            param.requires_grad = name.startswith("head")
    dataset, info = _training_data(data, configured_datasets, net.input_spec)
    names = info.class_names if len(info.class_names) == net.input_spec.num_classes else net.input_spec.class_names
    # What the weights are for: certify warns when it smooths with other noise (C4).
    net.input_spec = replace(net.input_spec, sigma=options.sigma, class_names=names, noise=getattr(objective_obj, "smoother", None))
    task = NoisyClassificationTask(
        net, component.name, objective_obj, objective.name, options.objective_options, layer_decay=options.layer_decay, model_options=structural,
    )
    return train(task, dataset, settings, progress)
