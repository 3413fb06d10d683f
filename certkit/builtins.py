"""certkit's own components, registered through the same hooks as any outside plugin.

Each hook imports what it registers when it is called, not when this module is imported: the
CLI loads this plugin to list its commands, and listing them must not import torch.
"""

from __future__ import annotations

import functools

from certkit import hookimpl


@hookimpl
def certkit_register_smoothers(register) -> None:
    from certkit.smoothers import GaussianSmoother, UniformSmoother

    register("gaussian", GaussianSmoother, description="N(0, sigma^2 I) in [0,1] pixel space; L2 radius sigma * Phi^-1(pA)")
    register("uniform", UniformSmoother, description="U[-lam, lam]^d, lam = sqrt(3) sigma (Yang et al. 2020); L1 radius 2 lam (pA - 1/2)")


@hookimpl
def certkit_register_certifiers(register) -> None:
    from certkit.certifiers.cohen import CohenCertifier
    from certkit.certifiers.sequential import SequentialCertifier

    register("cohen", CohenCertifier, description="Cohen et al. 2019 CERTIFY: N0 selects, N estimates, Clopper-Pearson bound")
    register("sequential", SequentialCertifier, description="Cohen's certificate with early stopping: looks chosen per image, alpha spent on the lower bounds only (Clopper-Pearson or -O bound=betting), stops once the --radii grid radius is decided")


@hookimpl
def certkit_register_objectives(register) -> None:
    from certkit.objectives import NoisyCrossEntropy

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
    from certkit.data import BUILTIN_DATASETS

    for name, entry in BUILTIN_DATASETS.items():
        register(name, entry, description=entry.description)


@hookimpl
def certkit_register_commands(register) -> None:
    # "module:function" references: a command's module (and torch) is imported only when that
    # command runs. The description is its line in `certkit --help`.
    register("certify", "certkit.cli.certify_cmd:certify", description="Certify a model with randomized smoothing: per-image results file and certified-accuracy table.")
    register("predict", "certkit.cli.predict_cmd:predict", description="Predict with the smoothed classifier (Cohen et al. PREDICT), abstaining when undecided.")
    register("report", "certkit.cli.report_cmd:report", description="Certified accuracy table (rich, Markdown, CSV) and plot from results files.")
    register("compare", "certkit.cli.compare_cmd:compare", description="Compare methods (models of any plugin, or results files) on identical images, sigma, N0, N, alpha and seed: one table and one plot.")
    register("plugins", "certkit.cli.plugins_cmd:plugins_command", description="List plugins with their versions and every component they register.")
    register("plugin", "certkit.cli.plugin_cmd:plugin_app", description="Start a plugin of your own: 'certkit plugin new NAME' writes a working plugin distribution.")
    register("config", "certkit.cli.config_cmd:config", description="Show every setting's effective value and where it came from.")
    register("pretrain", "certkit.cli.train_cmd:pretrain", description="Self-supervised pretraining with a registered objective (e.g. 'certkit pretrain dmae').")
    register("finetune", "certkit.cli.train_cmd:finetune", description="Fine-tune a classifier on noisy images with a registered supervised objective.")
    register("export", "certkit.cli.export_cmd:export", description="Export a model to one verified ONNX file with its input spec, sigma and class names.")
