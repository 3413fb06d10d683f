"""What every smoother shares: the sigma check, and building a registered smoother from its
name, sigma and ``-S key=value`` options with errors that say what is allowed."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

from certkit.errors import CertkitError, PluginError
from certkit.interfaces import NORMS, InputSpec, Smoother

#: Constructor parameters that are not options: the sigma, and what a dataclass smoother sets itself.
_NOT_OPTIONS = ("sigma", "name", "norm")


def check_sigma(sigma: float) -> None:
    if not sigma > 0:
        raise CertkitError(f"sigma must be > 0, got {sigma}.", "Pass e.g. --sigma 0.25.")


def smoother_options(smoother: Smoother) -> dict[str, Any]:
    """The options a smoother reports (``options()``), ``{}`` when it has none."""
    report = getattr(smoother, "options", None)
    return dict(report()) if callable(report) else {}


def option_names(factory: Any) -> dict[str, Any]:
    """The options a smoother factory takes, name -> annotation (Any when unknown)."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    try:
        hints = get_type_hints(factory.__init__ if inspect.isclass(factory) else factory)
    except Exception:  # a plugin's annotations may not resolve; then types go unchecked
        hints = {}
    return {
        name: hints.get(name, Any)
        for name, parameter in parameters.items()
        if name not in _NOT_OPTIONS and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    }


def build_smoother(name: str, sigma: float, options: Mapping[str, Any] | None = None) -> Smoother:
    """The registered smoother ``name`` at ``sigma`` with ``options``; unknown or ill-typed options
    and a smoother that does not declare its norm are one-line errors."""
    from certkit import plugins  # the registry imports hooks, which import builtins, which import us

    component = plugins.get("smoothers", name)
    options = dict(options or {})
    allowed = option_names(component.obj)
    for key, value in options.items():
        if key not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise CertkitError(f"unknown option '{key}' of smoother '{component.name}'.", f"Its options: {known}.")
        _check_type(component.name, key, value, allowed[key])
    try:
        smoother = component.obj(sigma, **options)
    except CertkitError:
        raise
    except (TypeError, ValueError) as exc:
        raise CertkitError(f"smoother '{component.name}' refused its options: {exc}.", "Check the -S values.") from None
    _check_declared(smoother, component)
    return smoother


def _check_type(smoother: str, key: str, value: Any, annotation: Any) -> None:
    members = [a for a in get_args(annotation) if a is not type(None)] if get_origin(annotation) in (Union, UnionType) else [annotation]
    if len(members) != 1 or (value is None and len(get_args(annotation)) > 1):
        return  # several types, or None where None is allowed: the smoother checks it
    annotation = members[0]
    expected = {float: (int, float), int: (int,), bool: (bool,), str: (str,)}.get(annotation)
    if expected is None:
        return
    wrong = not isinstance(value, expected) or (annotation in (int, float) and isinstance(value, bool))
    if wrong:
        raise CertkitError(
            f"option '{key}' of smoother '{smoother}' must be {annotation.__name__}, got {value!r}.",
            f"Pass e.g. -S {key}={_example(annotation)}.",
        )


def _example(annotation: type) -> str:
    return {float: "0.5", int: "2", bool: "true", str: "name"}[annotation]


def _check_declared(smoother: Any, component: Any) -> None:
    missing = [attr for attr in ("name", "sigma", "norm", "perturb", "radius") if not hasattr(smoother, attr)]
    if missing:
        raise PluginError(
            f"smoother '{component.name}' of plugin '{component.plugin}' lacks {', '.join(missing)}.",
            "A smoother needs name, sigma, norm, perturb() and radius(); see docs/writing-plugins.md.",
        )
    if smoother.norm not in NORMS:
        raise PluginError(
            f"smoother '{component.name}' of plugin '{component.plugin}' declares norm {smoother.norm!r}.",
            f"A smoother's norm must be one of {', '.join(NORMS)}: the norm its radius() is measured in.",
        )


def describe_smoother(smoother: Smoother) -> str:
    """"σ=0.25" for the Gaussian smoother, "uniform σ=0.25 (l1)" for others: a run is never
    described like a Gaussian one when it is not."""
    if smoother.name == "gaussian" and smoother.norm == "l2" and not smoother_options(smoother):
        return f"σ={smoother.sigma:g}"
    options = "".join(f" {key}={value}" for key, value in sorted(smoother_options(smoother).items()))
    return f"{smoother.name}{options} σ={smoother.sigma:g} ({smoother.norm})"


def training_mismatch(spec: InputSpec, trained_sigma: float | None, smoother: Smoother) -> str | None:
    """One line when the model was trained for other noise than ``smoother`` draws, else None.
    A model that records no noise kind (older weights) is taken as Gaussian-trained."""
    trained_noise = spec.noise or "gaussian"
    other_sigma = trained_sigma is not None and abs(trained_sigma - smoother.sigma) > 1e-9
    if trained_noise == smoother.name and not other_sigma:
        return None
    trained = f"{trained_noise} noise" + (f" at sigma {trained_sigma:g}" if trained_sigma is not None else "")
    return f"warning: the model was trained for {trained}; certifying with {smoother.name} noise at sigma {smoother.sigma:g}"
