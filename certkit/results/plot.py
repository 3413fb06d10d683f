"""Certified accuracy vs. L2 radius as a PNG, drawn like the figures of Cohen et al. and DMAE.

matplotlib is imported inside the function: it costs ~0.5 s, and every CLI start would pay
it otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from certkit.results.report import ENVELOPE_LABEL


def plot_certified_accuracy(
    path: Path, curves: Sequence[tuple[str, np.ndarray, np.ndarray]], title: str
) -> None:
    """Write one step curve per ``(label, radii, accuracy)``; the envelope is dashed black.

    Certified accuracy is a non-increasing, left-continuous step function of the radius (an
    image still counts at r equal to its radius), so curves are drawn as steps with
    ``where="pre"``: a drop between two grid points appears at the earlier one, where it is.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; also keeps tests headless
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=150)
    try:
        colors = plt.get_cmap("tab10").colors
        top_radius = 0.0
        color_index = 0
        for label, radii, accuracy in curves:
            radii = np.asarray(radii, dtype=float)
            accuracy = 100 * np.asarray(accuracy, dtype=float)
            if radii.size:
                top_radius = max(top_radius, float(radii[-1]))
            if label == ENVELOPE_LABEL:
                style = {"color": "black", "linestyle": "--", "linewidth": 1.6, "zorder": 3}
            else:
                style = {"color": colors[color_index % len(colors)], "linewidth": 1.8}
                color_index += 1
            axes.step(radii, accuracy, where="pre", label=label, **style)
        axes.set_xlabel(r"$\ell_2$ radius")
        axes.set_ylabel("certified accuracy (%)")
        axes.set_title(title)
        axes.set_xlim(0, top_radius if top_radius > 0 else 1.0)
        axes.set_ylim(0, 100)
        axes.grid(True, alpha=0.35, linewidth=0.6)
        if curves:
            axes.legend(loc="upper right", frameon=True, fontsize=9)
        figure.tight_layout()
        figure.savefig(Path(path), dpi=150)
    finally:
        plt.close(figure)
