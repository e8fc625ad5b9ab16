"""Loading a trained acoustic model and computing emissions (used by ``w2vtk decode``).

Emissions are per-utterance natural-log probabilities (T', V) over the token set of the AM's exp
dir (``tokens.txt``; blank at index 0), T' = ceil(T / stride) for T input frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from w2vtk.am.data import FeatureDir, Normaliser, check_provenance, load_feature_dir, make_batches
from w2vtk.errors import W2vtkError


@dataclass
class LoadedAM:
    """A trained AM ready for inference.

    ``model`` (eval mode, on ``device``), ``tokens`` (``w2vtk.tokens.TokenSet`` of the exp dir),
    ``normaliser`` (applied to every (T, C) feature matrix before the model), ``feats`` (the
    training features' feats.yaml, or None), ``checkpoint`` (the file loaded), ``which``
    ("avg", "best" or "last"), ``source`` (what that file holds, e.g. "average of epochs [8, 9, 10]"),
    ``input_dim`` C, ``config`` (the resolved training config as a dict).
    """

    model: Any
    tokens: Any
    normaliser: Normaliser
    feats: dict | None
    checkpoint: Path
    which: str
    source: str
    input_dim: int
    config: dict
    device: Any


def load_am(exp_dir: str | Path, which: str = "auto", device: str = "cpu") -> LoadedAM:
    """Load an AM exp dir: ``which`` = auto (checkpoint_avg.pt when present, else
    checkpoint_best.pt, else checkpoint_last.pt), avg, best or last; ``device`` auto (CUDA when
    available), cpu or cuda[:N]."""
    import torch

    from w2vtk.am.train import CKPT_KIND
    from w2vtk.checkpoint import load_checkpoint, load_state, require_entries
    from w2vtk.config import from_dict
    from w2vtk.models.am import AMConfig, build_am
    from w2vtk.tokens import TokenSet

    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        raise W2vtkError(f"{exp_dir}: acoustic-model exp dir not found")
    names = {"avg": "checkpoint_avg.pt", "best": "checkpoint_best.pt", "last": "checkpoint_last.pt"}
    if which == "auto":
        order = ["avg", "best", "last"]
    elif which in names:
        order = [which]
    else:
        raise W2vtkError(f"checkpoint choice must be auto, avg, best or last, not {which!r}")
    chosen = next((w for w in order if (exp_dir / names[w]).is_file()), None)
    if chosen is None:
        raise W2vtkError(f"{exp_dir}: no {' / '.join(names[w] for w in order)} (train it with `w2vtk train-am`)")
    path = exp_dir / names[chosen]
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict) or ckpt.get("kind") != CKPT_KIND:
        raise W2vtkError(f"{path}: not a w2vtk acoustic-model checkpoint")
    require_entries(ckpt, path, "acoustic-model", {"tokens": list, "model_config": dict, "model": dict,
                                                   "input_dim": int, "num_tokens": int, "normaliser": dict})
    tokens = TokenSet.load(exp_dir)
    if list(tokens.tokens) != list(ckpt["tokens"]):
        raise W2vtkError(f"{exp_dir}/tokens.txt differs from the token set stored in {path}")
    cfg = from_dict(AMConfig, ckpt["model_config"], where=f"{path}:model")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise W2vtkError(f"device must be auto, cpu or cuda[:N], not {device!r}") from None
    if not (0 < ckpt["input_dim"] <= 1 << 16 and 0 < ckpt["num_tokens"] <= 1 << 20):
        raise W2vtkError(f"{path}: not a usable acoustic-model checkpoint (input_dim {ckpt['input_dim']}, "
                         f"num_tokens {ckpt['num_tokens']})")
    model = build_am(cfg, int(ckpt["input_dim"]), int(ckpt["num_tokens"]))
    load_state(model, ckpt["model"], path)
    model.to(dev).eval()
    try:
        normaliser = Normaliser.from_state(ckpt["normaliser"])
    except (KeyError, TypeError, ValueError, AttributeError):
        raise W2vtkError(f"{path}: not a usable acoustic-model checkpoint (bad 'normaliser' entry)") from None
    return LoadedAM(model=model, tokens=tokens, normaliser=normaliser,
                    feats=ckpt.get("feats"), checkpoint=path, which=chosen, source=str(ckpt.get("source", "")),
                    input_dim=int(ckpt["input_dim"]), config=ckpt.get("config", {}), device=dev)


def compute_emissions(am: LoadedAM | str | Path, feats_dir: str | Path | FeatureDir, *,
                      batch_frames: int = 40000, device: str = "cpu", which: str = "auto",
                      allow_feature_mismatch: bool = False) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (utt_id, (T', V) float32 natural-log probabilities) for every utterance of a feature
    data dir (feats.scp; text not needed), in batches of at most ``batch_frames`` padded input
    frames, shortest utterances first.

    ``am``: a :class:`LoadedAM` or an exp dir (loaded with :func:`load_am`). The features are
    normalised exactly as in training; features of another type / checkpoint / layer than the
    AM's training features are refused unless ``allow_feature_mismatch``. Batching does not
    change the numbers: padded frames never reach valid ones.
    """
    import torch

    if not isinstance(am, LoadedAM):
        am = load_am(am, which=which, device=device)
    fd = feats_dir if isinstance(feats_dir, FeatureDir) else load_feature_dir(feats_dir, need_text=False)
    if fd.dim != am.input_dim:
        raise W2vtkError(f"{fd.path}: features have dimension {fd.dim} but the model {am.checkpoint} takes "
                         f"{am.input_dim}-dim features")
    check_provenance(am.feats, fd.provenance, where=str(fd.path), allow_mismatch=allow_feature_mismatch)
    if batch_frames < 1:
        raise W2vtkError(f"batch_frames must be >= 1, got {batch_frames}")
    for utts in make_batches(fd.ids, fd.frames, batch_frames, 10 ** 9):
        mats = [am.normaliser(fd.load(u)) for u in utts]
        lengths = torch.tensor([m.shape[0] for m in mats], dtype=torch.long)
        x = np.zeros((len(mats), int(lengths.max()), fd.dim), dtype=np.float32)
        for i, m in enumerate(mats):
            x[i, : m.shape[0]] = m
        with torch.no_grad():
            logits, out_lengths = am.model(torch.from_numpy(x).to(am.device), lengths.to(am.device))
            log_probs = logits.float().log_softmax(-1).cpu().numpy()
        for i, utt in enumerate(utts):
            yield utt, np.ascontiguousarray(log_probs[i, : int(out_lengths[i])])
