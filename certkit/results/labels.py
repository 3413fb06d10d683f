"""Curve and row labels for results files: distinct and informative, whoever wrote the files.

A file with a sidecar is labelled by its model and sigma (plus smoother and norm when they are
not Gaussian and L2, see :attr:`ResultsFile.label_text`), any other file by its name. Files that
would share a label are told apart by the shortest end of their paths that differs, e.g. Cohen
et al.'s ``noise_0.25/test/sigma_0.25`` and ``noise_0.50/test/sigma_0.25`` become
``noise_0.25/test/sigma_0.25`` and ``noise_0.50/test/sigma_0.25``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from certkit.results.reader import ResultsFile, display_name


def curve_labels(results: Sequence[ResultsFile], labels: Sequence[str] | None = None) -> list[str]:
    """Given labels, else each file's own; those that would be shared get a path suffix, and
    the same file given twice gets "#2", "#3"."""
    if labels:
        return list(labels)
    names = [result.label_text for result in results]
    final = list(names)
    for name in dict.fromkeys(names):
        members = [i for i, other in enumerate(names) if other == name]
        if len(members) < 2:
            continue
        suffixes = distinguishing_suffixes([results[i].path for i in members])
        for i, suffix in zip(members, suffixes):
            by_name = not results[i].metadata or name == display_name(results[i].path)
            final[i] = suffix if by_name else f"{name} ({suffix})"
    return _numbered(final)


def distinguishing_suffixes(paths: Sequence[Path]) -> list[str]:
    """For each path, its last k components ("a/b/name"), with the smallest k that makes them
    all differ (the file name shown as :func:`display_name` shows it)."""
    parts = [_components(path) for path in paths]
    distinct = len({tuple(p) for p in parts})  # the same file given twice stays one name (numbered by the caller)
    longest = max(len(p) for p in parts)
    k = next(k for k in range(1, longest + 1) if len({"/".join(p[-k:]) for p in parts}) == distinct)
    return ["/".join(p[-k:]) for p in parts]


def _components(path: Path) -> list[str]:
    resolved = Path(path).resolve()
    return [*(part for part in resolved.parent.parts if part != resolved.anchor), display_name(resolved)]


def _numbered(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    numbered = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        numbered.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return numbered
