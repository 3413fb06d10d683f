"""Turning a model name, a sigma and maybe a checkpoint into a ready base classifier.

Three ways a registered model gets its weights:
- from a certkit checkpoint for the sigma (``--checkpoint``, ``models.<name>.checkpoints`` in the
  config, or one the plugin ships), which carries the model's input spec;
- from a foreign state dict (``--checkpoint`` of a timm/torchvision/DMAE file): the plugin's
  ``checkpoint_filter`` maps its keys, and the input spec comes from ``--spec`` (a preset or a
  file, see :mod:`certkit.specs`) since the file has none;
- from nowhere certkit knows: a model registered with ``needs_checkpoint=False`` (an off-the-shelf
  classifier, or one composed from other registered models) builds itself from
  ``factory(sigma=..., checkpoint=..., **options)``, and may list the files it used in
  ``certkit_parts`` so results name them.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from certkit import plugins
from certkit.checkpoints import load_into, read_weights
from certkit.errors import CheckpointError, PluginError
from certkit.interfaces import InputSpec
from certkit.specs import resolve_input_spec


@dataclass
class LoadedClassifier:
    """A base classifier ready to certify, and where its weights came from.

    ``model`` is a ``torch.nn.Module`` in eval mode taking [0, 1] images ``[B, C, H, W]`` and
    returning logits; ``spec`` its :class:`certkit.InputSpec` (also ``model.input_spec``).
    ``checkpoint`` is the weights file (None for a model that needs none), ``checkpoint_sha256``
    its hash (for a model without one: a hash of its name, options and parts), and ``parts`` the
    files a composed model was built from (``role``, ``name``, ``checkpoint``,
    ``checkpoint_sha256`` each).
    """

    name: str
    model: torch.nn.Module
    spec: InputSpec
    checkpoint: Path | None
    checkpoint_sha256: str
    parts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def checkpoint_label(self) -> str:
        """What results metadata shows as the checkpoint."""
        if self.checkpoint is not None:
            return str(self.checkpoint)
        named = ", ".join(f"{p.get('role', 'part')}={p.get('checkpoint')}" for p in self.parts)
        return f"none ({named})" if named else "none"


#: The name this type had before it was public.
LoadedModel = LoadedClassifier


def needs_checkpoint(name: str) -> bool:
    return plugins.get("models", name).details.get("needs_checkpoint", True) is not False


def _noise_and_sigma(key: float | tuple[str, float]) -> tuple[str, float]:
    """A ``checkpoints`` key: a sigma (weights for Gaussian noise) or ``(smoother, sigma)``."""
    if isinstance(key, tuple):
        return str(key[0]), float(key[1])
    return "gaussian", float(key)


def checkpoint_sigmas(component: plugins.Component, configured: Mapping[float, Path] | None = None, noise: str = "gaussian") -> list[float]:
    """Sigmas with a checkpoint for ``noise``: shipped by the plugin or (Gaussian) set in the config."""
    keys = [*(configured or {}), *(component.details.get("checkpoints") or {})]
    return sorted({sigma for kind, sigma in map(_noise_and_sigma, keys) if kind == noise})


def checkpoint_noises(component: plugins.Component, configured: Mapping[float, Path] | None = None) -> list[str]:
    """The smoothers a model has checkpoints for, Gaussian first."""
    keys = [*(configured or {}), *(component.details.get("checkpoints") or {})]
    return sorted({kind for kind, _ in map(_noise_and_sigma, keys)}, key=lambda kind: (kind != "gaussian", kind))


def find_checkpoint(name: str, sigma: float, explicit: Path | None, configured: Mapping[float, Path] | None, noise: str = "gaussian") -> Path:
    """``--checkpoint`` > ``models.<name>.checkpoints`` in the config > what the plugin ships,
    for weights trained on ``noise`` (a smoother name) at ``sigma``; without such weights, the
    Gaussian ones at ``sigma`` (certify then warns that the noise differs)."""
    if explicit is not None:
        return Path(explicit).expanduser()
    component = plugins.get("models", name)
    for wanted in dict.fromkeys((noise, "gaussian")):
        for source in (configured or {}, component.details.get("checkpoints") or {}):
            for key, path in source.items():
                kind, at = _noise_and_sigma(key)
                if kind == wanted and abs(at - sigma) < 1e-9:
                    return Path(path)
    have = ", ".join(f"{k:g}" for k in checkpoint_sigmas(component, configured, noise)) or "none"
    others = [kind for kind in checkpoint_noises(component, configured) if kind != noise]
    elsewhere = f"; it has checkpoints for {', '.join(others)} noise" if others else ""
    what = "sigma" if noise == "gaussian" else f"{noise} noise at sigma"
    raise CheckpointError(
        f"model '{name}' has no checkpoint for {what} {sigma:g} (sigmas with checkpoints: {have}{elsewhere}).",
        f"Pass --checkpoint PATH, or set models.{name}.checkpoints.{sigma:g} in certkit.yaml." if noise == "gaussian" else "Pass --checkpoint PATH.",
    )


def check_classifier(name: str) -> plugins.Component:
    """The registered model ``name``, refused when it is a pretraining encoder-decoder."""
    component = plugins.get("models", name)
    if component.details.get("pretraining"):
        classifiers = sorted(c.name for c in plugins.host().registry("models") if not c.details.get("pretraining"))
        raise CheckpointError(
            f"model '{name}' is a pretraining encoder-decoder, not a classifier.",
            f"Fine-tune it first (certkit finetune --init ...), then use a classifier: {', '.join(classifiers)}.",
        )
    return component


def load_classifier(
    name: str,
    sigma: float | None = None,
    checkpoint: Path | str | None = None,
    configured: Mapping[float, Path] | None = None,
    *,
    spec: InputSpec | str | None = None,
    options: Mapping[str, Any] | None = None,
    noise: str = "gaussian",
) -> LoadedClassifier:
    """Build the registered model ``name`` with its weights for ``sigma``.

    ``checkpoint`` overrides the lookup; ``configured`` is ``models.<name>.checkpoints`` of the
    config; ``spec`` (a preset name, a spec file or an InputSpec) is the input spec of a weights
    file that has none; ``options`` go to the model's factory (``-M key=value``); ``noise`` is
    the smoother the weights were trained for (a plugin may ship checkpoints per smoother).
    """
    component = check_classifier(name)
    explicit = None if checkpoint is None else Path(checkpoint).expanduser()
    wanted_spec = resolve_input_spec(spec)
    options = dict(options or {})
    if component.details.get("needs_checkpoint", True) is False:
        return _build_without_checkpoint(component, sigma, explicit, wanted_spec, options)
    if sigma is None and explicit is None:
        raise CheckpointError(f"model '{name}' needs a sigma to find its checkpoint.", "Pass --sigma S or --checkpoint PATH.")
    path = find_checkpoint(component.name, sigma if sigma is not None else 0.0, explicit, configured, noise)
    weights = read_weights(path)
    if weights.model_name is not None and weights.model_name not in (component.name, *component.aliases):
        raise CheckpointError(
            f"checkpoint {path} holds a '{weights.model_name}' model, not '{name}'.",
            f"Pass --model {weights.model_name}.",
        )
    factory_options = {**weights.model_options, **options}
    if weights.input_spec is not None:
        if wanted_spec is not None and wanted_spec != weights.input_spec:
            raise CheckpointError(f"checkpoint {path} carries its own input spec; --spec does not apply to it.", "Drop --spec.")
        factory_options["spec"] = weights.input_spec
    elif wanted_spec is not None:
        _check_takes_spec(component)
        factory_options["spec"] = wanted_spec
    model = component.obj(**factory_options)
    state = weights.state_dict
    checkpoint_filter = component.details.get("checkpoint_filter")
    if checkpoint_filter is not None:
        state = checkpoint_filter(state, model)
    load_into(model, state, path)
    return LoadedClassifier(component.name, model.eval(), model.input_spec, path, weights.sha256)


def _build_without_checkpoint(component: plugins.Component, sigma: float | None, checkpoint: Path | None, spec: InputSpec | None, options: dict[str, Any]) -> LoadedClassifier:
    if spec is not None:
        options["spec"] = spec
    model = component.obj(sigma=sigma, checkpoint=checkpoint, **options)
    if not isinstance(getattr(model, "input_spec", None), InputSpec):
        raise PluginError(f"model '{component.name}' of plugin '{component.plugin}' has no input_spec.", "A base classifier carries an InputSpec (see docs/writing-plugins.md).")
    parts = [dict(part) for part in getattr(model, "certkit_parts", [])]
    identity = {"model": component.name, "options": {k: str(v) for k, v in sorted(options.items())}, "parts": [p.get("checkpoint_sha256") for p in parts]}
    sha = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return LoadedClassifier(component.name, model.eval(), model.input_spec, None, sha, parts)


def _check_takes_spec(component: plugins.Component) -> None:
    try:
        parameters = inspect.signature(component.obj).parameters
    except (TypeError, ValueError):
        return
    if "spec" not in parameters and not any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        raise CheckpointError(f"model '{component.name}' takes no input spec, so --spec does not apply.", "Drop --spec.")

