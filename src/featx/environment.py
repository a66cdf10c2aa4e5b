"""Every environment variable featx reads, declared once with its constraint, and the one
reader of them.

Nothing else in featx reads ``os.environ`` (``tests/reliability/test_environment.py`` walks
the source and fails on a read outside this module, or of a variable not declared here).
:func:`check` parses every declared variable that is set, before any work: a bad value is one
``Error:`` line naming the variable and what it takes, never a traceback from deep inside
torch.distributed, and never a silent default. :func:`get` returns one parsed value.

The constraints are :mod:`featx.params`'s (an :class:`~featx.params.Interval` of seconds, of
ports ...) and :class:`~featx.params.Text` (non-empty text), plus :class:`AppendFile` (a file
featx appends to, checked writable before the work, as an output is).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featx.errors import InputError
from featx.params import Interval, Text


@dataclass(frozen=True)
class AppendFile:
    """A file featx appends lines to: not a folder, in an existing writable folder."""

    def ok(self, value: Any) -> bool:
        return self.problem(value) is None

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, str) or not value.strip():
            return "a file path"
        path = Path(value)
        if path.is_dir():
            return "a file, not a folder"
        parent = path.parent
        if not parent.is_dir():
            return "a file in an existing folder"
        if not os.access(parent, os.W_OK | os.X_OK) or (path.exists()
                                                           and not os.access(path, os.W_OK)):
            return "a file featx can write"
        return None

    def describe(self) -> str:
        return "a writable file path in an existing folder"

    def invalid(self) -> list[Any]:
        return ["/proc/nonexistent/trace.jsonl", "/"]


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, constraint, default (the value when unset) and
    what it does (docs/reliability.md and ``featx --help`` quote it)."""

    name: str
    constraint: Any
    default: Any
    what: str

    def invalid(self) -> list[str]:
        """Texts of the variable its constraint refuses (for the generated tests): the
        constraint's own, as the environment holds them (text; empty means unset)."""
        bad = self.constraint.invalid()
        numbers = [str(v) for v in bad if isinstance(self.constraint, Interval)
                   and isinstance(v, (int, float)) and not isinstance(v, bool)]
        return numbers + [v for v in bad if isinstance(v, str) and v]

    def parse(self, raw: str) -> Any:
        """The variable's value from its text, or one :class:`InputError` line."""
        c = self.constraint
        value: Any = raw
        if isinstance(c, Interval):
            try:
                value = int(raw) if c.type is int else float(raw)
            except ValueError:
                value = None
        if value is None or not c.ok(value):
            problem = c.problem(raw) if isinstance(c, AppendFile) else None
            raise InputError(f"the environment variable {self.name}={raw!r} must be "
                             f"{problem or c.describe()}{_UNIT.get(self.name, '')} "
                             f"({self.what}); unset it or correct it")
        return value


_UNIT = {"FEATX_DIST_TIMEOUT": " (seconds)", "FEATX_PROGRESS_EVERY": " (seconds)"}
DAY = 86400

VARIABLES: dict[str, Variable] = {v.name: v for v in [
    Variable("FEATX_DIST_TIMEOUT", Interval(float, 1, 30 * DAY), 1800.0,
             "how long a rank waits for the others under torchrun"),
    Variable("FEATX_DIST_TRACE", AppendFile(), None,
             "a file each rank appends its seconds and bytes per stage to"),
    Variable("FEATX_PROGRESS_EVERY", Interval(float, 0, DAY), 30.0,
             "seconds between plain progress lines when stderr is not a terminal"),
    Variable("FEATX_DATA", Text(), "data", "the folder `featx reproduce` reads benchmarks from"),
    Variable("FEATX_REPRODUCE_TRACE", AppendFile(), None,
             "a file `featx reproduce` appends each step's seconds to"),
    Variable("WORLD_SIZE", Interval(int, 1, 1 << 20), 1,
             "the number of processes torchrun or srun started"),
    Variable("RANK", Interval(int, 0, (1 << 20) - 1), None,
             "this process's rank under torchrun or srun"),
    Variable("LOCAL_RANK", Interval(int, 0, 1 << 10), 0,
             "this process's GPU on its node under torchrun or srun"),
    Variable("MASTER_ADDR", Text(), None, "the address rank 0 listens at"),
    Variable("MASTER_PORT", Interval(int, 1, 65535), None, "the port rank 0 listens at"),
    Variable("OMP_WAIT_POLICY", Text(), None,
             "OpenMP's; featx sets PASSIVE only when it is unset"),
]}


def is_set(name: str) -> bool:
    """Whether the declared variable ``name`` is set (to anything)."""
    _declared(name)
    return name in os.environ


def get(name: str) -> Any:
    """The parsed value of the declared variable ``name``; its default when unset or empty."""
    var = _declared(name)
    raw = os.environ.get(name, "")
    return var.parse(raw) if raw != "" else var.default


def check() -> None:
    """Parse every declared variable that is set; refuse the first bad one, and a rank
    that is not below the world size."""
    for name in VARIABLES:
        get(name)
    rank, world = get("RANK"), get("WORLD_SIZE")
    if rank is not None and world is not None and rank >= world:
        raise InputError(f"the environment variable RANK={rank} must be below "
                         f"WORLD_SIZE={world} (ranks count from 0); start featx with torchrun "
                         "or srun, which set both")


def _declared(name: str) -> Variable:
    if name not in VARIABLES:
        raise KeyError(f"{name} is not declared in featx.environment.VARIABLES")
    return VARIABLES[name]
