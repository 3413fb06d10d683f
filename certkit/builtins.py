"""certkit's own components, registered through the same hooks as any outside plugin."""

from __future__ import annotations

import functools

from certkit import hookimpl
from certkit.certifiers.cohen import CohenCertifier
from certkit.certifiers.sequential import SequentialCertifier
from certkit.data import BUILTIN_DATASETS
from certkit.objectives import NoisyCrossEntropy
from certkit.smoothers import GaussianSmoother, UniformSmoother


@hookimpl
def certkit_register_smoothers(register) -> None:
    register("gaussian", GaussianSmoother, description="N(0, sigma^2 I) in [0,1] pixel space; L2 radius sigma * Phi^-1(pA)")
    register("uniform", UniformSmoother, description="U[-lam, lam]^d, lam = sqrt(3) sigma (Yang et al. 2020); L1 radius 2 lam (pA - 1/2)")


@hookimpl
def certkit_register_certifiers(register) -> None:
    register("cohen", CohenCertifier, description="Cohen et al. 2019 CERTIFY: N0 selects, N estimates, Clopper-Pearson bound")
    register("sequential", SequentialCertifier, description="Cohen's certificate with early stopping: growing looks, alpha spent across them, stops once the --radii grid radius is decided")


@hookimpl
def certkit_register_objectives(register) -> None:
    register(
        "noisy-ce",
        NoisyCrossEntropy,
        description="cross-entropy on x + N(0, sigma^2) (Cohen et al.), optional consistency regularization (Jeong & Shin)",
        supervised=True,
    )
    register(
        "noisy-uniform",
        functools.partial(NoisyCrossEntropy, smoother="uniform", name="noisy-uniform"),
        description="noisy-ce with uniform noise U[-sqrt(3) sigma, sqrt(3) sigma]: trains for the L1 'uniform' smoother",
        supervised=True,
    )


@hookimpl
def certkit_register_datasets(register) -> None:
    for name, entry in BUILTIN_DATASETS.items():
        register(name, entry, description=entry.description)


@hookimpl
def certkit_register_commands(register) -> None:
    from certkit.cli.certify_cmd import certify
    from certkit.cli.compare_cmd import compare
    from certkit.cli.config_cmd import config
    from certkit.cli.export_cmd import export
    from certkit.cli.plugin_cmd import plugin_app
    from certkit.cli.plugins_cmd import plugins_command
    from certkit.cli.predict_cmd import predict
    from certkit.cli.report_cmd import report
    from certkit.cli.train_cmd import finetune, pretrain

    register("certify", certify)
    register("predict", predict)
    register("report", report, description="Certified accuracy table (rich, Markdown, CSV) and plot from results files.")
    register("compare", compare, description="Compare methods (models of any plugin, or results files) on identical images, sigma, N0, N, alpha and seed: one table and one plot.")
    register("plugins", plugins_command)
    register("plugin", plugin_app, description="Start a plugin of your own: 'certkit plugin new NAME' writes a working plugin distribution.")
    register("config", config)
    register("pretrain", pretrain)
    register("finetune", finetune)
    register("export", export, description="Export a model to one verified ONNX file with its input spec, sigma and class names.")
