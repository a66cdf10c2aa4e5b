"""Options shared by several commands, defined once.

``inputs_arg`` (extract, fit-*, encode, train-svm, evaluate): files or folders, or ``-`` for
paths on stdin, expanded here. ``out_opt``, ``overwrite_opt``: every command that writes.
``device_opt``, ``batch_size_opt``, ``seed_opt``: every command that computes. ``bars``: the
progress bars of a command, off with ``-q``.
"""

from __future__ import annotations

import shlex
import sys

import click

from featx.cli.progress import Bars
from featx.params import SEED


def expand_stdin(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[str]:
    """Replace a ``-`` by the paths listed on stdin, one per line (blank lines and ``#``
    comments skipped). Under torchrun the pipe reaches rank 0 alone: refused there."""
    from featx import environment

    out: list[str] = []
    for item in values:
        if item == "-":
            if environment.get("WORLD_SIZE") > 1:
                raise click.BadParameter(
                    "stdin reaches rank 0 only under torchrun: give the paths as arguments "
                    "(or a file listing them)", ctx=ctx, param=param)
            out += [ln.strip() for ln in sys.stdin if ln.strip() and not ln.startswith("#")]
        else:
            out.append(item)
    return out


inputs_arg = click.argument("inputs", nargs=-1, required=True, callback=expand_stdin)
images_arg = click.argument("inputs", nargs=-1, callback=expand_stdin)
out_opt = click.option("-o", "--out", required=True, type=click.Path(),
                       help="Output folder (shards) or file (models).")
overwrite_opt = click.option("--overwrite", is_flag=True,
                             help="Replace existing output instead of refusing / resuming.")
device_opt = click.option("--device", default="auto", show_default=True,
                          help="auto, cpu, cuda or cuda:N.")
seed_opt = click.option("--seed", default=0, show_default=True,
                        type=click.IntRange(SEED.low, SEED.high),  # the configs' (params.SEED)
                        help="Seed for sampling and random initialisation.")


def model_opt(kind: str, help: str, **kwargs):
    """``--pca``, ``--gmm``, ``--guidance``, ``--model``: an existing model file (its kinds:
    featx.io.MODEL_KINDS)."""
    return click.option(f"--{kind}", type=click.Path(exists=True, dir_okay=False), help=help,
                        **kwargs)


def constraint_type(cfg_type: type, name: str) -> click.ParamType:
    """The click type of a config setting, from its constraint (featx.params): the range or
    the choices ``--help`` shows and the parser checks (NaN and the rest: the config)."""
    from dataclasses import fields

    from featx.params import Options

    c = next(f for f in fields(cfg_type) if f.name == name).metadata["constraint"]
    if isinstance(c, Options):
        return click.Choice(list(c.values))
    kind = click.IntRange if c.type is int else click.FloatRange
    return kind(min=c.low, max=c.high, min_open=c.closed in ("right", "neither"),
                max_open=c.closed in ("left", "neither"))


def batch_size_opt(cfg_type: type):
    return click.option("--batch-size", default=cfg_type.batch_size, show_default=True,
                        type=constraint_type(cfg_type, "batch_size"),
                        help="CNN inputs (views) per forward pass.")


ARGV: list[str] = []  # set by the featx group from the arguments it was invoked with


def command_line() -> str:
    """The command line as given, recorded in every output's provenance."""
    return shlex.join(["featx", *(ARGV or sys.argv[1:])])


def bars(unit: str = "img") -> Bars:
    """Progress bars on stderr, unless the group was given ``-q``."""
    return Bars(unit, enabled=not click.get_current_context().obj["quiet"])


def emit(path) -> None:
    """Print a written path on stdout at once, so the next stage in a pipe can start on it."""
    click.echo(str(path))
    sys.stdout.flush()
