"""``w2vtk extract`` as one importable function: input discovery, the extractor, data-dir output."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from w2vtk.cluster import CmdConfig, run_jobs
from w2vtk.sources import discover_audio
from w2vtk.data import load_data_dir, read_kv, write_data_dir
from w2vtk.data.kaldi_dir import read_role, write_role
from w2vtk.dist import barrier, env_info, init, owned_group
from w2vtk.errors import W2vtkError
from w2vtk.features.extract import ExtractOptions, ExtractResult, extract_features


@dataclass
class ExtractRequest:
    """Everything ``w2vtk extract`` was asked to do (the CLI options, typed)."""

    input: Path
    out: Path | None = None  # DIR/feats.ark
    out_dir: Path | None = None  # new data dir (or feature dir) holding feats.ark
    npy_dir: Path | None = None
    feature_type: str = "wav2vec"  # wav2vec | logmel
    checkpoint: Path | None = None
    layer: str = "c"  # c | z | context-N
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "fp32"  # fp32 | bf16 (CUDA autocast)
    long_chunk_seconds: float = 60.0  # longer utterances use the exact chunked path
    approx_chunks: bool = False  # opt-in approximate chunking (independent chunks)
    dither: float = 0.0
    seed: int = 0
    options: ExtractOptions = field(default_factory=ExtractOptions)
    cmd: CmdConfig = field(default_factory=CmdConfig)  # slurm: the shards as an array job
    job: int | None = None  # one shard of a prepared run (an array job; Kaldi's JOB)
    log_dir: Path | None = None  # the array jobs' logs (default: OUT_DIR/log)

    def job_argv(self) -> list[str]:
        """The ``w2vtk extract`` command of array job ``JOB`` (placeholder) of this request. Paths
        stay as given (the jobs run in this working directory): an input's utterance list, which the
        jobs' manifest must match, can depend on how its path was written."""
        o = self.options
        argv = [sys.executable, "-m", "w2vtk", "extract", "--in", str(self.input)]
        for flag, value in (("--out", self.out), ("--out-dir", self.out_dir), ("--npy-dir", self.npy_dir),
                            ("--checkpoint", self.checkpoint)):
            if value is not None:
                argv += [flag, str(value)]
        argv += ["--type", self.feature_type, "--layer", self.layer, "--device", self.device,
                 "--precision", self.precision, "--long-chunk-seconds", repr(self.long_chunk_seconds),
                 "--dither", repr(self.dither), "--seed", str(self.seed), "--dtype", o.dtype,
                 "--batch-samples", str(o.batch_samples), "--num-shards", str(o.num_shards),
                 "--num-workers", str(o.num_workers), "--resume", "--job", "JOB"]
        argv += [flag for flag, on in (("--approx-chunks", self.approx_chunks), ("--compress", o.compress),
                                       ("--fail-on-short", o.fail_on_short)) if on]
        return argv


def make_extractor(req: ExtractRequest, log: Callable[[str], None], device=None):
    """The feature extractor for ``req`` (log-mel or wav2vec from a checkpoint)."""
    if req.feature_type == "logmel":
        from w2vtk.features.logmel import LogMelConfig, LogMelExtractor

        if req.checkpoint is not None:
            raise W2vtkError("--checkpoint is for --type wav2vec; log-mel features need no model")
        if req.dither < 0:
            raise W2vtkError(f"--dither {req.dither}: must be >= 0")
        return LogMelExtractor(LogMelConfig(dither=req.dither), seed=req.seed)
    if req.feature_type == "wav2vec":
        if req.checkpoint is None:
            raise W2vtkError("--type wav2vec needs --checkpoint (a w2vtk or fairseq wav2vec checkpoint)")
        from w2vtk.features.wav2vec import Wav2VecExtractor

        return Wav2VecExtractor.from_checkpoint(req.checkpoint, layer=req.layer, device=device,
                                                precision=req.precision,
                                                long_chunk_seconds=req.long_chunk_seconds,
                                                approx_chunks=req.approx_chunks, log=log)
    raise W2vtkError(f"--type {req.feature_type}: expected wav2vec or logmel")


def _filter(table: dict[str, str] | None, keep: set[str]) -> dict[str, str] | None:
    if table is None:
        return None
    return {k: v for k, v in table.items() if k in keep}


def _write_data_copy(in_dir: Path, out_dir: Path, feats_scp: dict[str, str],
                     utt2num_frames: dict[str, str]) -> None:
    """The input data dir's tables, restricted to the extracted utterances, plus the feature tables."""
    dd = load_data_dir(in_dir, require_text=False)
    keep = set(feats_scp)
    if dd.segments is not None:
        segments = _filter(dd.segments, keep)
        recos = {v.split()[0] for v in segments.values()}
    else:
        segments = None
        recos = keep
    utt2spk = _filter(dd.utt2spk, keep)
    speakers = set(utt2spk.values())
    reco2dur = None
    reco_path = in_dir / "reco2dur"
    if reco_path.is_file():
        reco2dur = _filter(read_kv(reco_path), recos)
    write_data_dir(out_dir, wav_scp=_filter(dd.wav_scp, recos),
                   text=_filter(dd.text, keep) if (in_dir / "text").is_file() else None,
                   utt2spk=utt2spk, segments=segments, utt2dur=_filter(dd.utt2dur, keep),
                   spk2gender=_filter(dd.spk2gender, speakers), utt2num_frames=utt2num_frames,
                   feats_scp=feats_scp, extra={n: _filter(t, keep) for n, t in dd.extra.items()},
                   reco2dur=reco2dur)
    role = read_role(in_dir)
    if role is not None:  # a feature dir of a test set is still a test set
        write_role(out_dir, role)


def _run_array(req: ExtractRequest, sources, extractor, ark: Path | None, log: Callable[[str], None],
               progress_enabled: bool | None) -> ExtractResult:
    """``--cmd slurm``: prepare here, the N shards as array jobs (logs ``LOG_DIR/extract.JOB.log``),
    then merge here. A rerun with ``--resume`` after a failed, cancelled or timed-out job redoes only
    the shards without a record; the merged output is the bytes a local run writes."""
    if env_info().world_size > 1:
        raise W2vtkError("--cmd slurm starts its own jobs: run it as one process, not under torchrun")
    prepared = extract_features(sources, extractor, ark=ark, npy_dir=req.npy_dir, opts=req.options, log=log,
                                progress_enabled=False, prepare_only=True)
    if prepared.complete:  # a --resume of a finished extraction: nothing to submit
        return prepared
    meta = ark.parent if ark is not None else Path(req.npy_dir)
    log_dir = Path(req.log_dir) if req.log_dir is not None else meta / "log"
    n = req.options.num_shards
    log(f"extracting {n} shards as a {req.cmd.backend} array job; logs {log_dir}/extract.JOB.log")
    t0 = time.perf_counter()
    run_jobs(req.cmd, n, log_dir / "extract.JOB.log", req.job_argv(), name="extract")
    merged = replace(req.options, resume=True, overwrite=False)
    result = extract_features(sources, extractor, ark=ark, npy_dir=req.npy_dir, opts=merged, log=log,
                              progress_enabled=progress_enabled)
    # the audio went through the jobs (their logs have the rates); here: the array's wall time
    return replace(result, array_jobs=n, wall_seconds=time.perf_counter() - t0)


def run_extract(req: ExtractRequest, log: Callable[[str], None] = print,
                progress_enabled: bool | None = None) -> ExtractResult:
    """Run ``w2vtk extract``; returns the result (``complete`` False on a rank that did not merge)."""
    with owned_group():
        return _run_extract(req, log, progress_enabled)


def _run_extract(req: ExtractRequest, log: Callable[[str], None], progress_enabled: bool | None) -> ExtractResult:
    if (req.out is None) == (req.out_dir is None) and not (req.out is None and req.npy_dir is not None):
        raise W2vtkError("give exactly one of --out FILE.ark and --out-dir DIR (or only --npy-dir)")
    if req.device not in ("auto", "cpu", "cuda"):
        raise W2vtkError(f"--device {req.device}: expected auto, cpu or cuda")
    if req.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise W2vtkError("--device cuda: no CUDA device is available to this torch build")
    sources, data_dir = discover_audio(req.input)
    _, device = init(req.device if req.feature_type == "wav2vec" else "cpu")
    ark = None
    if req.out is not None:
        ark = Path(req.out)
    elif req.out_dir is not None:
        out_dir = Path(req.out_dir)
        if data_dir is not None and out_dir.exists() and out_dir.resolve() == data_dir.resolve():
            raise W2vtkError(f"--out-dir {out_dir} is the input data dir; extract never modifies its "
                             f"input: name a new one such as {data_dir.name}_w2v")
        if out_dir.exists() and not out_dir.is_dir():
            raise W2vtkError(f"--out-dir {out_dir}: exists and is not a directory")
        if out_dir.is_dir() and any(out_dir.iterdir()) and not (req.options.resume or req.options.overwrite):
            raise W2vtkError(f"--out-dir {out_dir} already exists and is not empty: use --overwrite to "
                             f"replace it or --resume to finish an interrupted run")
        if env_info().is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
        barrier()
        out_dir.mkdir(parents=True, exist_ok=True)
        ark = out_dir / "feats.ark"
    extractor = make_extractor(req, log, device)
    if req.cmd.backend != "local" and req.job is None:
        result = _run_array(req, sources, extractor, ark, log, progress_enabled)
    else:
        result = extract_features(sources, extractor, ark=ark, npy_dir=req.npy_dir, opts=req.options,
                                  log=log, progress_enabled=progress_enabled, job=req.job)
    if result.skipped:
        shown = ", ".join(result.skipped[:5]) + (" ..." if len(result.skipped) > 5 else "")
        log(f"skipped {len(result.skipped)} utterances shorter than {extractor.min_samples} samples "
            f"(listed in {result.scp.with_suffix('.skipped') if result.scp else 'feats.skipped'}): {shown}")
    if result.complete and env_info().is_main and req.out_dir is not None and data_dir is not None \
            and result.scp is not None:
        _write_data_copy(data_dir, Path(req.out_dir), read_kv(result.scp),
                         read_kv(Path(req.out_dir) / "utt2num_frames"))
    return result
