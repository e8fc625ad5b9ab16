"""Log files: every training, extraction and decoding command keeps ``<dir>/log/<command>.log``.

What a command prints through :data:`w2vtk.progress.console` (messages, tables, progress lines) is
also written, as plain text with a timestamp per line, to the Python logger ``w2vtk``; while a log
file is open (:func:`open_log`, rank 0 only) that logger appends to it. The terminal keeps rich's
colours and live bars; the file gets what a batch-job log needs (no escape codes, no bar redraws).
"""

from __future__ import annotations

import io
import logging
import shlex
import sys
from pathlib import Path

from w2vtk import __version__
from w2vtk.dist import env_info

LOGGER = logging.getLogger("w2vtk")
LOGGER.setLevel(logging.INFO)
LOGGER.propagate = False
FORMAT = "%(asctime)s %(levelname)s %(message)s"
DATEFMT = "%Y-%m-%d %H:%M:%S"


class DirLogHandler(logging.Handler):
    """Appends to ``path`` once ``path``'s owner dir (the exp / output dir, ``path.parent.parent``)
    exists; records before that are held in memory. A command that fails before writing anything
    therefore leaves no ``log/`` behind either ("bad input writes nothing")."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        self.pending: list[logging.LogRecord] = []
        self.stream = None
        self.failed = False

    def _open(self) -> bool:
        if self.stream is None and self.path.parent.parent.is_dir():
            self.path.parent.mkdir(exist_ok=True)
            self.stream = open(self.path, "a", encoding="utf-8")
            for rec in self.pending:
                self.stream.write(self.format(rec) + "\n")
            self.pending = []
        return self.stream is not None

    def emit(self, record: logging.LogRecord) -> None:
        if self.failed:
            return
        try:
            if self._open():
                self.stream.write(self.format(record) + "\n")
                self.stream.flush()
            else:
                self.pending.append(record)
        except OSError:
            # a full disk or a vanished dir: the command's own output reports the problem; the log
            # stops quietly instead of printing logging's traceback for every record
            self.failed = True

    def close(self) -> None:
        try:
            if self.pending and not self.failed:
                self._open()
            if self.stream is not None:
                self.stream.flush()
                self.stream.close()
                self.stream = None
        except OSError:
            pass
        finally:
            super().close()


_handler: DirLogHandler | None = None


def log_path(directory: str | Path, command: str) -> Path:
    """``<directory>/log/<command>.log``: where ``command``'s log goes for an exp / output dir."""
    return Path(directory) / "log" / f"{command}.log"


def open_log(path: str | Path, argv: list[str] | None = None) -> Path:
    """Append this run's log to ``path`` until :func:`close_log`; the first record is the command
    line. Nothing is written before ``path.parent.parent`` (the exp / output dir) exists. One log
    file at a time: a second call replaces the first."""
    global _handler
    close_log()
    path = Path(path)
    handler = DirLogHandler(path)
    handler.setFormatter(logging.Formatter(FORMAT, DATEFMT))
    LOGGER.addHandler(handler)
    _handler = handler
    args = sys.argv if argv is None else argv
    LOGGER.info("w2vtk %s: %s", __version__, " ".join(shlex.quote(str(a)) for a in ["w2vtk", *args[1:]]))
    return path


def close_log(status: str | None = None) -> None:
    global _handler
    if _handler is None:
        return
    if status:
        LOGGER.info("%s", status)
    LOGGER.removeHandler(_handler)
    _handler.close()
    _handler = None


def logging_to_file() -> bool:
    return _handler is not None


def record(objects: tuple, markup: bool = True, level: int = logging.INFO) -> None:
    """Write what a console printed to the log file, one record per line, as plain text."""
    if _handler is None:
        return
    from rich.console import Console
    from rich.text import Text

    parts = []
    for obj in objects:
        if isinstance(obj, str):
            parts.append(Text.from_markup(obj).plain if markup else obj)
        else:  # a table or other renderable: rendered wide, without colour
            buf = io.StringIO()
            Console(file=buf, width=200, color_system=None, force_terminal=False, soft_wrap=False).print(obj)
            parts.append(buf.getvalue().rstrip("\n"))
    for line in " ".join(parts).splitlines() or [""]:
        LOGGER.log(level, "%s", line.rstrip())


class command_log:
    """``with command_log(exp_dir, "train-am"):`` keeps ``exp_dir/log/train-am.log`` for the block
    on rank 0 (no-op elsewhere), ending it with "done" or the error that stopped the command."""

    def __init__(self, directory: str | Path, command: str):
        self.path = log_path(directory, command)

    def __enter__(self) -> Path:
        self.active = env_info().is_main
        if self.active:
            open_log(self.path)
        return self.path

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.active:
            return
        if exc is None:
            close_log("done")
        elif isinstance(exc, KeyboardInterrupt):
            close_log("interrupted")
        else:
            LOGGER.error("error: %s", " ".join(str(exc).split()) or type(exc).__name__)
            close_log()
