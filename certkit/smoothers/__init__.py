"""Smoothing distributions: how certification noise is drawn and which radius, in which norm, a
bound on the top-class probability certifies."""

from certkit.smoothers.base import build_smoother, describe_smoother, smoother_options, training_mismatch
from certkit.smoothers.gaussian import GaussianSmoother
from certkit.smoothers.uniform import UniformSmoother, uniform_half_width, uniform_l1_radius

__all__ = ["GaussianSmoother", "UniformSmoother", "build_smoother", "describe_smoother", "smoother_options", "training_mismatch", "uniform_half_width", "uniform_l1_radius"]
