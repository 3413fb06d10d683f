"""certkit-gaussian: the Gaussian-augmentation baseline of randomized smoothing as a certkit plugin.

Models trained from scratch on noisy images (Cohen, Rosenfeld & Kolter 2019), optionally with
consistency regularization (Jeong & Shin 2020, certkit's ``noisy-ce``) or stability training
(Li et al. 2019, this plugin's ``stability`` objective). It imports only certkit's public API.
"""

__version__ = "0.1.0"
