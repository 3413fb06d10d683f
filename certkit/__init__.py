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
