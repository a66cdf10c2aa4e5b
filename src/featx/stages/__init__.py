"""The stages: one module per command, each ``run(inputs, out, config, *, progress=None)``.

A stage validates its frozen config, resolves the device once, reads its inputs through
:mod:`featx.io`, computes with the maths packages, and yields the paths it wrote. No stage
imports another; what two stages share lives below them (``featx.sampling``, ``featx.io``).

``progress`` is a :data:`Progress`: called with a description and a total, it returns the
function that advances that task (``advance(n=1, note=None)``; a note such as a loss is shown
beside the bar). The CLI passes one that draws rich progress bars.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, "int | None"], Callable[[int], None]]


def start(progress: Progress | None, description: str, total: int | None) -> Callable[[int], None]:
    """The advance function of a new task (a no-op without ``progress``)."""
    return progress(description, total) if progress is not None else (lambda n=1, note=None: None)
