"""One console and one progress helper for every command.

:data:`console` is rich's console on stderr: on a terminal it wraps and colours as usual; when
stderr is redirected (recipes, batch jobs) every line gets a timestamp and nothing wraps (records
stay one line, tables keep their width). Whatever it prints is also written to the command's log
file (:mod:`w2vtk.logs`).

:func:`progress` shows a rich bar with a rate in the loop's own unit and an ETA on a terminal; when
stderr is not a terminal it prints one plain line every ``W2VTK_PROGRESS_EVERY`` seconds (30) with
the same figures. Rates are averages since the start, as in the commands' summaries. Only rank 0
shows progress.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from datetime import datetime
from typing import Iterator

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                           TimeRemainingColumn)
from rich.table import Table
from rich.text import Text

from w2vtk import logs
from w2vtk.dist import is_main


class LoggedConsole(Console):
    """A rich Console whose prints also go to the log file; timestamped and unwrapped when its
    stream is not a terminal."""

    def __init__(self, *args, **kwargs):
        stream = sys.stderr if kwargs.get("stderr") else sys.stdout
        self._plain = not _isatty(stream)
        if self._plain:
            kwargs.setdefault("width", int(os.environ.get("COLUMNS", "0") or 0) or 200)
            kwargs.setdefault("soft_wrap", True)
        super().__init__(*args, **kwargs)

    def print(self, *objects, **kwargs) -> None:  # noqa: A003 (rich's name)
        if self._plain and len(objects) == 1 and isinstance(objects[0], Table) and objects[0].title:
            # rich wraps a title to the table's width, breaking long paths: one line of its own
            import copy

            table = copy.copy(objects[0])
            self.print(str(table.title), highlight=False, markup=False)
            table.title = None
            objects = (table,)
        if self._plain and objects and all(isinstance(o, str) for o in objects):
            stamp = datetime.now().strftime(logs.DATEFMT)
            objects = (f"{stamp} " + " ".join(objects),)
            super().print(*objects, **kwargs)
            objects = (objects[0][len(stamp) + 1:],)
        else:
            super().print(*objects, **kwargs)
        logs.record(objects, markup=kwargs.get("markup", True) is not False)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


console = LoggedConsole(stderr=True)


class RateColumn(ProgressColumn):
    """Average speed since the start in the task's unit, e.g. '812.3 audio-s/s' (the figure the
    command's summary reports; rich's own speed is a short-window estimate that jumps when work
    arrives in large pieces)."""

    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        if not elapsed or not task.completed:
            return Text(f"-- {self.unit}/s", style="progress.data.speed")
        return Text(f"{task.completed / elapsed:,.1f} {self.unit}/s", style="progress.data.speed")


class _Silent:
    def update(self, *args, **kwargs) -> None:
        pass

    def advance(self, *args, **kwargs) -> None:
        pass


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class PlainProgress:
    """The progress bar's figures as one plain line every ``every`` seconds (and a last line when
    any was printed): for logs and batch jobs, where a live bar would be noise."""

    def __init__(self, description: str, total: float | None, unit: str, every: float):
        self.description, self.total, self.unit, self.every = description, total, unit, every
        self.done = 0.0
        self.info = ""
        self.start = self.last = time.monotonic()
        self.printed = 0

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.done / elapsed
        parts = [f"{self.description}:"]
        if self.total:
            parts.append(f"{self.done:,.0f}/{self.total:,.0f} {self.unit} ({100 * self.done / self.total:.0f}%),")
        else:
            parts.append(f"{self.done:,.0f} {self.unit},")
        parts.append(f"{rate:,.1f} {self.unit}/s, elapsed {_clock(elapsed)}")
        if self.total and rate > 0 and self.done < self.total:
            parts[-1] += f", ETA {_clock((self.total - self.done) / rate)}"
        if self.info:
            parts.append(f"[{self.info}]")
        return " ".join(parts)

    def _tick(self) -> None:
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self.printed += 1
            console.print(self.line(), highlight=False, markup=False)

    def advance(self, amount: float = 1.0) -> None:
        self.done += amount
        self._tick()

    def update(self, info: str = "", completed: float | None = None, **kwargs) -> None:
        self.info = info
        if completed is not None:
            self.done = completed
        self._tick()

    def finish(self) -> None:
        if self.printed:
            console.print(self.line(), highlight=False, markup=False)


@contextmanager
def progress(description: str, total: float | None, unit: str = "utt",
             enabled: bool | None = None) -> Iterator["object"]:
    """Context manager yielding an object with ``advance(amount)`` and ``update(**fields)``.

    ``unit`` names what ``advance`` counts ("audio-s", "utt", "update"); the bar shows its rate
    and an ETA.  ``enabled`` None: a bar on a terminal, plain periodic lines otherwise (rank 0
    only); False: nothing.  Usage::

        with progress("extract", total=total_seconds, unit="audio-s") as bar:
            bar.advance(seconds_done)
    """
    if enabled is False or not is_main():
        yield _Silent()
        return
    if enabled is None and not _isatty(sys.stderr):
        plain = PlainProgress(description, total, unit, float(os.environ.get("W2VTK_PROGRESS_EVERY", "30")))
        yield plain
        plain.finish()
        return
    # Kept readable at 80 columns: a short bar, count, rate and ETA (elapsed time and percentage
    # are left to the summary lines).
    columns = [TextColumn("[bold]{task.description}"), BarColumn(bar_width=12), MofNCompleteColumn(),
               RateColumn(unit), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[info]}")]
    with Progress(*columns, console=console, transient=False) as prog:
        task_id = prog.add_task(description, total=total, info="")

        class _Bar:
            def advance(self, amount: float = 1.0) -> None:
                prog.advance(task_id, amount)

            def update(self, info: str = "", **kwargs) -> None:
                prog.update(task_id, info=info, **kwargs)

        yield _Bar()
