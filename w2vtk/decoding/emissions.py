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
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

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
from w2vtk.dist import balanced_shards
from w2vtk.io import atomic_write_text, read_json_record, sha256_file
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


def emission_batches(fd: FeatureDir, batch_frames: int) -> list[list[str]]:
    """The batches :func:`compute_emissions` runs, in order: at most ``batch_frames`` padded input
    frames each, shortest utterances first (``w2vtk.am.data.make_batches``)."""
    if batch_frames < 1:
        raise W2vtkError(f"batch_frames must be >= 1, got {batch_frames}")
    return make_batches(fd.ids, fd.frames, batch_frames, 10 ** 9)


def emission_shards(fd: FeatureDir, batch_frames: int, n: int) -> list[list[list[str]]]:
    """:func:`emission_batches` dealt into up to ``n`` array-job shards of similar padded size, whole
    batches each (a job then runs exactly the batches a one-process run would, so its numbers are
    the same to the bit), every shard in batch order."""
    batches = emission_batches(fd, batch_frames)
    padded = {i: len(b) * max(fd.frames[u] for u in b) for i, b in enumerate(batches)}  # count x longest
    return [[batches[i] for i in sorted(shard)] for shard in balanced_shards(list(padded), padded, n)]


def compute_emissions(am: LoadedAM | str | Path, feats_dir: str | Path | FeatureDir, *,
                      batch_frames: int = 40000, device: str = "cpu", which: str = "auto",
                      allow_feature_mismatch: bool = False,
                      batches: Sequence[Sequence[str]] | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (utt_id, (T', V) float32 natural-log probabilities; an ASG model's raw frame scores) for
    every utterance of a feature data dir (feats.scp; text not needed), in batches of at most ``batch_frames`` padded input
    frames, shortest utterances first (:func:`emission_batches`; ``batches``: only these).

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
    for utts in (emission_batches(fd, batch_frames) if batches is None else batches):
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
            em = np.ascontiguousarray(log_probs[i, : int(out_lengths[i])])
            if not np.all(np.isfinite(em)):
                raise W2vtkError(f"{am.checkpoint}: non-finite emissions for utterance {utt!r}")
            yield utt, em


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


def _check_cache(cache_dir: Path, prov: dict, am_checkpoint: Path, feats_dir: Path) -> dict:
    """The cached emissions.yaml, when it was made by this checkpoint from these features and tokens."""
    cached = read_emissions_info(cache_dir)
    if cached.get("am_checkpoint_sha256") != prov["am_checkpoint_sha256"]:
        raise W2vtkError(f"{cache_dir}/emissions.ark was computed by another acoustic model "
                         f"({cached.get('am_checkpoint')}, sha256 {str(cached.get('am_checkpoint_sha256'))[:12]}) "
                         f"than {am_checkpoint} (sha256 {prov['am_checkpoint_sha256'][:12]}): decode into "
                         f"a new --out dir or delete {cache_dir}/emissions.*")
    if cached.get("feats_scp_sha256") != prov["feats_scp_sha256"] or cached.get("tokens_sha256") != prov["tokens_sha256"]:
        raise W2vtkError(f"{cache_dir}/emissions.ark was computed from other features "
                         f"({cached.get('feats_dir')}) or tokens than {feats_dir}: decode into a new "
                         f"--out dir or delete {cache_dir}/emissions.*")
    return cached


def _write_matrices(name: Path, items: Iterable[tuple[str, np.ndarray]],
                    on_item: Callable[[str], None] = lambda utt: None) -> dict[str, np.ndarray]:
    """``name``.ark and ``name``.scp from ``items``, in their order, under hidden temporary names
    renamed when whole and on disk (ark first, so an scp never names a missing ark); returns the
    matrices. The temporaries carry the process id: an orphaned writer of the same name (a job
    Slurm still runs) never shares one."""
    ark, scp = name.with_name(f"{name.name}.ark"), name.with_name(f"{name.name}.scp")
    tmp_ark, tmp_scp = (ark.with_name(f".{ark.name}.{os.getpid()}.tmp"),
                        scp.with_name(f".{scp.name}.{os.getpid()}.tmp"))
    mats: dict[str, np.ndarray] = {}
    try:
        with kaldiio.WriteHelper(f"ark,scp:{tmp_ark},{tmp_scp}") as writer:
            for utt, em in items:
                writer(utt, em)
                faults.hit("ark_write", tmp_ark)
                mats[utt] = em
                on_item(utt)
    except BaseException as err:
        # no half file left behind (a kill leaves the hidden temporaries; the next run replaces them)
        tmp_ark.unlink(missing_ok=True)
        tmp_scp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise W2vtkError(f"{ark}: no space left on device (disk or quota full) while writing emissions; "
                             f"nothing was kept") from None
        raise
    with open(tmp_ark, "rb+") as fh:  # on disk before the rename (a record written next trusts it)
        os.fsync(fh.fileno())
    os.replace(tmp_ark, ark)
    # the scp names the temporary ark: rewrite it with the final name
    atomic_write_text(scp, tmp_scp.read_text(encoding="utf-8").replace(str(tmp_ark), str(ark)))
    tmp_scp.unlink(missing_ok=True)
    return mats


def load_or_compute_emissions(am_dir: str | Path, feats_dir: str | Path, cache_dir: str | Path, *,
                              which: str = "auto", device: str = "cpu", batch_frames: int = 40000,
                              allow_feature_mismatch: bool = False, log: Callable[[str], None] = print,
                              progress_enabled: bool | None = None,
                              array: tuple[int, Callable[[int], None]] | None = None) -> Emissions:
    """Emissions of ``feats_dir`` under the AM of ``am_dir``, from ``cache_dir`` when it holds them.

    A cache from another checkpoint or other features is a :class:`W2vtkError` (use a new decode
    dir, or delete ``emissions.*``).  The ark and scp are written under temporary names and renamed,
    ``emissions.yaml`` last, so an interrupted computation leaves no cache that looks whole.

    ``array`` = (N, run): compute them as N array jobs instead (``run(n)`` runs jobs 1..n, each
    :func:`emissions_job`), then merge the jobs' shards into the same ark a one-process run writes.
    """
    am_dir, feats_dir, cache_dir = Path(am_dir), Path(feats_dir), Path(cache_dir)
    # with array jobs this process never runs the model (a submit host may have no GPU)
    am = load_am(am_dir, which=which, device=device if array is None else "cpu")
    fd = load_feature_dir(feats_dir, need_text=False)
    prov = emissions_provenance(am.checkpoint, am.tokens.tokens, feats_dir)
    if (cache_dir / "emissions.yaml").is_file():
        cached = _check_cache(cache_dir, prov, am.checkpoint, feats_dir)
        mats = read_emissions(cache_dir)
        log(f"emissions: reusing {cache_dir}/emissions.ark ({len(mats)} utterances, {am.checkpoint.name})")
        return Emissions(mats, am.tokens, cached, dict(fd.frames), cache_dir)

    cache_dir.mkdir(parents=True, exist_ok=True)
    total_s = FRAME_SECONDS * sum(fd.frames.values())
    t0 = time.perf_counter()
    if array is None:
        with progress("emissions", total=total_s, unit="audio-s", enabled=progress_enabled) as bar:
            mats = _write_matrices(cache_dir / "emissions", compute_emissions(
                am, fd, batch_frames=batch_frames, allow_feature_mismatch=allow_feature_mismatch),
                lambda utt: bar.advance(FRAME_SECONDS * fd.frames[utt]))
        seconds = time.perf_counter() - t0
    else:
        mats, seconds, jobs = _merge_jobs(fd, prov, cache_dir, batch_frames, *array)
    prov.update({"which": am.which, "source": am.source, "utterances": len(mats), "criterion": am.criterion,
                 "frames": int(sum(m.shape[0] for m in mats.values())), "num_tokens": len(am.tokens.tokens),
                 "audio_seconds": round(total_s, 2), "seconds": round(seconds, 3),
                 "rtf": round(seconds / total_s, 5) if total_s else None, "w2vtk_version": __version__})
    if array is not None:
        prov["array_jobs"] = jobs
    if am.criterion == "asg":  # what an ASG decoder adds to the scores (flashlight-text needs them)
        prov["asg_transitions"] = am.asg_transitions()
    atomic_write_text(cache_dir / "emissions.yaml", yaml.safe_dump(prov, sort_keys=False))
    for path in cache_dir.glob("emissions.job*.*"):  # the jobs' shards, merged (a kill before the yaml keeps them)
        path.unlink()
    how = f"{jobs} array jobs, {seconds:.1f} s of compute" if array is not None else f"{seconds:.1f} s"
    log(f"emissions: {len(mats)} utterances, {total_s:.1f} audio-s in {how} "
        f"(RTF {seconds / max(total_s, 1e-9):.4f}) -> {cache_dir}/emissions.ark")
    return Emissions(mats, am.tokens, prov, dict(fd.frames), cache_dir)


def _job_signature(prov: dict, batch_frames: int, shard: list[list[str]]) -> dict:
    """What an emissions job's record must match: the model, tokens, features and its batches."""
    keys = ("am_checkpoint_sha256", "tokens_sha256", "feats_scp_sha256", "feats_yaml_sha256")
    return {**{k: prov[k] for k in keys}, "batch_frames": batch_frames, "batches": [list(b) for b in shard]}


def _job_record(cache_dir: Path, job: int) -> Path:
    return cache_dir / f"emissions.job{job}.json"


def emissions_job(am_dir: str | Path, feats_dir: str | Path, cache_dir: str | Path, job: int, num_jobs: int, *,
                  which: str = "auto", device: str = "cpu", batch_frames: int = 40000,
                  allow_feature_mismatch: bool = False, log: Callable[[str], None] = print) -> None:
    """Array job ``job`` of ``num_jobs``: the emissions of its shard (:func:`emission_shards`) in
    ``cache_dir/emissions.job<K>.{ark,scp}``, then its record ``emissions.job<K>.json`` (the
    signature and timing), last; nothing to do when a finished run of this shard is there."""
    am_dir, feats_dir, cache_dir = Path(am_dir), Path(feats_dir), Path(cache_dir)
    if not 1 <= job <= num_jobs:
        raise W2vtkError(f"--emissions-job {job}: must be 1..{num_jobs} (--emissions-jobs)")
    am = load_am(am_dir, which=which, device=device)
    fd = load_feature_dir(feats_dir, need_text=False)
    shards = emission_shards(fd, batch_frames, num_jobs)
    if job > len(shards):
        log(f"emissions job {job} of {num_jobs}: nothing to do ({len(shards)} shards of whole batches)")
        return
    signature = _job_signature(emissions_provenance(am.checkpoint, am.tokens.tokens, feats_dir), batch_frames,
                               shards[job - 1])
    record = _job_record(cache_dir, job)
    if _job_done(cache_dir, job, signature):
        log(f"emissions job {job} of {num_jobs}: already done ({record})")
        return
    record.unlink(missing_ok=True)
    t0 = time.perf_counter()
    mats = _write_matrices(cache_dir / f"emissions.job{job}", compute_emissions(
        am, fd, batch_frames=batch_frames, allow_feature_mismatch=allow_feature_mismatch, batches=shards[job - 1]))
    seconds = time.perf_counter() - t0
    audio_s = FRAME_SECONDS * sum(fd.frames[u] for u in mats)
    ark_bytes = (cache_dir / f"emissions.job{job}.ark").stat().st_size
    atomic_write_text(record, json.dumps({"signature": signature, "ark_bytes": ark_bytes, "seconds": seconds,
                                          "audio_seconds": audio_s}) + "\n")
    log(f"emissions job {job} of {num_jobs}: {len(mats)} utterances, {audio_s:.1f} audio-s in {seconds:.1f} s "
        f"(RTF {seconds / max(audio_s, 1e-9):.4f})")


def _job_done(cache_dir: Path, job: int, signature: dict) -> bool:
    """Job ``job``'s record matches ``signature`` and its archive has the size recorded."""
    record = read_json_record(_job_record(cache_dir, job))
    ark = cache_dir / f"emissions.job{job}.ark"
    return (record.get("signature") == signature and ark.is_file()
            and record.get("ark_bytes") == ark.stat().st_size)


def _merge_jobs(fd: FeatureDir, prov: dict, cache_dir: Path, batch_frames: int, n: int,
                run: Callable[[int], None]) -> tuple[dict[str, np.ndarray], float, int]:
    """Run the array (``run(jobs)``: up to ``n``, one per batch at most), check each job's record,
    and write emissions.{ark,scp} in the one-process order from the jobs' shards. Returns the
    matrices, the jobs' summed compute seconds and the number of jobs."""
    shards = emission_shards(fd, batch_frames, n)
    run(len(shards))
    tables: dict[str, ScpReader] = {}
    seconds = 0.0
    for k, shard in enumerate(shards, start=1):
        if not _job_done(cache_dir, k, _job_signature(prov, batch_frames, shard)):
            _job_record(cache_dir, k).unlink(missing_ok=True)  # so that a rerun redoes this job
            raise W2vtkError(f"emissions job {k}: its record or archive is missing, damaged or from another "
                             f"model or features (see {cache_dir}/log/emissions.{k}.log); rerun to redo it")
        record = read_json_record(_job_record(cache_dir, k))
        scp = cache_dir / f"emissions.job{k}.scp"
        reader = ScpReader(scp, read_kv(scp, any_order=True, what="utterance"))
        tables.update({utt: reader for utt in reader})
        seconds += float(record.get("seconds", 0.0))
    order = [u for b in emission_batches(fd, batch_frames) for u in b]  # the one-process order
    missing = [u for u in order if u not in tables]
    if missing:
        raise W2vtkError(f"emissions jobs: no emissions for utterance {missing[0]!r} ({len(missing)} missing)")
    mats = _write_matrices(cache_dir / "emissions",
                           ((u, np.ascontiguousarray(tables[u][u], dtype=np.float32)) for u in order))
    return mats, seconds, len(shards)


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
