"""What certkit writes into a results file: its columns, one row, and the metadata sidecar.

The TSV keeps Cohen et al.'s columns first (``idx label predict radius correct time``) so
their tools read it, then adds ``pA_lower``, ``n`` (noisy samples used), ``nA`` and ``n0A``
(hits on the chosen class in the estimation and selection stages). A JSON sidecar
``<file>.meta.json`` says how the file was made. :mod:`certkit.results.store` keeps a file
through its life (lock, resume, part files); this module only says what goes into it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from certkit.fileio import atomic_path
from certkit.interfaces import Certificate

COLUMNS = ("idx", "label", "predict", "radius", "correct", "time", "pA_lower", "n", "nA", "n0A")
CERTKIT_COLUMNS = COLUMNS
#: a ``--stop-if-wrong`` run adds ``cut`` (1 = stopped after selection: the class was not the label)
CUT_COLUMNS = (*COLUMNS, "cut")
#: Cohen et al.'s certify.py; ``time`` is a ``str(datetime.timedelta)``
COHEN_COLUMNS = ("idx", "label", "predict", "radius", "correct", "time")
#: ``certkit predict`` (Cohen et al.'s PREDICT)
PREDICT_COLUMNS = ("idx", "label", "predict", "correct", "time", "n", "count_top", "count_second", "p_value")

#: metadata keys that define what a results file means; resuming requires them all equal
IDENTITY_KEYS = ("kind", "model", "checkpoint_sha256", "sigma", "smoother", "smoother_options", "certifier", "certifier_options", "n0", "n", "alpha", "seed", "dataset", "precision")

#: identity keys newer than some results files, with the value such a file implicitly had
_IDENTITY_DEFAULTS: dict[str, Any] = {"smoother_options": {}}


def identity_differences(previous: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The :data:`IDENTITY_KEYS` on which two results files' metadata disagree."""
    def value(meta: Mapping[str, Any], key: str) -> Any:
        return meta.get(key, _IDENTITY_DEFAULTS.get(key))

    return [key for key in IDENTITY_KEYS if value(previous, key) != value(current, key)]


def norm_of(metadata: Mapping[str, Any]) -> str:
    """The norm of a file's radii: its sidecar's ``norm``; files without one (older certkit
    files, Cohen et al.'s logs) are L2."""
    return str(metadata.get("norm") or "l2")


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".meta.json")


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def format_row(idx: int, label: int, cert: Certificate, seconds: float) -> str:
    correct = int(cert.prediction == label)
    fields = (idx, label, cert.prediction, f"{cert.radius:.9g}", correct, f"{seconds:.4f}", f"{cert.p_lower:.9g}", cert.samples, cert.count, cert.selection_count)
    return "\t".join(str(f) for f in fields) + "\n"
