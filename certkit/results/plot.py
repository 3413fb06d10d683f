"""Certified accuracy vs. radius as a PNG, drawn like the figures of Cohen et al. and DMAE.

Radii of different norms never share an axis: one panel per norm, each titled and labelled with
its norm. A curve stops at the largest radius its run can certify (a dotted line marks it):
beyond it the accuracy is not 0, it is out of the run's reach.

matplotlib is imported inside the function: it costs ~0.5 s, and every CLI start would pay
it otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from certkit.results.metrics import certified_accuracy, envelope as envelope_curve, fine_radius_grid, reach_of
from certkit.results.reader import ResultsFile, norm_name
from certkit.results.report import envelope_label, norm_groups

_AXIS_NORMS = {"l2": r"$\ell_2$", "l1": r"$\ell_1$", "linf": r"$\ell_\infty$"}


@dataclass(frozen=True)
class Curve:
    """One line of the plot."""

    label: str
    radii: np.ndarray
    accuracy: np.ndarray  # fractions
    norm: str = "l2"
    reach: float | None = None  # largest certifiable radius; the curve stops there
    envelope: bool = False  # dashed black


def curves_for(results: Sequence[ResultsFile], labels: Sequence[str], envelope: bool = False) -> list[Curve]:
    """A curve per file on a fine grid of its norm's files, plus the envelope of each norm."""
    groups = norm_groups(results)
    reaches = [reach_of(r) for r in results]
    fine = {norm: fine_radius_grid([results[i] for i in members]) for norm, members in groups.items()}
    curves = [
        Curve(label, fine[r.norm], certified_accuracy(r, fine[r.norm]), r.norm, reach)
        for label, r, reach in zip(labels, results, reaches)
    ]
    if envelope:
        for norm, members in groups.items():
            group_reaches = [reaches[i] for i in members]
            reach = None if any(x is None for x in group_reaches) else max(group_reaches)
            accuracy = envelope_curve([results[i] for i in members], fine[norm])
            curves.append(Curve(envelope_label(norm, len(groups) > 1), fine[norm], accuracy, norm, reach, envelope=True))
    return curves


def plot_certified_accuracy(path: Path, curves: Sequence[Curve], title: str) -> None:
    """Write the :func:`draw` figure of ``curves`` as a PNG."""
    import matplotlib.pyplot as plt

    figure = draw(curves, title)
    try:
        figure.savefig(Path(path), dpi=150)
    finally:
        plt.close(figure)


def draw(curves: Sequence[Curve], title: str) -> Any:
    """A matplotlib figure with one step curve per :class:`Curve`, one panel per norm;
    envelopes are dashed black. The caller closes it (``plt.close``).

    Certified accuracy is a non-increasing, left-continuous step function of the radius (an
    image still counts at r equal to its radius), so curves are drawn as steps with
    ``where="pre"``: a drop between two grid points appears at the earlier one, where it is.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; also keeps tests headless
    import matplotlib.pyplot as plt

    norms = list(dict.fromkeys(curve.norm for curve in curves)) or ["l2"]
    figure, panels = plt.subplots(1, len(norms), figsize=(6.4 * len(norms), 4.2), dpi=150, squeeze=False)
    colors = plt.get_cmap("tab10").colors
    color_index = 0
    for axes, norm in zip(panels[0], norms):
        top_radius = 0.0
        marked_reach = False
        for curve in (c for c in curves if c.norm == norm):
            radii = np.asarray(curve.radii, dtype=float)
            if radii.size:
                top_radius = max(top_radius, float(radii[-1]))
            if curve.envelope:
                style = {"color": "black", "linestyle": "--", "linewidth": 1.6, "zorder": 3}
            else:
                style = {"color": colors[color_index % len(colors)], "linewidth": 1.8}
                color_index += 1
            axes.step(radii, 100 * visible_accuracy(curve), where="pre", label=_literal(curve.label), **style)
            if curve.reach is not None and not curve.envelope and radii.size and curve.reach < radii[-1]:  # an envelope ends at a file's reach
                axes.axvline(curve.reach, color=style["color"], linestyle=":", linewidth=1.0)
                marked_reach = True
        if marked_reach:  # one neutral legend entry for the dotted lines of every curve
            axes.plot([], [], color="gray", linestyle=":", linewidth=1.0, label="largest certifiable radius")
        axes.set_xlabel(f"{_AXIS_NORMS.get(norm, norm_name(norm))} radius")
        axes.set_ylabel("certified accuracy (%)")
        axes.set_title(_literal(f"{title}, {norm_name(norm)} radius"), fontsize=10)
        axes.set_xlim(0, top_radius if top_radius > 0 else 1.0)
        axes.set_ylim(0, 100)
        axes.grid(True, alpha=0.35, linewidth=0.6)
        if curves:
            axes.legend(loc="upper right", frameon=True, fontsize=9)
    figure.tight_layout()
    return figure


def visible_accuracy(curve: Curve) -> np.ndarray:
    """The curve's accuracy, NaN (no line) beyond its reach: unreachable, not 0."""
    radii = np.asarray(curve.radii, dtype=float)
    accuracy = np.asarray(curve.accuracy, dtype=float)
    if curve.reach is None:
        return accuracy
    return np.where(radii <= curve.reach * (1 + 1e-9), accuracy, np.nan)


def _literal(text: str) -> str:
    """User text as matplotlib shows it literally: "$" would start math, a leading "_" hides a legend entry."""
    text = text.replace("$", r"\$")
    return "\N{ZERO WIDTH SPACE}" + text if text.startswith("_") else text
