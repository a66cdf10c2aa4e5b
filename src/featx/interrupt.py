"""SIGTERM and Ctrl-C (SIGINT) stop a run at a safe point: its cleanup runs, only whole files
are left.

The stage driver installs :func:`request` as the handler of both (unless the caller installed
its own). Inside a stage's batch loop (:func:`polling`) it only records the request and the
loop raises at its next :func:`check`, a safe point: an exception raised from a signal handler
can land inside a finaliser or weakref callback, where Python swallows it ("Exception ignored
in ..."). Outside such loops it raises at once. After a first Ctrl-C further ones are ignored
until the run has ended, so a second cannot break the cleanup of the first (a DataLoader
shutting its workers down, a shard being removed). The CLI exits 143 on SIGTERM and 130 on
Ctrl-C, as a shell does.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(BaseException):
    """The process was asked to terminate (SIGTERM); ``code`` is the shell's exit status."""

    code, what = 143, "terminated (SIGTERM)"


class Interrupted(Terminated):
    """The run was interrupted (Ctrl-C, SIGINT)."""

    code, what = 130, "interrupted (Ctrl-C)"


_requested: type[Terminated] | None = None
_delivered = False  # a check() has raised the request
_polling = 0


def request(signum=None, frame=None) -> None:
    """The signal handler: record the request (SIGINT: :class:`Interrupted`, else
    :class:`Terminated`); raise it at once outside a polled loop."""
    global _requested
    kind = Interrupted if signum == signal.SIGINT else Terminated
    if kind is Interrupted:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C waits for the cleanup
    _requested = _requested or kind
    if not _polling:
        raise kind


@contextmanager
def polling() -> Iterator[None]:
    """A loop that calls :func:`check` at each step: requests only set the flag inside it.
    A request that came after the loop's last check (while it wound down: a DataLoader's
    workers stopping) is raised as the loop is left, not lost."""
    global _polling
    _polling += 1
    try:
        yield
    finally:
        _polling -= 1
    if _requested is not None and not _delivered:
        check()


def check() -> None:
    """Raise :class:`Terminated` (or :class:`Interrupted`) if one was requested."""
    global _delivered
    if _requested is not None:
        _delivered = True
        raise _requested


def reset() -> None:
    global _requested, _delivered
    _requested, _delivered = None, False
