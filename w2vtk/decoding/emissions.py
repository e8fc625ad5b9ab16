"""Emissions: a trained AM loaded for inference, its per-utterance log-probabilities, and their cache.

Emissions are per-utterance natural-log probabilities (T', V) over the token set of the AM's exp
dir (``tokens.txt``; blank at index 0), T' = ceil(T / stride) for T input frames. They are computed
once per (AM checkpoint, feature data dir) and kept in the decode dir as ``emissions.ark`` /
``emissions.scp`` (Kaldi float matrices) with ``emissions.yaml`` (provenance: the checkpoint and its
sha256, the token list's sha256, the features' feats.scp sha256 and feats.yaml). torch is imported
inside the functions that run the model: decoder workers read the cache without it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import kaldiio
import numpy as np
import yaml

from w2vtk import __version__, faults
from w2vtk.am.data import FeatureDir, Normaliser, check_provenance, load_feature_dir, make_batches
from w2vtk.checkpoint import AM_CHECKPOINT_KIND, load_checkpoint, load_state, require_entries
from w2vtk.config import from_dict
from w2vtk.decoding.config import FRAME_SECONDS
from w2vtk.data.kaldi_dir import read_kv
from w2vtk.errors import W2vtkError
from w2vtk.features.archive import ScpReader
from w2vtk.io import atomic_write_text, sha256_file
from w2vtk.progress import progress
from w2vtk.tokens import TokenSet


@dataclass
class LoadedAM:
    """A trained AM ready for inference.

    ``model`` (eval mode, on ``device``), ``tokens`` (``w2vtk.tokens.TokenSet`` of the exp dir),
    ``normaliser`` (applied to every (T, C) feature matrix before the model), ``feats`` (the
    training features' feats.yaml, or None), ``checkpoint`` (the file loaded), ``which``
    ("avg", "best" or "last"), ``source`` (what that file holds, e.g. "average of epochs [8, 9, 10]"),
    ``input_dim`` C, ``config`` (the resolved training config as a dict).
    ``criterion``: ``ctc`` or ``asg`` (the model's config).
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

    @property
    def criterion(self) -> str:
        return getattr(self.model.cfg, "criterion", "ctc")

    def asg_transitions(self) -> list[list[float]] | None:
        """An ASG model's learned transitions (V, V), ``[prev, next]``, as lists; None for CTC."""
        if self.criterion != "asg":
            return None
        return [[float(v) for v in row] for row in self.model.transitions.detach().cpu().tolist()]


def load_am(exp_dir: str | Path, which: str = "auto", device: str = "cpu") -> LoadedAM:
    """Load an AM exp dir: ``which`` = auto (checkpoint_avg.pt when present, else
    checkpoint_best.pt, else checkpoint_last.pt), avg, best or last; ``device`` auto (CUDA when
    available), cpu or cuda[:N]."""
    import torch

    from w2vtk.models.am import AMConfig, build_am

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
    if not isinstance(ckpt, dict) or ckpt.get("kind") != AM_CHECKPOINT_KIND:
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
    """Yield (utt_id, (T', V) float32 natural-log probabilities; an ASG model's raw frame scores) for
    every utterance of a feature data dir (feats.scp; text not needed), in batches of at most ``batch_frames`` padded input
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
            # CTC: log-probabilities; ASG: the unnormalised scores its transitions are added to
            scores = logits.float() if am.criterion == "asg" else logits.float().log_softmax(-1)
            log_probs = scores.cpu().numpy()
        for i, utt in enumerate(utts):
            yield utt, np.ascontiguousarray(log_probs[i, : int(out_lengths[i])])


@dataclass
class Emissions:
    """Per-utterance (T', V) float32 natural-log probabilities, the token list and where they came from."""

    mats: dict[str, np.ndarray]
    tokens: Any                      # w2vtk.tokens.TokenSet of the AM
    provenance: dict
    input_frames: dict[str, int]     # feature frames per utterance (10 ms each)
    path: Path | None = None

    @property
    def audio_seconds(self) -> float:
        return FRAME_SECONDS * sum(self.input_frames.values())


def _tokens_sha(tokens: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(tokens).encode("utf-8")).hexdigest()


def emissions_provenance(am_checkpoint: Path, tokens: Sequence[str], feats_dir: Path) -> dict:
    """What identifies a set of emissions: checkpoint (path, sha256), tokens and features (sha256)."""
    feats_yaml = feats_dir / "feats.yaml"
    return {"am_checkpoint": str(am_checkpoint), "am_checkpoint_sha256": sha256_file(am_checkpoint),
            "tokens_sha256": _tokens_sha(tokens), "feats_dir": str(feats_dir),
            "feats_scp_sha256": sha256_file(feats_dir / "feats.scp"),
            "feats_yaml_sha256": sha256_file(feats_yaml) if feats_yaml.is_file() else None}


def load_or_compute_emissions(am_dir: str | Path, feats_dir: str | Path, cache_dir: str | Path, *,
                              which: str = "auto", device: str = "cpu", batch_frames: int = 40000,
                              allow_feature_mismatch: bool = False, log: Callable[[str], None] = print,
                              progress_enabled: bool | None = None) -> Emissions:
    """Emissions of ``feats_dir`` under the AM of ``am_dir``, from ``cache_dir`` when it holds them.

    A cache from another checkpoint or other features is a :class:`W2vtkError` (use a new decode
    dir, or delete ``emissions.*``).  The ark and scp are written under temporary names and renamed,
    ``emissions.yaml`` last, so an interrupted computation leaves no cache that looks whole.
    """
    am_dir, feats_dir, cache_dir = Path(am_dir), Path(feats_dir), Path(cache_dir)
    am = load_am(am_dir, which=which, device=device)
    fd = load_feature_dir(feats_dir, need_text=False)
    prov = emissions_provenance(am.checkpoint, am.tokens.tokens, feats_dir)
    yaml_path = cache_dir / "emissions.yaml"
    if yaml_path.is_file():
        cached = read_emissions_info(cache_dir)
        if cached.get("am_checkpoint_sha256") != prov["am_checkpoint_sha256"]:
            raise W2vtkError(f"{cache_dir}/emissions.ark was computed by another acoustic model "
                             f"({cached.get('am_checkpoint')}, sha256 {str(cached.get('am_checkpoint_sha256'))[:12]}) "
                             f"than {am.checkpoint} (sha256 {prov['am_checkpoint_sha256'][:12]}): decode into "
                             f"a new --out dir or delete {cache_dir}/emissions.*")
        if cached.get("feats_scp_sha256") != prov["feats_scp_sha256"] or cached.get("tokens_sha256") != prov["tokens_sha256"]:
            raise W2vtkError(f"{cache_dir}/emissions.ark was computed from other features "
                             f"({cached.get('feats_dir')}) or tokens than {feats_dir}: decode into a new "
                             f"--out dir or delete {cache_dir}/emissions.*")
        mats = read_emissions(cache_dir)
        log(f"emissions: reusing {cache_dir}/emissions.ark ({len(mats)} utterances, {am.checkpoint.name})")
        return Emissions(mats, am.tokens, cached, dict(fd.frames), cache_dir)

    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp_ark, tmp_scp = cache_dir / ".emissions.ark.tmp", cache_dir / ".emissions.scp.tmp"
    mats: dict[str, np.ndarray] = {}
    total_s = FRAME_SECONDS * sum(fd.frames.values())
    t0 = time.perf_counter()
    try:
        with progress("emissions", total=total_s, unit="audio-s", enabled=progress_enabled) as bar:
            with kaldiio.WriteHelper(f"ark,scp:{tmp_ark},{tmp_scp}") as writer:
                for utt, em in compute_emissions(am, fd, batch_frames=batch_frames,
                                                 allow_feature_mismatch=allow_feature_mismatch):
                    if not np.all(np.isfinite(em)):
                        raise W2vtkError(f"{am.checkpoint}: non-finite emissions for utterance {utt!r}")
                    writer(utt, em)
                    faults.hit("ark_write", tmp_ark)
                    mats[utt] = em
                    bar.advance(FRAME_SECONDS * fd.frames[utt])
    except BaseException as err:
        # no half cache left behind (a kill leaves the hidden temporaries; the next run replaces them)
        tmp_ark.unlink(missing_ok=True)
        tmp_scp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise W2vtkError(f"{cache_dir / 'emissions.ark'}: no space left on device (disk or quota full) "
                             f"while writing the emissions cache; nothing was cached") from None
        raise
    seconds = time.perf_counter() - t0
    os.replace(tmp_ark, cache_dir / "emissions.ark")
    # the scp names the temporary ark: rewrite it with the final name
    scp_text = tmp_scp.read_text(encoding="utf-8").replace(str(tmp_ark), str(cache_dir / "emissions.ark"))
    atomic_write_text(cache_dir / "emissions.scp", scp_text)
    tmp_scp.unlink(missing_ok=True)
    prov.update({"which": am.which, "source": am.source, "utterances": len(mats), "criterion": am.criterion,
                 "frames": int(sum(m.shape[0] for m in mats.values())), "num_tokens": len(am.tokens.tokens),
                 "audio_seconds": round(total_s, 2), "seconds": round(seconds, 3),
                 "rtf": round(seconds / total_s, 5) if total_s else None, "w2vtk_version": __version__})
    if am.criterion == "asg":  # what an ASG decoder adds to the scores (flashlight-text needs them)
        prov["asg_transitions"] = am.asg_transitions()
    atomic_write_text(yaml_path, yaml.safe_dump(prov, sort_keys=False))
    log(f"emissions: {len(mats)} utterances, {total_s:.1f} audio-s in {seconds:.1f} s "
        f"(RTF {seconds / max(total_s, 1e-9):.4f}) -> {cache_dir}/emissions.ark")
    return Emissions(mats, am.tokens, prov, dict(fd.frames), cache_dir)


def read_emissions_info(cache_dir: str | Path) -> dict:
    """``cache_dir/emissions.yaml``: where the emissions came from, the criterion and (ASG) the
    transitions; {} when there is none."""
    path = Path(cache_dir) / "emissions.yaml"
    if not path.is_file():
        return {}
    try:
        info = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        raise W2vtkError(f"{path}: not valid YAML (delete emissions.* to recompute)") from None
    if not isinstance(info, dict):
        raise W2vtkError(f"{path}: not a mapping (delete emissions.* to recompute)")
    return info


def read_emissions(cache_dir: str | Path) -> dict[str, np.ndarray]:
    """All matrices of ``cache_dir/emissions.scp`` as C-contiguous float32 arrays."""
    scp = Path(cache_dir) / "emissions.scp"
    if not scp.is_file():
        raise W2vtkError(f"{scp}: no such file")
    try:
        table = read_kv(scp, any_order=True, what="utterance")
    except W2vtkError as err:
        raise W2vtkError(f"{err}; delete {cache_dir}/emissions.* to recompute") from None
    for utt, where in table.items():
        if not where:
            raise W2vtkError(f"{scp}: '{utt}' has no '<ark>:<offset>'; delete {cache_dir}/emissions.* to "
                             f"recompute")
    # w2vtk's own reader (Kaldi matrices and NPY records only): kaldiio.load_scp would unpickle a
    # PKL record planted in the ark
    reader = ScpReader(scp, table)
    out = {}
    for utt in reader:
        try:
            out[utt] = np.ascontiguousarray(reader[utt], dtype=np.float32)
        except W2vtkError as err:
            raise W2vtkError(f"{err}; delete {cache_dir}/emissions.* to recompute") from None
    return out
