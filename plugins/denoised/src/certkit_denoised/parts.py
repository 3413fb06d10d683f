"""The two parts of a denoised classifier, found and loaded: the denoiser (a shipped name, a
certkit weights file of ``unet-mini`` or ``dncnn-mini``, or a local diffusers model directory)
and the classifier (any registered classifier, through ``certkit.load_classifier``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from certkit import InputSpec, LoadedClassifier
from certkit.checkpoints import sha256_of

from certkit_denoised.diffusion import DenoiserError, DiffusionModel, OneShotDenoiser, diffusers_dir_sha256, load_diffusers_dir, unet_mini
from certkit_denoised.dncnn import dncnn_mini

WEIGHTS = Path(__file__).parent / "weights"
DEFAULT_DENOISER = "unet-mini"
DEFAULT_CLASSIFIER = "vit-mini"
#: The shipped clean classifier: vit-mini fine-tuned on clean images (sigma 0); see docs/denoised.md.
CLEAN_CLASSIFIER = WEIGHTS / "vit-mini-clean.safetensors"

#: Denoiser models certkit trains (``certkit pretrain``), by the model name their weights record.
DENOISER_MODELS: dict[str, Callable[[], nn.Module]] = {"unet-mini": unet_mini, "dncnn-mini": dncnn_mini}


@dataclass
class DenoiserPart:
    """A denoiser ready for one certification sigma, and what results metadata says about it."""

    module: nn.Module  # noisy [0, 1] images -> clean estimates in [0, 1]
    name: str
    checkpoint: str
    checkpoint_sha256: str
    spec: InputSpec  # image size and channels it works on
    trained_sigma: float | None  # a feed-forward denoiser's training sigma; None: any sigma (diffusion)
    note: str = ""

    def part(self) -> dict[str, Any]:
        """The denoiser as results metadata name it (``parts``); a one-shot diffusion denoiser adds
        its timestep t* and t*'s effective sigma, the residual mismatch of a discrete schedule."""
        part: dict[str, Any] = {"role": "denoiser", "name": self.name, "checkpoint": self.checkpoint, "checkpoint_sha256": self.checkpoint_sha256}
        choice = getattr(self.module, "choice", None)
        if choice is not None:
            part.update(timestep=choice.timestep, effective_sigma=round(choice.effective_sigma, 6))
        elif self.trained_sigma is not None:
            part["trained_sigma"] = self.trained_sigma
        return part


def shipped_dncnn() -> dict[float, Path]:
    """Shipped DnCNN denoisers, one per sigma: ``dncnn-mini-sigma<sigma>.safetensors``."""
    return {float(p.stem.split("-sigma")[-1]): p for p in sorted(WEIGHTS.glob("dncnn-mini-sigma*.safetensors"))}


def _shipped_path(name: str, sigma: float) -> Path:
    if name == "unet-mini":
        path = WEIGHTS / "unet-mini.safetensors"
    else:
        found = shipped_dncnn()
        path = next((p for s, p in found.items() if abs(s - sigma) < 1e-9), None)
        if path is None:
            have = ", ".join(f"{s:g}" for s in found) or "none"
            raise DenoiserError(f"no shipped dncnn-mini denoiser for sigma {sigma:g} (shipped for: {have}).", "Train one (certkit pretrain denoise-mse --sigma S) and pass -M denoiser=<its weights.safetensors>.")
    if not path.is_file():
        raise DenoiserError(f"the shipped {name} weights are missing from this installation ({path}).", "Reinstall certkit-denoised, or pass -M denoiser=PATH.")
    return path


def _read_certkit_denoiser(path: Path) -> tuple[nn.Module, str, dict[str, Any]]:
    """A denoiser from a certkit weights file: its model, its name, its training objective's options."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise DenoiserError(f"{path} is not a certkit denoiser weights file ({str(exc).splitlines()[0][:120]}).", "Pass the weights.safetensors of a 'certkit pretrain ddpm' or 'denoise-mse' run, or a diffusers model directory.") from None
    name = metadata.get("model")
    if name not in DENOISER_MODELS:
        raise DenoiserError(f"{path} holds a '{name}' model, not a denoiser ({', '.join(DENOISER_MODELS)}).", "Pass the weights of a 'certkit pretrain ddpm' or 'denoise-mse' run, or a diffusers model directory.")
    model = DENOISER_MODELS[name]()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise DenoiserError(f"{path} does not fit the {name} model ({str(exc).splitlines()[0][:120]}).", f"Pass weights trained as {name}.") from None
    options = json.loads(metadata.get("objective_options") or "{}")
    return model.eval(), name, options if isinstance(options, dict) else {}


def load_denoiser(denoiser: str | None, checkpoint: Path | None, sigma: float, clip: bool = True) -> DenoiserPart:
    """The denoiser for certification at ``sigma``: ``denoiser`` (``-M denoiser=``) or
    ``checkpoint`` (``--checkpoint``, the same thing), else the shipped unet-mini."""
    if denoiser is not None and checkpoint is not None and Path(str(denoiser)).expanduser() != Path(checkpoint).expanduser():
        raise DenoiserError(f"two denoisers given: -M denoiser={denoiser} and --checkpoint {checkpoint}.", "Pass one of them (--checkpoint is the denoiser of a denoised model).")
    choice = str(denoiser) if denoiser is not None else (str(checkpoint) if checkpoint is not None else DEFAULT_DENOISER)
    if choice in DENOISER_MODELS:
        path = _shipped_path(choice, sigma)
    else:
        path = Path(choice).expanduser()
        if not path.exists():
            raise DenoiserError(f"denoiser '{choice}' is neither a shipped denoiser ({', '.join(DENOISER_MODELS)}) nor an existing file or directory.", "Pass -M denoiser=unet-mini, dncnn-mini, a certkit weights file or a diffusers model directory.")
    if path.is_dir():
        model = load_diffusers_dir(path)
        return _diffusion_part(model, f"diffusers:{path.name}", str(path), diffusers_dir_sha256(path), sigma, clip)
    model, name, options = _read_certkit_denoiser(path)
    if isinstance(model, DiffusionModel):
        return _diffusion_part(model, name, str(path), sha256_of(path), sigma, clip)
    trained = options.get("sigma")
    trained = float(trained) if isinstance(trained, (int, float)) else None
    return DenoiserPart(model, name, str(path), sha256_of(path), model.input_spec, trained, f"trained for sigma {trained:g}" if trained else "")


def _diffusion_part(model: DiffusionModel, name: str, checkpoint: str, sha: str, sigma: float, clip: bool) -> DenoiserPart:
    one_shot = OneShotDenoiser(model.eval(), sigma, clip)
    return DenoiserPart(one_shot, name, checkpoint, sha, model.input_spec, None, f"one-shot denoising at {one_shot.choice.describe()}")


def load_part_classifier(classifier: str | None = None, checkpoint: str | Path | None = None, sigma: float | None = None) -> LoadedClassifier:
    """The classifier part (a ``certkit.LoadedClassifier``): ``classifier`` with ``checkpoint``,
    else its checkpoint for ``sigma``; by default the shipped clean vit-mini (sigma 0)."""
    from certkit import load_classifier

    name = classifier or DEFAULT_CLASSIFIER
    if name == "denoised":
        raise DenoiserError("-M classifier=denoised would put a denoised model behind a denoiser.", "Pass the classifier itself, e.g. -M classifier=vit-mini.")
    if checkpoint is None and sigma is None and name == DEFAULT_CLASSIFIER:
        checkpoint = CLEAN_CLASSIFIER
    return load_classifier(name, sigma=0.0 if sigma is None else float(sigma), checkpoint=None if checkpoint is None else Path(checkpoint).expanduser())


def check_fit(part: DenoiserPart, classifier_name: str, spec: InputSpec) -> None:
    """Refuse a denoiser made for other images than the classifier takes (never resized)."""
    have = (part.spec.channels, *part.spec.image_size)
    want = (spec.channels, *spec.image_size)
    if tuple(have) != tuple(want):
        raise DenoiserError(
            f"denoiser {part.checkpoint} works on {'x'.join(map(str, have))} images but classifier '{classifier_name}' takes {'x'.join(map(str, want))}.",
            "Use a denoiser trained for the classifier's images (same size and channels).",
        )
