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


# What the "kind" entry of a w2vtk checkpoint says it holds (checked before anything else is read).
AM_CHECKPOINT_KIND = "w2vtk-am"          # train-am's checkpoints
WAV2VEC_CHECKPOINT_KIND = "wav2vec"      # pretrain's (and fairseq imports converted by export)


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


def require_entries(ckpt: Any, path: str | Path, what: str,
                    entries: dict[str, type | tuple[type, ...]]) -> dict:
    """``ckpt`` (a loaded checkpoint) as a dict holding every entry of ``entries`` with its type.

    A checkpoint of the right kind can still be hostile or from another version (an entry missing,
    a string where a state dict belongs); indexing it unchecked would end in a KeyError / TypeError
    traceback.  Raises W2vtkError naming ``path``: ``FILE: not a usable WHAT checkpoint (entry 'tokens'
    is missing)``.
    """
    if not isinstance(ckpt, dict):
        raise W2vtkError(f"{path}: not a usable {what} checkpoint (a {type(ckpt).__name__}, not a dict)")
    for key, kind in entries.items():
        if key not in ckpt:
            raise W2vtkError(f"{path}: not a usable {what} checkpoint (entry {key!r} is missing)")
        if not isinstance(ckpt[key], kind) or (kind is int and isinstance(ckpt[key], bool)):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise W2vtkError(f"{path}: not a usable {what} checkpoint (entry {key!r} is a "
                             f"{type(ckpt[key]).__name__}, expected {names})")
    return ckpt


def load_state(target: Any, state: Any, path: str | Path, what: str = "model") -> None:
    """``target.load_state_dict(state)`` (a module: strict; an optimizer, scheduler, scaler) with any
    mismatch (missing / unexpected keys, wrong shapes, not a dict) as a W2vtkError naming ``path``."""
    if not isinstance(state, dict):
        raise W2vtkError(f"{path}: the {what} state is a {type(state).__name__}, not a state dict")
    try:
        target.load_state_dict(state)
    except (RuntimeError, ValueError, TypeError, KeyError, IndexError, AttributeError) as err:
        # torch's first line only says "Error(s) in loading state_dict for Linear:"
        lines = [line.strip() for line in str(err).splitlines()
                 if line.strip() and not line.strip().startswith("Error(s) in loading state_dict")]
        detail = "; ".join(lines[:2])[:200] or type(err).__name__
        raise W2vtkError(f"{path}: the {what} state does not fit ({detail})") from None


# checkpoint_last.pt entries that AM checkpoints written before the shared layout (w2vtk <= session 6)
# kept at the top level; with_train_state moves them where the current layout has them
_OLD_TOP_LEVEL = ("position", "epoch_done", "best_error", "best_epoch", "world_size", "epoch_sums",
                  "train_ids_sha256")


def with_train_state(ckpt: dict) -> dict:
    """``ckpt`` (an acoustic-model checkpoint_last.pt) in the current layout: ``train_state`` (with the guard
    under ``nonfinite``) and ``rng``, as pre-training's. Older files kept these at the top level
    (``guard``, ``rng_per_rank``); they are read as if written now, so they still resume."""
    if isinstance(ckpt.get("train_state"), dict):
        return ckpt
    out = {k: v for k, v in ckpt.items() if k not in _OLD_TOP_LEVEL + ("guard", "rng_per_rank")}
    out["train_state"] = {k: ckpt[k] for k in _OLD_TOP_LEVEL if k in ckpt}
    out["train_state"]["nonfinite"] = ckpt.get("guard", {})
    out["rng"] = ckpt.get("rng_per_rank") or []
    return out
