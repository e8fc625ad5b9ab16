"""One progress helper for every long loop: a rich bar with a rate in the loop's own unit and an ETA.

Silent when stdout is not a terminal or when this is not rank 0, so logs and CI output stay clean.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TaskProgressColumn,
                           TextColumn, TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text

from w2vtk.dist import is_main

console = Console(stderr=True)


class RateColumn(ProgressColumn):
    """Speed in the task's unit, e.g. '812.3 audio-s/s'."""

    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text(f"-- {self.unit}/s", style="progress.data.speed")
        return Text(f"{speed:,.1f} {self.unit}/s", style="progress.data.speed")


class _Silent:
    def update(self, *args, **kwargs) -> None:
        pass

    def advance(self, *args, **kwargs) -> None:
        pass


@contextmanager
def progress(description: str, total: float | None, unit: str = "utt",
             enabled: bool | None = None) -> Iterator["object"]:
    """Context manager yielding an object with ``advance(amount)`` and ``update(**fields)``.

    ``unit`` names what ``advance`` counts ("audio-s", "utt", "update"); the bar shows its rate
    and an ETA.  Usage::

        with progress("extract", total=total_seconds, unit="audio-s") as bar:
            bar.advance(seconds_done)
    """
    if enabled is None:
        enabled = sys.stderr.isatty() and is_main()
    if not enabled:
        yield _Silent()
        return
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
               MofNCompleteColumn(), RateColumn(unit), TimeElapsedColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[info]}")]
    with Progress(*columns, console=console, transient=False) as prog:
        task_id = prog.add_task(description, total=total, info="")

        class _Bar:
            def advance(self, amount: float = 1.0) -> None:
                prog.advance(task_id, amount)

            def update(self, info: str = "", **kwargs) -> None:
                prog.update(task_id, info=info, **kwargs)

        yield _Bar()
