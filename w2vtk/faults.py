"""Named fault points for the kill/resume and disk-full tests (off unless ``W2VTK_FAULT`` is set).

``W2VTK_FAULT`` holds one or more comma-separated rules ``NAME:N[:ACTION][@RANK][#JOB]``:

- ``NAME``: a fault point (see :data:`POINTS`), e.g. ``ckpt_write``;
- ``N``: fire the N-th time this process reaches that point (1-based);
- ``ACTION``: ``kill`` (default; ``SIGKILL`` to this process: no cleanup, no ``finally``, exactly
  what a power cut, the OOM killer or a pre-empted cluster job does) or ``enospc`` (raise
  ``OSError(ENOSPC)`` as a full disk would, at the point where the bytes are being written) or
  ``stall`` (sleep until killed: a hung job, for the cluster tests' ``scancel`` and time limits);
- ``@RANK``: only in the process whose torchrun ``RANK`` is this (default: every process);
- ``#JOB``: only in Slurm array task JOB (``SLURM_ARRAY_TASK_ID``; w2vtk.cluster's jobs).

Example: ``W2VTK_FAULT=train_step:3@1 bash bin/launch.sh --nproc 2 pretrain ...`` kills worker 1 at
its third update.  The variable is read once at import; unset, :func:`hit` is a single ``None``
check, so the points cost nothing in normal runs.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import time
from dataclasses import dataclass

from w2vtk.errors import W2vtkError

ENV = "W2VTK_FAULT"

#: Every fault point in the code, with where it sits.  Tests iterate over this list.
POINTS: dict[str, str] = {
    "ckpt_write": "w2vtk.checkpoint.save_checkpoint: checkpoint bytes written to the temporary file, "
                  "before the rename (every checkpoint of pretrain and train-am)",
    "ark_write": "w2vtk.features.archive.write_matrix: after one utterance's record is appended to an "
                 "archive being written (extract; the decode emissions cache)",
    "shard_done": "w2vtk.features.extract: a shard's archive renamed into place, before its record",
    "train_step": "pretrain and train-am: after an optimizer update, before any checkpoint of it",
    "data_load": "pretrain and train-am: a batch handed from the data loader to the training loop",
    "decode_trial": "w2vtk.decoding: a tuning trial's result recorded in trials.json",
    "output_write": "w2vtk.io.atomic_open: bytes of a small output (scp, text, yaml, json) written to "
                    "the temporary file, before the rename",
}
ACTIONS = ("kill", "enospc", "stall")
_NUMBER = re.compile(r"[0-9]{1,9}")  # ASCII digits only: str.isdigit() accepts '²', which int() refuses


@dataclass
class _Rule:
    name: str
    nth: int
    action: str
    rank: int | None
    job: int | None = None
    seen: int = 0


def parse(spec: str) -> dict[str, _Rule]:
    """Parse a ``W2VTK_FAULT`` value; a malformed one is a :class:`W2vtkError` (a typo must not
    silently disable the fault a test relies on)."""
    rules: dict[str, _Rule] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        rank = job = None
        if "#" in part:
            part, _, j = part.partition("#")
            if not _NUMBER.fullmatch(j):
                raise W2vtkError(f"{ENV}: job {j!r} in {spec!r} is not a number")
            job = int(j)
        if "@" in part:
            part, _, r = part.partition("@")
            if not _NUMBER.fullmatch(r):
                raise W2vtkError(f"{ENV}: rank {r!r} in {spec!r} is not a number")
            rank = int(r)
        fields = part.split(":")
        if len(fields) not in (2, 3) or fields[0] not in POINTS or not _NUMBER.fullmatch(fields[1]) \
                or int(fields[1]) < 1:
            raise W2vtkError(f"{ENV}={spec!r}: expected NAME:N[:ACTION][@RANK] with NAME one of "
                             f"{', '.join(POINTS)} and N >= 1")
        action = fields[2] if len(fields) == 3 else "kill"
        if action not in ACTIONS:
            raise W2vtkError(f"{ENV}={spec!r}: action {action!r} is not one of {', '.join(ACTIONS)}")
        rules[fields[0]] = _Rule(fields[0], int(fields[1]), action, rank, job)
    return rules


def _load() -> dict[str, _Rule] | None:
    spec = os.environ.get(ENV, "")
    if not spec.strip():
        return None
    rules = parse(spec)
    rank = int(os.environ.get("RANK", "0") or 0)
    task = os.environ.get("SLURM_ARRAY_TASK_ID", "")
    job = int(task) if task.isascii() and task.isdigit() else None
    rules = {k: r for k, r in rules.items()
             if (r.rank is None or r.rank == rank) and (r.job is None or r.job == job)}
    return rules or None


_RULES = _load()


def hit(name: str, path: object = None) -> None:
    """Mark that this process reached fault point ``name`` (writing ``path``, if any)."""
    if _RULES is None:
        return
    rule = _RULES.get(name)
    if rule is None:
        return
    rule.seen += 1
    if rule.seen != rule.nth:
        return
    if rule.action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if rule.action == "stall":
        while True:
            time.sleep(60)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path) if path is not None else None)


def reload() -> None:
    """Re-read ``W2VTK_FAULT`` (for in-process tests that set it after import)."""
    global _RULES
    _RULES = _load()
