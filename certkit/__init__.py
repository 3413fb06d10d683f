"""certkit: pluggable certified robustness for image classifiers.

The public API a plugin may import lives here and in :mod:`certkit.interfaces`.

Only ``__version__``, ``hookimpl`` and ``CertkitError`` are defined on import. Every other
public name needs torch and is imported on first use (module ``__getattr__``), so that
``certkit --version`` and ``certkit --help`` start without importing torch;
``from certkit import InputSpec, hookimpl`` works as before.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import pluggy

from certkit.errors import CertkitError

__version__ = "0.1.0"

#: Marker for hook implementations: ``@hookimpl def certkit_register_models(register): ...``
hookimpl = pluggy.HookimplMarker("certkit")

#: public name -> the module that defines it, imported when the name is first used
_LAZY = {
    **dict.fromkeys(
        (
            "ABSTAIN", "NORMS", "BaseClassifier", "Certificate", "Certifier", "ClassificationObjective", "Corruption",
            "InputSpec", "LossOutput", "Prediction", "PretrainObjective", "Smoother",
        ),
        "certkit.interfaces",
    ),
    "Normalize": "certkit.normalize",
    # The model-loading API pulls in the plugin registry as well.
    "load_classifier": "certkit.models",
    "LoadedClassifier": "certkit.models",
    "SmoothedClassifier": "certkit.api",
    "load_images": "certkit.api",
}

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time these come from __getattr__
    from certkit.api import SmoothedClassifier, load_images
    from certkit.interfaces import (
        ABSTAIN,
        NORMS,
        BaseClassifier,
        Certificate,
        Certifier,
        ClassificationObjective,
        Corruption,
        InputSpec,
        LossOutput,
        Prediction,
        PretrainObjective,
        Smoother,
    )
    from certkit.models import LoadedClassifier, load_classifier
    from certkit.normalize import Normalize

__all__ = [
    "ABSTAIN",
    "NORMS",
    "LoadedClassifier",
    "SmoothedClassifier",
    "load_classifier",
    "load_images",
    "BaseClassifier",
    "Certificate",
    "Certifier",
    "CertkitError",
    "ClassificationObjective",
    "Corruption",
    "InputSpec",
    "LossOutput",
    "Normalize",
    "Prediction",
    "PretrainObjective",
    "Smoother",
    "__version__",
    "hookimpl",
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'certkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
