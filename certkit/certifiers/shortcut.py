"""``--stop-if-wrong``: an evaluation shortcut, opt-in, that stops an image after selection when
the selected class is not its label (as the reference codes of Cohen et al. and DMAE do).

Certified accuracy at radius r counts images whose certificate names the label with a radius
>= r. The certifiers here only ever certify the class their selection stage chose, so an image
whose selection chose another class counts for nothing at any radius, whatever the rest of its
run would have found: cutting it leaves the certified-accuracy table unchanged by construction.
The row of a cut image says so (``cut`` = 1); it holds no certificate (predict -1, radius 0),
which is why the shortcut is opt-in: such a row does not report the smoothed classifier's answer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from certkit.interfaces import ABSTAIN, Certificate, CertifyProcess


def stop_if_wrong(process: CertifyProcess, label: int) -> CertifyProcess:
    """Wrap a certifier process: if the counts of its first request (its selection) pick a
    class other than ``label``, end it there; otherwise pass everything through unchanged.
    Returns ``(result, cut)``."""
    stage, num = next(process)
    counts = yield stage, num
    selected = int(np.argmax(counts))
    if stage.startswith("selection") and selected != label:
        process.close()
        return Certificate(ABSTAIN, 0.0, 0.0, num, 0, 0, int(counts[selected])), True
    result: Any
    try:
        request = process.send(counts)
        while True:
            counts = yield request
            request = process.send(counts)
    except StopIteration as finished:
        result = finished.value
    return result, False
