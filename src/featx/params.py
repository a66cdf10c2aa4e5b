"""Each setting's constraint, said once: the stage configs validate with it, the command line
builds its option types from it, and ``tests/reliability/test_parameters.py`` generates an
invalid value for every constrained setting of every stage from it (as scikit-learn's
``_parameter_constraints`` with ``Interval`` / ``StrOptions`` and ``check_param_validation``).

    @dataclass(frozen=True)
    class FitPCAConfig:
        dim: int = param(500, Interval(int, 1))

A message names the command-line option (``--dim must be an integer >= 1, got 0``); the Python
API turns the option into the parameter's name (``dim must be ...``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from featx.errors import InputError


@dataclass(frozen=True)
class Interval:
    """A number of ``type`` (int or float) between ``low`` and ``high`` (None: unbounded);
    ``closed`` says which ends belong to it: "both", "left", "right" or "neither"."""

    type: type
    low: float | None = None
    high: float | None = None
    closed: str = "both"

    def ok(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.type is int and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        low_in = self.closed in ("both", "left")
        high_in = self.closed in ("both", "right")
        if self.low is not None and (value < self.low or (value == self.low and not low_in)):
            return False
        return not (self.high is not None and
                    (value > self.high or (value == self.high and not high_in)))

    def describe(self) -> str:
        what = "an integer" if self.type is int else "a finite number"
        low = ">=" if self.closed in ("both", "left") else ">"
        high = "<=" if self.closed in ("both", "right") else "<"
        if self.low is not None and self.high is not None:
            return f"{what} {low} {_number(self.low)} and {high} {_number(self.high)}"
        if self.low is not None:
            return f"{what} {low} {_number(self.low)}"
        return f"{what} {high} {_number(self.high)}" if self.high is not None else what

    def invalid(self) -> list[Any]:
        """Values this interval refuses (for the generated tests)."""
        out: list[Any] = ["x"]
        if self.low is not None:
            out.append(self.low if self.closed in ("right", "neither") else
                       self.low - (1 if self.type is int else abs(self.low) * 0.5 + 0.5))
        if self.high is not None:
            out.append(self.high if self.closed in ("left", "neither") else
                       self.high + (1 if self.type is int else abs(self.high) * 0.5 + 0.5))
        if self.type is float:
            out.append(float("nan"))
        return out


def _number(x: float) -> str:
    """A bound as a person writes it: 2592000, not 2.592e+06; 0.5 as 0.5."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


@dataclass(frozen=True)
class Options:
    """One of ``values``."""

    values: tuple[str, ...]

    def ok(self, value: Any) -> bool:
        return value in self.values

    def describe(self) -> str:
        return f"one of {', '.join(self.values)}"

    def invalid(self) -> list[Any]:
        return ["nope"]


@dataclass(frozen=True)
class Flag:
    """True or False, and nothing else: ``"no"`` is not False, 1 is not True."""

    def ok(self, value: Any) -> bool:
        return isinstance(value, bool)

    def describe(self) -> str:
        return "True or False"

    def invalid(self) -> list[Any]:
        return ["no", 1]


@dataclass(frozen=True)
class File:
    """A path as a ``str`` (the Python API turns an ``os.PathLike`` into one; bytes are not
    a path here). Empty means not given: the stage says what it needs."""

    def ok(self, value: Any) -> bool:
        return isinstance(value, str)

    def describe(self) -> str:
        return "a path (str or os.PathLike)"

    def invalid(self) -> list[Any]:
        return [b"model.h5", 3]


@dataclass(frozen=True)
class Text:
    """A name (a layer, a backbone, a device ...): a non-empty ``str``."""

    def ok(self, value: Any) -> bool:
        return isinstance(value, str) and bool(value.strip())

    def describe(self) -> str:
        return "a non-empty name (str)"

    def invalid(self) -> list[Any]:
        return [3, "", " "]


@dataclass(frozen=True)
class Names:
    """Several names: a non-empty list or tuple of non-empty ``str`` (the API also takes one
    comma-separated ``str`` and splits it before the config sees it)."""

    def ok(self, value: Any) -> bool:
        return isinstance(value, (list, tuple)) and bool(value) and all(
            isinstance(v, str) and v.strip() for v in value)

    def describe(self) -> str:
        return "a list of names (or one comma-separated str)"

    def invalid(self) -> list[Any]:
        return [(), (3,), {"a": 1}]


@dataclass(frozen=True)
class Integers:
    """Several integers >= ``low``: a non-empty list or tuple of ``int`` (not bool)."""

    low: int = 0

    def ok(self, value: Any) -> bool:
        return isinstance(value, (list, tuple)) and bool(value) and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= self.low for v in value)

    def describe(self) -> str:
        return f"a list of integers >= {self.low}"

    def invalid(self) -> list[Any]:
        return [(), ("1",), (self.low - 1,), 3]


@dataclass(frozen=True)
class Costs:
    """An SVM's C: a non-empty tuple of finite numbers > 0, or ``"auto"``."""

    def ok(self, value: Any) -> bool:
        return value == "auto" if isinstance(value, str) else (
            isinstance(value, tuple) and bool(value) and all(
                Interval(float, 0, closed="neither").ok(c) for c in value))

    def describe(self) -> str:
        return "finite numbers > 0, or auto"

    def invalid(self) -> list[Any]:
        return ["55", (0.0,), (float("inf"),), (), (True,)]


@dataclass(frozen=True)
class Instance:
    """An object of ``type`` (a nested config)."""

    type: type

    def ok(self, value: Any) -> bool:
        return isinstance(value, self.type)

    def describe(self) -> str:
        return f"a {self.type.__name__}"

    def invalid(self) -> list[Any]:
        return [{"method": "cross-layer"}, "cross-layer"]


# a seed: what numpy's and scikit-learn's random states take
SEED = Interval(int, 0, 2**32 - 1)


def param(default: Any, constraint: Any, *, flag: str | None = None,
          optional: bool = False) -> Any:
    """A config field with its constraint; ``flag`` is its command-line option (default:
    ``--`` and the name with ``-`` for ``_``); ``optional``: None is allowed too."""
    return dataclasses.field(default=default, metadata={
        "constraint": constraint, "flag": flag, "optional": optional})


def flag_of(field: dataclasses.Field) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def constrained(cfg_type: type) -> list[dataclasses.Field]:
    """The fields of a config class that carry a constraint."""
    return [f for f in dataclasses.fields(cfg_type) if "constraint" in f.metadata]


def validate(cfg: Any) -> None:
    """Refuse the first setting of ``cfg`` outside its constraint, naming its option."""
    for f in constrained(type(cfg)):
        value = getattr(cfg, f.name)
        if value is None and f.metadata["optional"]:
            continue
        if not f.metadata["constraint"].ok(value):
            raise InputError(f"{flag_of(f)} must be {f.metadata['constraint'].describe()}, "
                             f"got {value!r}")
