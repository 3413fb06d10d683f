"""certkit-anytime: sample-efficient certifiers from the literature, as a certkit plugin.

- ``horvath``: Horváth, Müller, Fischer & Vechev, "Boosting Randomized Smoothing with Variance
  Reduced Classifiers", ICLR 2022 (adaptive sampling for a predetermined radius).
- ``cs-union`` and ``cs-betting``: Voráček & Hein, "Treatment of Statistical Estimation Problems
  in Randomized Smoothing for Adversarial Robustness", NeurIPS 2024 (confidence sequences).

It imports only certkit's public API (``certkit``, ``certkit.interfaces``, ``certkit.errors``)
and computes its own statistics, the way a third-party certifier plugin would.
"""

__version__ = "0.1.0"
