"""Atomic file output: write under a temporary name in the same directory, fsync, then rename.

An interrupted run therefore never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import json
import errno
import fnmatch
import os
import tempfile
from pathlib import Path
from typing import IO, Iterable, Iterator

from w2vtk import faults
from w2vtk.errors import W2vtkError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_parent(path: Path) -> None:
    if not path.parent.exists():
        raise W2vtkError(f"{path}: directory {path.parent} does not exist")


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8",
                make_parents: bool = False, fault: str = "output_write") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; on success fsync and rename it over ``path``.

    On an exception the temporary file is removed and ``path`` is untouched; a full disk (ENOSPC,
    EDQUOT) becomes a one-line :class:`W2vtkError` naming ``path``.  ``fault`` names the
    :mod:`w2vtk.faults` point reached once the bytes are written, before the rename.
    """

    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    _check_parent(path)
    binary = "b" in mode
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; give the file the permissions a plain open() would have.
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, mode, encoding=None if binary else encoding,
                       newline=None if binary else "\n") as fh:
            yield fh
            fh.flush()
            faults.hit(fault, path)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise W2vtkError(f"{path}: no space left on device (disk or quota full); nothing was "
                             f"written under this name and earlier outputs are intact") from None
        raise


def existing_dir(path: str | Path, what: str = "directory") -> Path:
    """``path`` as a Path; W2vtkError ``"<path>: <what> does not exist"`` or ``"<path>: not a
    directory"`` otherwise."""
    path = Path(path)
    if not path.exists():
        raise W2vtkError(f"{path}: {what} does not exist")
    if not path.is_dir():
        raise W2vtkError(f"{path}: not a directory")
    return path


def decode_utf8(raw: bytes, path: str | Path, problem: str = "not valid UTF-8") -> str:
    """``raw`` (the bytes of file ``path``) as text; bad bytes are a W2vtkError ``PATH:LINE: problem``."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise W2vtkError(f"{path}:{line}: {problem}") from None


def atomic_write_text(path: str | Path, text: str, make_parents: bool = False) -> None:
    with atomic_open(path, "w", make_parents=make_parents) as fh:
        fh.write(text)


def atomic_write_bytes(path: str | Path, data: bytes, make_parents: bool = False) -> None:
    with atomic_open(path, "wb", encoding=None, make_parents=make_parents) as fh:
        fh.write(data)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def read_json_record(path: str | Path) -> dict:
    """The JSON object a job left in ``path`` (a resume record); {} when it is missing, unreadable,
    damaged or not an object: such a record never counts as work done."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def run_pipe(cmd: str, who: str) -> bytes:
    """stdout of a Kaldi-style pipe command (a ``wav.scp`` / ``feats.scp`` value ending in ``|``),
    run by ``/bin/bash`` exactly as Kaldi does, with stdin closed (a command that reads stdin gets
    EOF instead of hanging).  A non-zero exit status is a W2vtkError naming ``who`` and the last
    line the command wrote to stderr."""
    import subprocess

    proc = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          stdin=subprocess.DEVNULL, executable="/bin/bash")
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", errors="replace").strip().splitlines()
        detail = f": {tail[-1]}" if tail else ""
        raise W2vtkError(f"{who}: command failed with exit status {proc.returncode}: {cmd}{detail}")
    return proc.stdout


def remove_stale_temporaries(directory: str | Path, names: Iterable[str]) -> list[Path]:
    """Delete the temporary files (``.NAME.XXXXXXXX.tmp``, as :func:`atomic_open` names
    them) that a killed run left behind for the outputs ``names`` (glob patterns, e.g.
    ``checkpoint_*.pt``) of ``directory``; returns what was removed.

    A kill between writing a temporary and renaming it never hurts the outputs, but without this a
    resumed run would keep the dead run's temporaries (a whole checkpoint each) for ever.  Call it
    only from the one process that writes ``directory``, before it writes.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for entry in directory.iterdir():
        name = entry.name
        if not (name.startswith(".") and name.endswith(".tmp")) or not entry.is_file():
            continue
        inner = name[1:-len(".tmp")]
        # atomic_open's ".NAME.<random>.tmp" and the fixed ".NAME.tmp" of a few writers
        candidates = {inner, inner.rsplit(".", 1)[0]}
        if any(fnmatch.fnmatchcase(c, pattern) for c in candidates for pattern in names):
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
            removed.append(entry)
    return removed
