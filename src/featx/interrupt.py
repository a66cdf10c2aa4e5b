"""SIGTERM handled like Ctrl-C: the run stops, its cleanup runs, only whole files are left.

The CLI installs :func:`request` as the SIGTERM handler. Inside a stage's batch loop
(:func:`polling`) it only records the request and the loop raises :class:`Terminated` at its
next :func:`check`, a safe point: an exception raised from a signal handler can land inside a
finaliser or weakref callback, where Python swallows it ("Exception ignored in ..."). Outside
such loops it raises at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(BaseException):
    """The process was asked to terminate (SIGTERM)."""


_requested = False
_polling = 0


def request(signum=None, frame=None) -> None:
    global _requested
    _requested = True
    if not _polling:
        raise Terminated


@contextmanager
def polling() -> Iterator[None]:
    """A loop that calls :func:`check` at each step: requests only set the flag inside it."""
    global _polling
    _polling += 1
    try:
        yield
    finally:
        _polling -= 1


def check() -> None:
    """Raise :class:`Terminated` if termination was requested."""
    if _requested:
        raise Terminated


def reset() -> None:
    global _requested
    _requested = False
