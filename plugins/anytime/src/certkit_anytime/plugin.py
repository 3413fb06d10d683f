"""certkit hook implementations of the anytime plugin (entry point ``anytime`` in group ``certkit``).

The hook imports the certifiers when it is called: certkit loads this module to list commands
(``certkit --help``), which must not import torch or scipy.
"""

from __future__ import annotations

from certkit import hookimpl


@hookimpl
def certkit_register_certifiers(register) -> None:
    from certkit_anytime.confseq import cs_betting, cs_union
    from certkit_anytime.horvath import HorvathCertifier

    register("horvath", HorvathCertifier, description="Horváth et al. ICLR 2022: fixed target radius (-O radius=R), steps 100/1k/10k/120k, Bonferroni over steps, stop at the first decisive one")
    register("cs-union", cs_union, description="Voráček et al. NeurIPS 2024: decide radius >= R (-O radius=R) with a union-bound confidence sequence over geometric looks")
    register("cs-betting", cs_betting, description="Voráček et al. NeurIPS 2024: decide radius >= R (-O radius=R) with a betting (Krichevsky-Trofimov) confidence sequence")
