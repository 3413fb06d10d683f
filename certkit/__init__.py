"""certkit: pluggable certified robustness for image classifiers.

The public API a plugin may import lives here and in :mod:`certkit.interfaces`.
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

#: Marker for hook implementations: ``@hookimpl def certkit_register_models(register): ...``
hookimpl = pluggy.HookimplMarker("certkit")

from certkit.errors import CertkitError  # noqa: E402
from certkit.interfaces import (  # noqa: E402
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
from certkit.normalize import Normalize  # noqa: E402

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
    # The model-loading API pulls in the plugin registry; import it when it is first used.
    if name in ("load_classifier", "LoadedClassifier"):
        from certkit import models

        return getattr(models, name)
    if name in ("SmoothedClassifier", "load_images"):
        from certkit import api

        return getattr(api, name)
    raise AttributeError(f"module 'certkit' has no attribute {name!r}")
