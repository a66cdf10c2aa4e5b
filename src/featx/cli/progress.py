"""The terminal side of a run: the stderr console, and rich progress bars for the stages."""

from __future__ import annotations

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
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            _RateColumn(unit), TimeRemainingColumn(), console=stderr, disable=not enabled)

    def __enter__(self) -> Bars:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def __call__(self, description: str, total: int | None) -> Callable[..., None]:
        """The task's advance(n=1, note=None); a note (a loss, say) is shown after the
        description."""
        task = self.progress.add_task(description, total=total)

        def advance(n: int = 1, note: str | None = None) -> None:
            if note:
                self.progress.update(task, description=f"{description} [dim]{note}")
            self.progress.advance(task, n)

        return advance
