"""``--nproc-per-node K``: run the same command on K local processes through torch's launcher.

It does what ``torchrun --standalone --nproc-per-node K -m certkit -- <command>`` does, by
calling torchrun's own ``run`` (torch.distributed.run: elastic agent, c10d rendezvous on a
free local port, rank environment). The command's arguments are handed to the launcher after
its options are parsed, so torchrun's option parser never sees them: ``--max`` cannot be taken
for an abbreviation of torchrun's ``--max-restarts``, and users need not know the ``--`` rule.
"""

from __future__ import annotations

import logging
import os
import shlex
from typing import Annotated

import typer

from certkit.cli.interrupt import COMMAND_ENV, EXIT_INTERRUPTED, typed_command
from certkit.cli.options import command_line
from certkit.errors import CertkitError

FLAG = "--nproc-per-node"

NprocPerNode = Annotated[
    int,
    typer.Option(
        FLAG,
        help="Run on this many processes of this machine (one per GPU, or CPU processes with gloo), launched "
        "through torch.distributed.run; the same as 'torchrun --standalone --nproc-per-node K -m certkit -- ...'.",
        show_default=False,
    ),
]


def under_launcher() -> bool:
    """True in a process that torchrun (or this launcher) started as one rank."""
    return "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ


def wants_launch(nproc: int) -> bool:
    """Whether the command should hand itself to :func:`launch` instead of running here."""
    if nproc < 1:
        raise CertkitError(f"{FLAG} must be >= 1, got {nproc}.", f"Pass e.g. {FLAG} 2.")
    if nproc > 1 and under_launcher():
        raise CertkitError(f"{FLAG} {nproc} in a process that torchrun already started.", f"Drop {FLAG}, or run certkit without torchrun.")
    return nproc > 1


def launch(nproc: int) -> None:
    """Run the current command again, without ``--nproc-per-node``, on ``nproc`` processes; return
    when all succeeded, else exit with the first failing process's status (its error line is
    already printed)."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    # The elastic agent logs each signal it forwards and each process it stops; the ranks' own
    # lines (an error, or what Ctrl-C saved) are what the user needs.
    for name in [name for name in logging.root.manager.loggerDict if name.startswith("torch.distributed.elastic")]:
        logging.getLogger(name).setLevel(logging.ERROR)  # each has its own level, set by torch
    args = torchrun.parse_args(["--standalone", "--nproc-per-node", str(nproc), "-m", "certkit"])
    typed = command_line()
    if typed is None:
        raise RuntimeError(f"{FLAG} works from the certkit command line only")
    args.training_script_args = without_flag(typed[1])  # after parsing: torchrun's options never see ours
    os.environ[COMMAND_ENV] = shlex.join(typed_command())  # what rank 0's "resume with:" line repeats
    try:
        torchrun.run(args)
    except ChildFailedError as failed:
        codes = [failure.exitcode for failure in failed.failures.values()]
        raise SystemExit(next((code for code in codes if code > 0), 1)) from None
    except (SignalException, KeyboardInterrupt):
        raise SystemExit(EXIT_INTERRUPTED) from None  # rank 0 printed what is saved and how to resume
    finally:
        os.environ.pop(COMMAND_ENV, None)


def without_flag(arguments: list[str]) -> list[str]:
    """``arguments`` without ``--nproc-per-node K`` / ``--nproc-per-node=K``."""
    kept: list[str] = []
    skip = False
    for argument in arguments:
        if skip:
            skip = False
        elif argument == FLAG:
            skip = True
        elif not argument.startswith(FLAG + "="):
            kept.append(argument)
    return kept

