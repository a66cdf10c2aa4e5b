"""Options shared by several commands, defined once.

``inputs_arg`` (extract, fit-*, encode, train-svm, evaluate): files or folders, or ``-`` for
paths on stdin. ``out_opt``, ``overwrite_opt``: every command that writes. ``device_opt``,
``batch_size_opt``, ``seed_opt``: every command that computes.
"""

from __future__ import annotations

import shlex
import sys

import click

inputs_arg = click.argument("inputs", nargs=-1, required=True)
out_opt = click.option("-o", "--out", required=True, type=click.Path(),
                       help="Output folder (shards) or file (models).")
overwrite_opt = click.option("--overwrite", is_flag=True,
                             help="Replace existing output instead of refusing / resuming.")
device_opt = click.option("--device", default="auto", show_default=True,
                          help="auto, cpu, cuda or cuda:N.")
batch_size_opt = click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1),
                              help="CNN inputs (views) per forward pass.")
seed_opt = click.option("--seed", default=0, show_default=True, type=int,
                        help="Seed for sampling and random initialisation.")


ARGV: list[str] = []  # set by the featx group from the arguments it was invoked with


def command_line() -> str:
    """The command line as given, recorded in every output's provenance."""
    return shlex.join(["featx", *(ARGV or sys.argv[1:])])


def emit(path) -> None:
    """Print a written path on stdout at once, so the next stage in a pipe can start on it."""
    click.echo(str(path))
    sys.stdout.flush()
