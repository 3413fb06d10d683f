"""certkit: pluggable certified robustness for image classifiers.

The public API a plugin may import lives here and in :mod:`certkit.interfaces`.

Only ``__version__`` and ``CertkitError`` are defined on import; ``hookimpl`` (pluggy) is made
on first use, and every other public name, which needs torch, is imported on first use (module
``__getattr__``), so that ``certkit --version`` and ``certkit --help`` start without torch;
``from certkit import InputSpec, hookimpl`` works as before.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from certkit.errors import CertkitError

__version__ = "0.1.0"

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
    import pluggy

    hookimpl: pluggy.HookimplMarker
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
    if name == "hookimpl":
        # Marker for hook implementations: ``@hookimpl def certkit_register_models(register): ...``.
        # Made on first use, so that ``certkit --version`` does not import pluggy.
        import pluggy

        globals()["hookimpl"] = marker = pluggy.HookimplMarker("certkit")
        return marker
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'certkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, "hookimpl"})
