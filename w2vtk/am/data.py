"""Feature data dirs for acoustic models: reading, labels, normalisation, provenance, batching.

A feature data dir (what ``w2vtk extract --out-dir`` writes) holds ``feats.scp`` (Kaldi / kaldiio
archive entries, (T, C) matrices, frames at 100 Hz), ``text`` (transcripts), optionally
``utt2num_frames`` and ``feats.yaml`` (provenance: feature type, checkpoint sha256, layer, dim).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from w2vtk.config import read_yaml_file
from w2vtk.data import read_kv
from w2vtk.errors import W2vtkError
from w2vtk.features.archive import ScpReader


@dataclass
class FeatureDir:
    """One feature data dir: ``ids`` (sorted), ``frames`` (T per id), ``texts``, ``dim`` C,
    ``provenance`` (feats.yaml contents or None) and a lazy reader ``load(utt) -> (T, C) float32``."""

    path: Path
    ids: list[str]
    frames: dict[str, int]
    texts: dict[str, str]
    dim: int
    provenance: dict | None
    dropped_no_text: list[str] = field(default_factory=list)
    dropped_no_feats: list[str] = field(default_factory=list)
    _scp: Any = None

    def load(self, utt: str) -> np.ndarray:
        mat = self._scp[utt]  # ScpReader: W2vtkError naming feats.scp and utt on any damage
        if mat.ndim != 2 or mat.shape[1] != self.dim:
            raise W2vtkError(f"{self.path}/feats.scp: '{utt}' has shape {mat.shape}, expected (T, {self.dim})")
        mat = mat.astype(np.float32, copy=False)
        if utt in self.frames and mat.shape[0] != self.frames[utt]:
            # batching and the CTC feasibility check planned with the declared length
            raise W2vtkError(f"{self.path}/feats.scp: '{utt}' has {mat.shape[0]} frames but utt2num_frames "
                             f"says {self.frames[utt]}")
        if not np.isfinite(mat).all():
            # caught here, not as a "non-finite loss" many updates later (or NaN emissions in decoding)
            raise W2vtkError(f"{self.path}/feats.scp: the features of '{utt}' contain NaN or Inf")
        return mat


def load_feature_dir(path: str | Path, need_text: bool = True) -> FeatureDir:
    """Open ``path`` (feats.scp + text). Ids in only one of the two files are dropped and listed
    (``dropped_no_text`` / ``dropped_no_feats``); no common id at all is an error."""
    path = Path(path)
    scp_path = path / "feats.scp"
    if not path.is_dir():
        raise W2vtkError(f"{path}: feature data dir not found")
    if not scp_path.is_file():
        raise W2vtkError(f"{path}: no feats.scp (make it with `w2vtk extract --in <data dir or audio> "
                         f"--out-dir {path}`)")
    scp_table = read_kv(scp_path)
    if not scp_table:
        raise W2vtkError(f"{scp_path}: empty")
    for key, value in scp_table.items():
        if not value:
            raise W2vtkError(f"{scp_path}: '{key}' has no archive location")
    texts: dict[str, str] = {}
    if need_text or (path / "text").is_file():
        if not (path / "text").is_file():
            raise W2vtkError(f"{path}: no text file (transcripts are needed to train or score)")
        texts = read_kv(path / "text")
    # not kaldiio.load_scp: its reader would unpickle a PKL record (see w2vtk.features.archive)
    scp = ScpReader(scp_path, scp_table)
    if need_text:
        ids = sorted(set(scp_table) & set(texts))
        no_text = sorted(set(scp_table) - set(texts))
        no_feats = sorted(set(texts) - set(scp_table))
        if not ids:
            raise W2vtkError(f"{path}: feats.scp ({len(scp_table)} ids) and text ({len(texts)} ids) "
                             f"have no utterance in common")
    else:
        ids, no_text, no_feats = sorted(scp_table), [], []
    frames: dict[str, int] = {}
    u2nf = path / "utt2num_frames"
    if u2nf.is_file():
        for key, value in read_kv(u2nf).items():
            try:
                frames[key] = int(value)
            except ValueError:
                raise W2vtkError(f"{u2nf}: '{key}' has a non-integer frame count '{value}'") from None
    fd = FeatureDir(path=path, ids=ids, frames={}, texts=texts, dim=0, provenance=read_provenance(path),
                    dropped_no_text=no_text, dropped_no_feats=no_feats, _scp=scp)
    first = np.asarray(_read(scp, ids[0], scp_path))
    if first.ndim != 2:
        raise W2vtkError(f"{scp_path}: '{ids[0]}' is not a (frames, dim) matrix (shape {first.shape})")
    fd.dim = int(first.shape[1])
    for utt in ids:
        if utt in frames:
            fd.frames[utt] = frames[utt]
        else:  # no utt2num_frames: read the matrix once for its length
            fd.frames[utt] = int(np.asarray(_read(scp, utt, scp_path)).shape[0])
    return fd


def _read(scp, utt: str, scp_path: Path):
    return scp[utt]  # ScpReader errors name scp_path and utt


# ----------------------------------------------------------------------------------------------
# provenance (feats.yaml)

def read_provenance(path: Path) -> dict | None:
    f = Path(path) / "feats.yaml"
    if not f.is_file():
        return None
    data = read_yaml_file(f, "feature provenance")
    if not isinstance(data, dict):
        raise W2vtkError(f"{f}: expected a mapping")
    return data


def _pick(d: dict, *names: str):
    for name in names:
        node: Any = d
        for part in name.split("."):
            if not isinstance(node, dict) or part not in node:
                node = None
                break
            node = node[part]
        if node is not None:
            return node
    return None


def provenance_key(prov: dict | None) -> dict[str, Any]:
    """The fields that must agree between training and decoding features: feature type,
    checkpoint sha256 and layer (None where feats.yaml lacks them)."""
    if prov is None:
        return {"type": None, "checkpoint_sha256": None, "layer": None}
    return {
        "type": _pick(prov, "type", "feature_type", "features.type"),
        "checkpoint_sha256": _pick(prov, "checkpoint_sha256", "checkpoint.sha256", "sha256"),
        "layer": _pick(prov, "layer", "features.layer"),
    }


def check_provenance(expected: dict | None, got: dict | None, *, where: str, allow_mismatch: bool) -> list[str]:
    """Compare the AM's feats.yaml with a data dir's. Returns the differences (for a warning when
    ``allow_mismatch``); raises W2vtkError listing them otherwise."""
    if expected is None:
        return []  # the AM was trained on features without provenance: nothing to hold them to
    if got is None:
        diffs = ["the data dir has no feats.yaml"]
    else:
        a, b = provenance_key(expected), provenance_key(got)
        diffs = [f"{k}: model {a[k]!r} vs data {b[k]!r}" for k in a if a[k] != b[k]]
    if diffs and not allow_mismatch:
        raise W2vtkError(f"{where}: features differ from the ones the model was trained on "
                         f"({'; '.join(diffs)}); pass --allow-feature-mismatch to use them anyway")
    return diffs


# ----------------------------------------------------------------------------------------------
# normalisation

VAR_FLOOR = 1e-10


class Normaliser:
    """Feature normalisation applied identically in training and decoding.

    ``utterance``: each utterance's own per-dimension mean / standard deviation (Kaldi's
    per-utterance CMVN with norm-vars). ``utterance-mean``: each utterance's own per-dimension mean
    removed, the scale kept (Kaldi's apply-cmvn default, norm-vars false). ``global``: training-set
    statistics ``mean`` / ``std`` (C,). ``none``: features as stored.
    """

    def __init__(self, mode: str, mean: np.ndarray | None = None, std: np.ndarray | None = None):
        if mode not in ("utterance", "utterance-mean", "global", "none"):
            raise W2vtkError(f"normalisation: unknown mode '{mode}'")
        if mode == "global" and (mean is None or std is None):
            raise W2vtkError("global normalisation needs training-set statistics")
        self.mode = mode
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32)
        self.std = None if std is None else np.asarray(std, dtype=np.float32)

    def __call__(self, feats: np.ndarray) -> np.ndarray:
        """(T, C) -> (T, C) float32."""
        x = feats.astype(np.float32, copy=False)
        if self.mode == "none":
            return x
        if self.mode == "global":
            if x.shape[1] != self.mean.shape[0]:
                raise W2vtkError(f"features have dimension {x.shape[1]}, global statistics {self.mean.shape[0]}")
            return (x - self.mean) / self.std
        x64 = x.astype(np.float64)
        mean = x64.mean(axis=0)
        if self.mode == "utterance-mean":
            return (x64 - mean).astype(np.float32)
        var = np.maximum(x64.var(axis=0), VAR_FLOOR)
        return ((x64 - mean) / np.sqrt(var)).astype(np.float32)

    def state(self) -> dict:
        import torch

        out: dict[str, Any] = {"mode": self.mode}
        if self.mean is not None:
            out["mean"] = torch.from_numpy(self.mean.copy())
            out["std"] = torch.from_numpy(self.std.copy())
        return out

    @classmethod
    def from_state(cls, state: dict) -> "Normaliser":
        mean = state.get("mean")
        std = state.get("std")
        return cls(state["mode"], None if mean is None else mean.numpy(), None if std is None else std.numpy())


def global_stats(fd: FeatureDir, ids: Iterable[str]) -> tuple[np.ndarray, np.ndarray, float]:
    """Sums over ``ids``: (sum (C,), sum of squares (C,), frame count), float64."""
    s = np.zeros(fd.dim, dtype=np.float64)
    ss = np.zeros(fd.dim, dtype=np.float64)
    n = 0.0
    for utt in ids:
        x = fd.load(utt).astype(np.float64)
        s += x.sum(axis=0)
        ss += (x * x).sum(axis=0)
        n += x.shape[0]
    return s, ss, n


def stats_to_mean_std(s: np.ndarray, ss: np.ndarray, n: float) -> tuple[np.ndarray, np.ndarray]:
    if n <= 0:
        raise W2vtkError("global normalisation: no training frames")
    mean = s / n
    var = np.maximum(ss / n - mean * mean, VAR_FLOOR)
    return mean.astype(np.float32), np.sqrt(var).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# CTC feasibility and batching

def ctc_min_frames(labels: list[int]) -> int:
    """Fewest output frames CTC needs for ``labels``: one per label plus a blank between repeats."""
    repeats = sum(1 for a, b in zip(labels, labels[1:]) if a == b)
    return len(labels) + repeats


def make_batches(ids: list[str], frames: dict[str, int], max_frames: int, max_utts: int) -> list[list[str]]:
    """Sort by length (ties by id) and cut into batches whose padded size (longest x count) stays
    within ``max_frames`` and whose count within ``max_utts``; an utterance longer than
    ``max_frames`` gets a batch of its own."""
    order = sorted(ids, key=lambda u: (frames[u], u))
    batches: list[list[str]] = []
    cur: list[str] = []
    for utt in order:
        longest = max(frames[utt], frames[cur[-1]]) if cur else frames[utt]
        if cur and (longest * (len(cur) + 1) > max_frames or len(cur) + 1 > max_utts):
            batches.append(cur)
            cur = []
        cur.append(utt)
    if cur:
        batches.append(cur)
    return batches


def epoch_order(num_batches: int, seed: int, epoch: int, world_size: int, multiple: int,
                sortagrad: int = 0) -> list[int]:
    """Batch indices for ``epoch``: a seeded shuffle, padded by wrapping around to a multiple of
    ``world_size * multiple`` so every rank does the same number of updates (DDP would hang
    otherwise). Rank r takes positions r, r + W, r + 2W, ...

    ``sortagrad`` (ESPnet's option; SortaGrad of Deep Speech 2): the first ``sortagrad`` epochs
    (-1: every epoch) take the batches in :func:`make_batches`' order, shortest first, instead."""
    if sortagrad < 0 or epoch <= sortagrad:
        order = list(range(num_batches))
    else:
        rng = np.random.default_rng([seed, epoch])
        order = [int(i) for i in rng.permutation(num_batches)]
    unit = world_size * multiple
    total = int(math.ceil(num_batches / unit)) * unit
    i = 0
    while len(order) < total:
        order.append(order[i % num_batches])
        i += 1
    return order


def pad_batch(fd: FeatureDir, utts: list[str], norm: Normaliser):
    """Load, normalise and zero-pad ``utts``: ((B, T, C) float32 tensor, (B,) frame counts)."""
    import torch

    mats = [norm(fd.load(u)) for u in utts]
    lengths = torch.tensor([m.shape[0] for m in mats], dtype=torch.long)
    out = np.zeros((len(mats), int(lengths.max()), fd.dim), dtype=np.float32)
    for i, m in enumerate(mats):
        out[i, : m.shape[0]] = m
    return torch.from_numpy(out), lengths


def prefetch(batches: list[list[str]], load, depth: int = 2):
    """Yield (batch, load(batch)) with the next ``depth`` batches read and normalised in a
    background thread, so archive reading overlaps the model's compute (numpy and file reads
    release the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    if not batches:
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = [pool.submit(load, b) for b in batches[:depth]]
        for i, batch in enumerate(batches):
            result = pending.pop(0).result()
            if i + depth < len(batches):
                pending.append(pool.submit(load, batches[i + depth]))
            yield batch, result
