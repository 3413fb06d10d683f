"""``certkit pretrain`` and ``certkit finetune``: build the model and task, then run the trainer."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from certkit import plugins
from certkit.checkpoints import load_into, read_weights
from certkit.data import DatasetInfo, ImageDataset, select_indices, with_channels
from certkit.data.folders import ImageFolderDataset
from certkit.data.training import TrainingImages, check_images, label_fraction_indices, labels_of
from certkit.data.transforms import TrainAugmentation, train_transform
from certkit.errors import CertkitError, DataError
from certkit.interfaces import InputSpec
from certkit.smoothers import build_smoother
from certkit.training import TrainOutcome, TrainSettings, train
from certkit.training.evaluation import Evaluator
from certkit.training.run_record import RunRecord
from certkit.training.tasks import NoisyClassificationTask, PretrainTask
from certkit.training.trainer import TrainProgress, TrainTask
from certkit.workflows.resolve import open_dataset, resolve_dataset


@dataclass(frozen=True)
class DataRequest:
    """The training data: a dataset by name (or folder), which of its images, and how they are
    augmented (:class:`certkit.data.transforms.TrainAugmentation`)."""

    name: str
    path: Path | None = None
    split: str = "train"
    max: int | None = None  # train on the first images only (quick runs)
    label_fraction: float | None = None  # class-balanced share of the labelled images (label-scarce runs)
    augmentation: TrainAugmentation = TrainAugmentation()


def open_training_source(request: DataRequest, configured_datasets: dict[str, Any]) -> ImageDataset:
    choice = resolve_dataset(request.name, request.path, request.split, configured_datasets)
    return open_dataset(choice)


def training_images(source: ImageDataset, request: DataRequest, spec: InputSpec, seed: int) -> TrainingImages:
    """``source`` as the trainer reads it: every image converted to the model's channel count
    and through the training transform, which crops (or fits) it to the model's size; only a
    dataset with more classes than the model predicts is refused."""
    info = source.info
    with_channels(source, spec.channels)  # refuses what cannot be converted (e.g. 4 -> 1)
    if info.num_classes > spec.num_classes:
        raise DataError(f"dataset '{info.name}' ({info.source}) has {info.num_classes} classes but the model predicts only {spec.num_classes}.", "Use a model for this many classes, e.g. -M num_classes=... or a dataset with fewer.")
    indices = None
    if request.label_fraction is not None:
        indices = label_fraction_indices(labels_of(source), request.label_fraction)
    if request.max is not None:  # the first images (of the labelled fraction, if any)
        pool = indices if indices is not None else list(range(len(source)))
        indices = [pool[i] for i in select_indices(len(pool), 1, request.max)]
    transform = train_transform(request.augmentation, tuple(spec.image_size), spec.channels, tuple(spec.mean))
    return TrainingImages(source, transform, seed, indices)


def spec_for_data(default: InputSpec, info: DatasetInfo, channels: int | None = None) -> InputSpec:
    """The model's input spec fitted to an image folder: its classes, its channel count
    (``channels``, default ``info.channels``; mean/std follow it) and, when the folder's
    (first) image is no larger than the model's input, its image size. Larger images keep the
    model's size: training crops them to it. Presets (``-M spec=``) win over this."""
    channels = info.channels if channels is None else channels
    small = all(have <= want for have, want in zip(info.image_size, default.image_size))
    size = tuple(info.image_size) if small else tuple(default.image_size)
    if (info.num_classes, size, channels) == (default.num_classes, tuple(default.image_size), default.channels):
        return default
    mean, std = default.mean, default.std
    if channels != default.channels:
        mean, std = _stats_for(mean, channels), _stats_for(std, channels)
    names = info.class_names if len(info.class_names) == info.num_classes else ()
    return replace(default, image_size=size, channels=channels, mean=mean, std=std, num_classes=info.num_classes, class_names=names)


def _fitted_spec(default: InputSpec, source: ImageDataset, keep_channels: bool = False) -> InputSpec:
    """``default`` fitted to an image folder, else unchanged. ``keep_channels``: pretrained
    weights (``--init``) fix the channel count; the images are converted instead."""
    if not _infers_spec(source):
        return default
    return spec_for_data(default, source.info, default.channels if keep_channels else source.native_channels())


def _stats_for(values: tuple[float, ...], channels: int) -> tuple[float, ...]:
    return (sum(values) / len(values),) * channels


def _infers_spec(source: ImageDataset) -> bool:
    return isinstance(source, ImageFolderDataset) and source.transform is None


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


@dataclass
class TrainPlan:
    """A training run ready to start: what ``--print-config`` describes and ``run`` executes."""

    task: TrainTask
    dataset: TrainingImages
    settings: TrainSettings
    record: RunRecord | None = None
    notes: list[str] = field(default_factory=list)
    spec_source: str = "the model's"  # or: fitted to an image folder

    def run(self, progress: TrainProgress | None = None) -> TrainOutcome:
        for note in self.notes:
            if progress is not None:
                progress.note(note)
        check_images(self.dataset.source, self.dataset.indices)  # before anything is written
        return train(self.task, self.dataset, self.settings, progress, self.record)


def run_pretrain(objective: str, model: str, data: DataRequest, settings: TrainSettings, options: dict[str, Any], configured_datasets: dict[str, Any], progress: TrainProgress | None = None, record: RunRecord | None = None) -> TrainOutcome:
    """Pretrain ``model`` (a registered pretraining model) with the registered ``objective``."""
    return plan_pretrain(objective, model, data, settings, options, configured_datasets, record).run(progress)


def plan_pretrain(objective: str, model: str, data: DataRequest, settings: TrainSettings, options: dict[str, Any], configured_datasets: dict[str, Any], record: RunRecord | None = None) -> TrainPlan:
    objective_component = find_objective(objective, supervised=False)
    model_component = plugins.get("models", model)
    if not model_component.details.get("pretraining"):
        pretrainable = [c.name for c in plugins.host().registry("models") if c.details.get("pretraining")]
        raise CertkitError(f"model '{model}' is a classifier, not a pretraining model.", f"Pretraining models: {', '.join(pretrainable) or 'none'}.")
    try:
        objective_obj = objective_component.obj(**options)
    except (TypeError, ValueError) as exc:
        raise CertkitError(f"objective '{objective}' does not take these options: {exc}.", "See 'certkit pretrain --help'.") from None
    source = open_training_source(data, configured_datasets)
    torch.manual_seed(settings.seed)  # same initial weights for the same seed (and on every rank)
    net = model_component.obj()
    fitted = _fitted_spec(net.input_spec, source) != net.input_spec
    if fitted:
        torch.manual_seed(settings.seed)
        net = model_component.obj(spec=_fitted_spec(net.input_spec, source))
    dataset = training_images(source, data, net.input_spec, settings.seed)
    task = PretrainTask(net, model_component.name, objective_obj, objective_component.name, options)
    return TrainPlan(task, dataset, settings, record, spec_source=FITTED if fitted else "the model's")


@dataclass(frozen=True)
class FinetuneOptions:
    """``objective`` is a registered supervised objective, built as
    ``factory(sigma=sigma, **objective_options)``; ``model_overrides`` are factory options of the
    model, stored with the weights so that certify rebuilds the same architecture.
    ``layer_decay`` None: 0.75 for a model with layers (a ViT) fine-tuned from ``init``, none
    from scratch. ``eval_*``: the validation subset (see :mod:`certkit.training.evaluation`)."""

    sigma: float
    init: Path | None = None
    objective: str = "noisy-ce"
    objective_options: dict[str, Any] = field(default_factory=dict)
    layer_decay: float | None = None
    drop_path: float = 0.0
    linear_probe: bool = False
    model_overrides: dict[str, Any] = field(default_factory=dict)
    eval_images: int = 200
    eval_n: int = 100
    eval_split: str | None = None


FITTED = "the model's, fitted to the image folder (size, channels, classes)"

#: layer-wise lr decay when none is given for a ViT fine-tuned from pretrained weights (MAE's and
#: DMAE's main_finetune.py default; the ViT-B recipe uses 0.65)
AUTO_LAYER_DECAY = 0.75


def run_finetune(model: str, data: DataRequest, settings: TrainSettings, options: FinetuneOptions, configured_datasets: dict[str, Any], progress: TrainProgress | None = None, record: RunRecord | None = None) -> TrainOutcome:
    """Train a classifier for smoothing at ``options.sigma`` with a supervised objective, from
    ``options.init`` (a pretrained checkpoint, through the model's checkpoint filter) or from
    scratch."""
    return plan_finetune(model, data, settings, options, configured_datasets, record).run(progress)


def plan_finetune(model: str, data: DataRequest, settings: TrainSettings, options: FinetuneOptions, configured_datasets: dict[str, Any], record: RunRecord | None = None) -> TrainPlan:
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
    source = open_training_source(data, configured_datasets)
    factory_options = {**({"drop_path_rate": options.drop_path} if options.drop_path else {}), **structural}
    net = _build_classifier(component, model, factory_options, settings.seed)
    fitted_spec = _fitted_spec(net.input_spec, source, keep_channels=options.init is not None)
    fitted = "spec" not in structural and fitted_spec != net.input_spec
    if fitted:  # an image folder of another size, channel or class count: build the model for it
        net = _build_classifier(component, model, {**factory_options, "spec": fitted_spec}, settings.seed)
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
    layer_decay = options.layer_decay
    if layer_decay is None and options.init is not None and hasattr(net, "lr_layer_id"):
        layer_decay = AUTO_LAYER_DECAY
        record = _recorded(record, "layer_decay", layer_decay, f"default (auto: {model} has layers and starts from --init)")
    dataset = training_images(source, data, net.input_spec, settings.seed)
    info = source.info
    names = info.class_names if len(info.class_names) == net.input_spec.num_classes else net.input_spec.class_names
    # What the weights are for: certify warns when it smooths with other noise (C4).
    net.input_spec = replace(net.input_spec, sigma=options.sigma, class_names=names, noise=getattr(objective_obj, "smoother", None))
    notes: list[str] = []
    evaluator = _evaluator(data, options, objective_obj, net.input_spec, configured_datasets, source, notes) if settings.eval_every > 0 else None
    task = NoisyClassificationTask(
        net, component.name, objective_obj, objective.name, options.objective_options, layer_decay=layer_decay, model_options=structural, evaluator=evaluator,
    )
    return TrainPlan(task, dataset, settings, record, notes, FITTED if fitted else "the model's")


def _evaluator(data: DataRequest, options: FinetuneOptions, objective_obj: Any, spec: InputSpec, configured_datasets: dict[str, Any], source: ImageDataset, notes: list[str]) -> Evaluator | None:
    """The validation subset: ``eval_split`` (default: the dataset's certification split)."""
    choice = resolve_dataset(data.name, data.path, options.eval_split or _certification_split(data, configured_datasets), configured_datasets)
    if choice.split == data.split:
        notes.append(f"evaluation skipped: its split '{choice.split}' is the training split; pass --eval-split")
        return None
    validation = with_channels(open_dataset(choice), spec.channels)
    if isinstance(source, ImageFolderDataset) and validation.info.source == source.info.source:
        notes.append(f"evaluation skipped: {choice.name} has no '{choice.split}' split apart from its training images; pass --eval-split")
        return None
    noise = getattr(objective_obj, "smoother", "gaussian")
    smoother = build_smoother(noise, options.sigma) if noise and options.sigma > 0 else None  # the noise the model is trained for; none at sigma 0
    return Evaluator.from_dataset(validation, spec, smoother, options.eval_images, options.eval_n)


def _certification_split(data: DataRequest, configured_datasets: dict[str, Any]) -> str:
    choice = resolve_dataset(data.name, data.path, None, configured_datasets)
    return choice.split


def _recorded(record: RunRecord | None, name: str, value: Any, source: str) -> RunRecord | None:
    """``record`` with one setting worked out by the workflow (run.json shows the value used)."""
    if record is None:
        return None
    identity = {**record.identity, name: value} if name in record.identity else record.identity
    return replace(record, settings={**record.settings, name: value}, sources={**record.sources, name: source}, identity=identity)


def _build_classifier(component: plugins.Component, model: str, factory_options: dict[str, Any], seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)  # same initial weights for the same seed (and on every rank)
    try:
        return component.obj(**factory_options)
    except TypeError as exc:
        shown = sorted(k for k in factory_options if k != "spec")
        raise CertkitError(f"model '{model}' does not take the options {shown} ({exc}).", "Pass --drop-path 0, or drop --linear-probe or the --model-option values it does not take.") from None
