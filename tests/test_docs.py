"""Docs and code in step: every hook specification is documented with its exact signature."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from certkit import hookspecs

DOC = Path(__file__).resolve().parents[1] / "docs" / "writing-plugins.md"


def hook_specs() -> dict[str, str]:
    """name -> ``def name(params) -> return`` as written in hookspecs.py (annotations as text)."""
    found = {}
    for name, function in inspect.getmembers(hookspecs, inspect.isfunction):
        if not hasattr(function, "certkit_spec"):
            continue
        signature = inspect.signature(function)
        params = ", ".join(f"{p.name}: {p.annotation}" for p in signature.parameters.values())
        found[name] = f"def {name}({params}) -> {signature.return_annotation}"
    return found


def test_every_hookspec_is_documented_with_its_signature():
    text = DOC.read_text()
    specs = hook_specs()
    assert len(specs) >= 7
    missing = [signature for signature in specs.values() if signature not in text]
    assert not missing, f"docs/writing-plugins.md lacks: {missing}"


def test_the_doc_names_no_hook_that_does_not_exist():
    documented = set(re.findall(r"\bcertkit_register_\w+", DOC.read_text()))
    assert documented <= set(hook_specs()), documented - set(hook_specs())


def test_the_register_callable_is_documented_as_specified():
    signature = inspect.signature(hookspecs.Register.__call__)
    params = [p for p in signature.parameters.values() if p.name != "self"]
    parts = []
    for p in params:
        if p.kind is p.KEYWORD_ONLY and "*" not in parts:
            parts.append("*")
        prefix = "**" if p.kind is p.VAR_KEYWORD else ""
        default = "" if p.default is p.empty else f" = {p.default!r}".replace("''", '""')
        parts.append(f"{prefix}{p.name}: {p.annotation}{default}")
    assert f"register({', '.join(parts)}) -> None" in DOC.read_text()


API_DOC = DOC.parent / "python-api.md"


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(info string, body) of every fenced code block."""
    return [(info.strip(), body) for info, body in re.findall(r"^```([^\n]*)\n(.*?)^```", text, flags=re.S | re.M)]


def test_the_python_api_notebook_example_runs_and_prints_what_the_doc_says(capsys):
    blocks = fenced_blocks(API_DOC.read_text())
    position = next(i for i, (info, _) in enumerate(blocks) if info == "python notebook")
    code, (_, printed) = blocks[position][1], blocks[position + 1]
    assert len(code.strip().splitlines()) <= 10
    exec(compile(code, str(API_DOC), "exec"), {})
    assert capsys.readouterr().out == printed
