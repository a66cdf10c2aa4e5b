"""The terminal side of a run: the stderr console, and rich progress bars for the stages --
or, when stderr is not a terminal (CI, make, a log file), a plain line per task every
``FEATX_PROGRESS_EVERY`` seconds (default 30) and when it completes, instead of nothing until
a finished bar."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn
from rich.progress import TimeRemainingColumn
from rich.text import Text

stderr = Console(stderr=True)


class _RateColumn(ProgressColumn):
    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None and task.elapsed:
            speed = task.completed / task.elapsed
        return Text(f"{speed:,.1f} {self.unit}/s" if speed else f"-- {self.unit}/s")


class Bars:
    """A stage's ``progress``: each task it starts is a bar on stderr with done/total,
    throughput and ETA. Use as a context manager around the stage."""

    def __init__(self, unit: str = "img", enabled: bool = True):
        self.unit = unit
        self.plain = enabled and not stderr.is_terminal
        self.every = every_seconds()
        self.open: list[Callable[[], None]] = []  # the plain tasks' final lines, if unsaid
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            _RateColumn(unit), TimeRemainingColumn(), console=stderr,
            disable=not enabled or self.plain)

    def __enter__(self) -> Bars:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)
        if exc[0] is None:
            for final in self.open:
                final()

    def __call__(self, description: str, total: int | None) -> Callable[..., None]:
        """The task's advance(n=1, note=None); a note (a loss, say) is shown after the
        description."""
        if self.plain:
            return self._lines(description, total)
        task = self.progress.add_task(description, total=total)

        def advance(n: int = 1, note: str | None = None) -> None:
            if note:
                self.progress.update(task, description=f"{description} [dim]{note}")
            self.progress.advance(task, n)

        return advance

    def _lines(self, description: str, total: int | None) -> Callable[..., None]:
        """A plain task: a line when it starts, every ``every`` seconds, and when done."""
        start = last = time.monotonic()
        state = {"done": 0, "note": "", "said": False}
        unit = self.unit

        def say() -> None:
            done, elapsed = state["done"], time.monotonic() - start
            rate = done / elapsed if elapsed > 0 else 0.0
            parts = [f"{done:,}/{total:,} {unit} ({100 * done / total:.0f}%)" if total
                     else f"{done:,} {unit}", f"{rate:,.1f} {unit}/s"]
            if total and rate > 0 and done < total:
                parts.append(f"{(total - done) / rate:,.0f} s left")
            if state["note"]:
                parts.append(state["note"])
            print(f"{description}: {', '.join(parts)}", file=sys.stderr, flush=True)
            state["said"] = done == total

        def advance(n: int = 1, note: str | None = None) -> None:
            nonlocal last
            state["done"] += n
            state["note"] = note or state["note"]
            now = time.monotonic()
            if now - last >= self.every or (total and state["done"] >= total):
                last = now
                say()

        def final() -> None:
            if not state["said"]:
                say()

        print(f"{description}: started" + (f", {total:,} {unit}" if total else ""),
              file=sys.stderr, flush=True)
        self.open.append(final)
        return advance


def every_seconds() -> float:
    """Seconds between plain progress lines (``FEATX_PROGRESS_EVERY``, default 30)."""
    from featx import environment

    return environment.get("FEATX_PROGRESS_EVERY")
