"""Checkpoint files: atomic saving and safe loading.

Loading always uses ``torch.load(weights_only=True)``: only tensors, plain containers and the
classes passed in ``allow`` (e.g. ``argparse.Namespace`` for fairseq 2019 checkpoints) can be
rebuilt; a pickle that asks for anything else (a function to call, an arbitrary class) is refused
with a :class:`W2vtkError` and nothing in it is executed.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Iterable

from w2vtk.errors import W2vtkError
from w2vtk.io import atomic_open


def save_checkpoint(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary sibling, fsync, rename: never a half checkpoint under ``path``."""
    import torch

    with atomic_open(path, "wb", encoding=None, fault="ckpt_write") as fh:
        torch.save(obj, fh)


def load_checkpoint(path: str | Path, allow: Iterable[Any] = (), map_location: str = "cpu") -> Any:
    """Load ``path`` with ``weights_only=True`` and the extra safe globals ``allow``.

    Raises W2vtkError naming the file when it is missing, truncated, not a torch checkpoint, or
    asks to build an object outside the allow-list.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise W2vtkError(f"{path}: checkpoint not found")
    if os.path.getsize(path) == 0:
        raise W2vtkError(f"{path}: checkpoint is empty")
    try:
        with torch.serialization.safe_globals(list(allow)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        reason = _reason(str(err))
        if "unsupported global" in reason.lower():
            raise W2vtkError(f"{path}: refused to load: the file asks for objects outside w2vtk's "
                             f"allow-list ({reason}); nothing in it was executed") from None
        raise W2vtkError(f"{path}: not a readable torch checkpoint ({reason})") from None
    except (EOFError, RuntimeError, zipfile.BadZipFile, ValueError, OSError, KeyError, IndexError,
            TypeError, AttributeError, UnicodeDecodeError) as err:
        # the unpickler raises any of these on garbage (e.g. KeyError for a text file)
        msg = " ".join(str(err).split())[:200] or type(err).__name__
        raise W2vtkError(f"{path}: truncated or corrupt checkpoint ({msg})") from None


def _reason(message: str) -> str:
    """The informative line of torch's weights_only error (skipping its boilerplate)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if "unsupported global" in line.lower():
            return line.rstrip(".")[:200]
    for line in lines:
        if not line.startswith(("Weights only load failed", "Check the documentation", "Please file an issue")):
            return line.rstrip(".")[:200]
    return "unpickling failed"
