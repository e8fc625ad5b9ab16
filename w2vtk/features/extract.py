"""The extraction driver: audio sources -> feature archives, sharded, resumable, batched by length.

Layout for an archive ``DIR/feats.ark`` and ``--num-shards N``:

- utterances are sorted by id (C locale / UTF-8 bytes) and split into N contiguous shards;
  torchrun rank r takes shards r, r + W, r + 2W, ... (W = number of processes);
- shard k (1-based, as Kaldi's JOB) is written to ``DIR/feats.ark`` when N == 1, else
  ``DIR/feats.<k>.ark``, under a temporary name that is renamed when the shard is complete; then its
  record (scp offsets, frame counts, skipped utterances) goes to ``DIR/.feats.work/shard.<k>.json``;
- when every shard has its record, rank 0 merges them in shard order into ``DIR/feats.scp``,
  ``DIR/utt2num_frames``, ``DIR/feats.yaml`` (and ``DIR/feats.skipped`` when audio was too short);
  feats.yaml, written last, also keeps the run's manifest (``run``), and ``.feats.work`` is removed.

Because the partition depends only on the sorted utterance list and N, ``--resume`` after a killed run
redoes only the shards without a record, under any number of processes; the shard count itself must
stay the same (it is recorded in ``.feats.work/manifest.json``). ``--resume`` of a finished output
checks its settings against feats.yaml's ``run`` and has nothing to do.
"""

from __future__ import annotations

import datetime as _dt
import glob
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from w2vtk.dist import barrier, env_info
from w2vtk.errors import W2vtkError
from w2vtk.features.archive import bytes_per_frame, check_dtype, write_matrix, write_npy
from w2vtk.features.batches import length_batches
from w2vtk.features.loading import iter_audio
from w2vtk import __version__, faults
from w2vtk.io import atomic_open, atomic_write_text, remove_stale_temporaries
from w2vtk.progress import progress

SAMPLE_RATE = 16000
FRAME_SHIFT_MS = 10


class FeatureExtractor(Protocol):
    """What the driver needs from a feature type (log-mel, wav2vec)."""

    feature_type: str
    dim: int
    min_samples: int  # shortest input with at least one frame

    def num_frames(self, num_samples: int) -> int: ...

    def extract(self, batch: list[tuple[str, np.ndarray]]) -> list[np.ndarray]:
        """(utt_id, (T,) float32 samples at 16 kHz) pairs -> one (T', dim) float32 array each."""

    def provenance(self) -> dict: ...


@dataclass
class ExtractOptions:
    """How to run and store; see ``w2vtk extract --help``."""

    dtype: str = "float32"  # storage: float32 | float16
    compress: bool = False  # Kaldi CM compression (float32 only)
    batch_samples: int = 1_600_000  # padded samples per batch (100 s at 16 kHz)
    num_shards: int = 1
    resume: bool = False
    overwrite: bool = False
    num_workers: int = 2  # audio-decoding worker processes (0 = decode in the main process)
    fail_on_short: bool = False  # error instead of skipping audio shorter than the receptive field
    window_batches: int = 8  # utterances are sorted by length within windows of this many batches


@dataclass
class ExtractResult:
    complete: bool  # False when other shards are still missing (another process will finish)
    scp: Path | None
    num_utterances: int = 0
    num_frames: int = 0
    skipped: list[str] = field(default_factory=list)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    array_jobs: int = 0  # --cmd slurm: the shards ran as this many array jobs (wall_seconds: theirs and the merge)


# ------------------------------------------------------------------------------------ layout


@dataclass(frozen=True)
class _Layout:
    """Every path the driver writes for one output (``ark`` None: .npy files only)."""

    meta_dir: Path
    stem: str
    ark: Path | None
    num_shards: int

    # the files beside the archive (work: the .feats.work/ directory of an unfinished run)
    work = property(lambda self: self.meta_dir / f".{self.stem}.work")
    scp = property(lambda self: self.meta_dir / f"{self.stem}.scp")
    yaml = property(lambda self: self.meta_dir / f"{self.stem}.yaml")
    skipped = property(lambda self: self.meta_dir / f"{self.stem}.skipped")

    @property
    def utt2num_frames(self) -> Path:
        # Kaldi's name for the usual archive name; a differently named archive gets its own, so two
        # archives can share a directory.
        name = "utt2num_frames" if self.stem == "feats" else f"{self.stem}.utt2num_frames"
        return self.meta_dir / name

    def shard_ark(self, k: int) -> Path | None:
        """Archive of shard k (0-based; named with k + 1 as Kaldi's JOB)."""
        if self.ark is None:
            return None
        if self.num_shards == 1:
            return self.ark
        return self.ark.with_name(f"{self.stem}.{k + 1}{self.ark.suffix}")

    def shard_record(self, k: int) -> Path:
        return self.work / f"shard.{k + 1}.json"

    def existing(self) -> list[Path]:
        found = [p for p in (self.scp, self.utt2num_frames, self.yaml, self.skipped, self.work) if p.exists()]
        if self.ark is not None:
            pattern = str(self.ark.with_name(f"{glob.escape(self.stem)}.*{self.ark.suffix}"))
            found += [Path(p) for p in glob.glob(pattern)]
            if self.ark.exists():
                found.append(self.ark)
        return sorted(set(found))


def _layout(ark: Path | None, npy_dir: Path | None, num_shards: int) -> _Layout:
    if ark is not None:
        ark = Path(ark).absolute()
        if ark.suffix != ".ark":
            raise W2vtkError(f"--out {ark}: the archive name must end in .ark")
        if ark.parent.exists() and not ark.parent.is_dir():
            raise W2vtkError(f"--out {ark}: {ark.parent} is not a directory")
        return _Layout(ark.parent, ark.stem, ark, num_shards)
    if npy_dir is None:
        raise W2vtkError("nothing to write: give an archive (--out / --out-dir) or --npy-dir")
    return _Layout(Path(npy_dir).absolute(), "feats", None, num_shards)


# ------------------------------------------------------------------------------------ audio


def _source_duration(src) -> float | None:
    if getattr(src, "duration_s", None) is not None:
        return float(src.duration_s)
    if src.end is not None:
        return float(src.end) - float(src.start)
    return None


# ------------------------------------------------------------------------------------ one shard


def _run_shard(k: int, sources: Sequence, indices: list[int], extractor: FeatureExtractor,
               layout: _Layout, npy_dir: Path | None, opts: ExtractOptions,
               on_progress: Callable[[float], None]) -> dict:
    """Extract shard k; write its archive (atomically) and then its record. Returns the record."""
    ark = layout.shard_ark(k)
    if ark is not None:
        # A killed run leaves atomic_open's temporary file behind; it is never valid.
        for stale in glob.glob(str(ark.with_name(f".{glob.escape(ark.name)}.*.tmp"))):
            os.unlink(stale)
    entries: list[list] = []
    skipped: list[str] = []
    window_samples = max(1, opts.batch_samples * opts.window_batches)

    def process(window: dict[int, np.ndarray], fh) -> None:
        lengths = {i: len(w) for i, w in window.items()}
        feats: dict[int, np.ndarray] = {}
        for batch in length_batches(lengths, opts.batch_samples):
            outs = extractor.extract([(sources[i].utt_id, window[i]) for i in batch])
            for i, mat in zip(batch, outs):
                feats[i] = mat
        for i in sorted(feats):
            utt = sources[i].utt_id
            mat = feats[i]
            if not np.isfinite(mat).all():
                raise W2vtkError(f"utterance {utt}: the features contain NaN or Inf")
            offset = -1
            if fh is not None:
                offset = write_matrix(fh, utt, mat, opts.dtype, opts.compress)
            if npy_dir is not None:
                write_npy(npy_dir, utt, mat, opts.dtype)
            entries.append([utt, offset, int(mat.shape[0])])
            on_progress(lengths[i] / SAMPLE_RATE)

    def loop(fh) -> None:
        window: dict[int, np.ndarray] = {}
        size = 0
        for i, wave in iter_audio(sources, indices, opts.num_workers):
            if extractor.num_frames(len(wave)) < 1:
                utt = sources[i].utt_id
                if opts.fail_on_short:
                    raise W2vtkError(
                        f"utterance {utt}: {len(wave)} samples is shorter than the {extractor.min_samples}"
                        f" samples one {extractor.feature_type} frame needs (drop --fail-on-short to skip it)")
                skipped.append(utt)
                on_progress(len(wave) / SAMPLE_RATE)
                continue
            window[i] = wave
            size += len(wave)
            if size >= window_samples:
                process(window, fh)
                window, size = {}, 0
        if window:
            process(window, fh)

    if ark is not None:
        with atomic_open(ark, "wb", encoding=None) as fh:
            loop(fh)
        faults.hit("shard_done", ark)
    else:
        loop(None)
    record = {"shard": k + 1, "ark": str(ark) if ark is not None else None,
              "entries": entries, "skipped": skipped}
    atomic_write_text(layout.shard_record(k), json.dumps(record) + "\n")
    return record


# ------------------------------------------------------------------------------------ driver


def _manifest(sources: Sequence, extractor: FeatureExtractor, opts: ExtractOptions, layout: _Layout,
              npy_dir: Path | None) -> dict:
    import hashlib

    h = hashlib.sha256()
    for s in sources:
        h.update(f"{s.utt_id} {s.spec} {s.start} {s.end}\n".encode("utf-8"))
    prov = extractor.provenance()
    return {"num_shards": layout.num_shards, "num_utterances": len(sources), "utterances_sha256": h.hexdigest(),
            "feature_type": extractor.feature_type, "dim": extractor.dim,
            "extractor": {k: v for k, v in prov.items() if k != "checkpoint_path"},
            "dtype": opts.dtype, "compress": opts.compress, "ark": str(layout.ark) if layout.ark else None,
            "npy_dir": str(npy_dir) if npy_dir else None}


def _read_work_record(path: Path) -> dict:
    """A ``.feats.work`` record (written atomically, so damage means disk trouble or a hand edit)."""
    try:
        rec = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError) as err:  # JSONDecodeError / UnicodeDecodeError: ValueError
        raise W2vtkError(f"{path}: damaged record of an earlier run ({type(err).__name__}); use --overwrite "
                         f"to start again") from None
    if not isinstance(rec, dict):
        raise W2vtkError(f"{path}: damaged record of an earlier run (not a mapping); use --overwrite to start again")
    return rec


def _shard_entries(path: Path) -> dict:
    rec = _read_work_record(path)
    entries, skipped = rec.get("entries"), rec.get("skipped")
    ok = (isinstance(entries, list) and isinstance(skipped, list) and all(isinstance(s, str) for s in skipped)
          and isinstance(rec.get("ark"), (str, type(None)))
          and all(isinstance(e, list) and len(e) == 3 and isinstance(e[0], str) and isinstance(e[1], int)
                  and isinstance(e[2], int) for e in entries))
    if not ok:
        raise W2vtkError(f"{path}: damaged record of an earlier run (bad entries); use --overwrite to start again")
    return rec


def _finished_run(layout: _Layout) -> dict | None:
    """The run record a finished extraction keeps in feats.yaml (``run``: its manifest), or None."""
    if not layout.yaml.is_file():
        return None
    import yaml

    try:
        doc = yaml.safe_load(layout.yaml.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    run = doc.get("run") if isinstance(doc, dict) else None
    return run if isinstance(run, dict) else None


def _check_resume(layout: _Layout, manifest: dict) -> bool:
    """Check that ``--resume`` continues the same run; True when that run already finished (its
    work records are gone and feats.yaml holds its manifest): nothing left to do."""
    path = layout.work / "manifest.json"
    if not path.is_file():
        finished = _finished_run(layout)
        if finished is not None:
            for key in manifest:
                if finished.get(key) != manifest[key]:
                    raise W2vtkError(f"--resume: the finished run in {layout.meta_dir} differs in {key} "
                                     f"({finished.get(key)!r} vs {manifest[key]!r}); use --overwrite to "
                                     f"start again")
            return True
        raise W2vtkError(f"--resume: {layout.meta_dir} has no record of an earlier run of this output "
                         f"({path} missing); use --overwrite to start again")
    old = _read_work_record(path)
    if old.get("num_shards") != manifest["num_shards"]:
        raise W2vtkError(f"--resume: the earlier run used --num-shards {old.get('num_shards')}, not "
                         f"{manifest['num_shards']}; the shard count must stay the same (the number of "
                         f"processes may change)")
    for key in manifest:
        if old.get(key) != manifest[key]:
            raise W2vtkError(f"--resume: the earlier run of {layout.meta_dir} differs in {key} "
                             f"({old.get(key)!r} vs {manifest[key]!r}); use --overwrite to start again")
    return False


def _remove_outputs(layout: _Layout) -> None:
    for p in layout.existing():
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()


def projected_size(sources: Sequence, extractor: FeatureExtractor, opts: ExtractOptions) -> tuple[float, float, int]:
    """(bytes, known audio seconds, number of utterances of unknown duration) of the archive to write."""
    seconds, unknown = 0.0, 0
    for s in sources:
        d = _source_duration(s)
        if d is None:
            unknown += 1
        else:
            seconds += d
    frames = seconds * 1000.0 / FRAME_SHIFT_MS
    return frames * bytes_per_frame(extractor.dim, opts.dtype, opts.compress), seconds, unknown


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000.0
    return f"{n:.1f} TB"


def extract_features(sources: Sequence, extractor: FeatureExtractor, *, ark: Path | None,
                     npy_dir: Path | None = None, opts: ExtractOptions = ExtractOptions(),
                     rank: int | None = None, world_size: int | None = None,
                     log: Callable[[str], None] | None = None,
                     progress_enabled: bool | None = None, job: int | None = None,
                     prepare_only: bool = False) -> ExtractResult:
    """Extract features of ``sources`` (AudioSource-like: utt_id, spec, start, end, duration_s, load()).

    ``ark``: final archive path (``DIR/feats.ark``); ``npy_dir``: also (or only) write
    ``<utt_id>.npy`` files there.  ``rank`` / ``world_size`` default to torchrun's; a process only
    extracts its shards, and the one that sees every shard finished merges the outputs (rank 0 after a
    barrier under torchrun).  Returns what was done; ``complete`` is False when shards of other
    processes are still missing.

    A cluster array (``extract --cmd slurm``) runs in three steps: ``prepare_only`` (checks, old
    outputs, the manifest; no shard), then job k = 1..N each with ``job=k`` (shard k alone, if its
    record is missing; no preparation, no merge; the manifest must match), then a ``resume`` run
    that finds every shard done and merges.
    """
    _check_options(opts)
    if job is not None and not 1 <= job <= opts.num_shards:
        raise W2vtkError(f"--job {job}: must be 1..{opts.num_shards} (--num-shards)")
    info = env_info()
    rank = info.rank if rank is None else rank
    world_size = info.world_size if world_size is None else world_size
    is_main = rank == 0
    say = log if (log is not None and is_main) else (lambda _msg: None)

    sources = _sorted_unique(sources)
    if npy_dir is not None:
        npy_dir = Path(npy_dir).absolute()
        if not npy_dir.parent.is_dir():
            raise W2vtkError(f"--npy-dir {npy_dir}: directory {npy_dir.parent} does not exist")
    layout = _layout(ark, npy_dir, opts.num_shards)
    manifest = _manifest(sources, extractor, opts, layout, npy_dir)
    if opts.fail_on_short:
        _refuse_short(sources, extractor)
    if job is not None:
        return _run_job(job, sources, extractor, layout, manifest, npy_dir, opts, progress_enabled, log)
    existing = layout.existing()
    if (existing == [layout.work] and not (layout.work / "manifest.json").exists()
            and not any(layout.work.glob("shard.*.json"))):
        # a run killed while writing its manifest did nothing: start afresh, with or without --resume
        existing = []
    if existing and not (opts.resume or opts.overwrite):
        raise W2vtkError(f"{existing[0]} already exists: use --overwrite to replace the output "
                         f"or --resume to finish an interrupted run")
    if opts.resume and existing and _check_resume(layout, manifest):
        say(f"{layout.meta_dir}: this extraction already finished; nothing to do")
        return _finished_result(layout)
    barrier()
    if is_main:
        _prepare_outputs(layout, manifest, npy_dir, remove_old=opts.overwrite and bool(existing))
    barrier()
    layout.work.mkdir(parents=True, exist_ok=True)

    n_shards = opts.num_shards
    shards = _shard_indices(len(sources), n_shards)
    todo = [k for k in range(n_shards) if k % world_size == rank and not layout.shard_record(k).is_file()]
    _announce(say, layout, sources, extractor, opts)
    if prepare_only:
        return ExtractResult(complete=False, scp=None)
    audio_done, wall = _run_shards(todo, shards, sources, extractor, layout, npy_dir, opts,
                                   progress_enabled if is_main else False)
    barrier()
    missing = [k + 1 for k in range(n_shards) if not layout.shard_record(k).is_file()]
    if missing or not is_main:
        return ExtractResult(complete=not missing, scp=layout.scp if not missing else None,
                             audio_seconds=audio_done, wall_seconds=wall)
    return _merge(layout, sources, extractor, opts, npy_dir, audio_done, wall, __version__, manifest)


def _shard_indices(n_items: int, n_shards: int) -> list[list[int]]:
    """Contiguous shards of the sorted utterances (shard k: items n*k//N .. n*(k+1)//N - 1)."""
    return [list(range(n_items * k // n_shards, n_items * (k + 1) // n_shards)) for k in range(n_shards)]


def _run_job(job: int, sources: Sequence, extractor: FeatureExtractor, layout: _Layout, manifest: dict,
             npy_dir: Path | None, opts: ExtractOptions, progress_enabled: bool | None,
             log: Callable[[str], None] | None) -> ExtractResult:
    """One array job: shard ``job`` of a prepared run, skipped when its record exists."""
    say = log or (lambda _msg: None)
    if not (layout.work / "manifest.json").is_file() and _finished_run(layout) is None:
        raise W2vtkError(f"--job {job}: {layout.meta_dir} has no prepared run ({layout.work}/manifest.json "
                         f"missing); array jobs are started by `w2vtk extract --cmd slurm`")
    if _check_resume(layout, manifest):
        return _finished_result(layout)
    k = job - 1
    shards = _shard_indices(len(sources), opts.num_shards)
    if layout.shard_record(k).is_file():
        say(f"shard {job} of {opts.num_shards} is already complete")
        return ExtractResult(complete=False, scp=None)
    audio_done, wall = _run_shards([k], shards, sources, extractor, layout, npy_dir, opts, progress_enabled)
    say(f"shard {job} of {opts.num_shards}: {len(shards[k])} utterances, {audio_done:.1f} audio-s in {wall:.1f} s "
        f"({audio_done / max(wall, 1e-9):.1f} audio-s/s)")
    return ExtractResult(complete=False, scp=None, audio_seconds=audio_done, wall_seconds=wall)


def _check_options(opts: ExtractOptions) -> None:
    check_dtype(opts.dtype, opts.compress)
    if opts.num_shards < 1:
        raise W2vtkError(f"--num-shards {opts.num_shards}: must be at least 1")
    if opts.batch_samples < 1:
        raise W2vtkError(f"--batch-samples {opts.batch_samples}: must be positive")
    if opts.resume and opts.overwrite:
        raise W2vtkError("--resume and --overwrite exclude each other")


def _sorted_unique(sources: Sequence) -> list:
    """``sources`` in byte order of their ids (Kaldi's sort order); W2vtkError on none or a duplicate."""
    sources = sorted(sources, key=lambda s: s.utt_id.encode("utf-8"))
    ids = [s.utt_id for s in sources]
    if len(set(ids)) != len(ids):
        raise W2vtkError("duplicate utterance ids in the input")
    if not sources:
        raise W2vtkError("no utterances to extract")
    return sources


def _refuse_short(sources: Sequence, extractor: FeatureExtractor) -> None:
    """--fail-on-short: an utterance of known duration too short for one frame is an error."""
    for s in sources:
        d = _source_duration(s)
        if d is not None and extractor.num_frames(int(round(d * SAMPLE_RATE))) < 1:
            raise W2vtkError(f"utterance {s.utt_id}: {d:.3f} s is shorter than the {extractor.min_samples}"
                             f" samples one {extractor.feature_type} frame needs (drop --fail-on-short "
                             f"to skip it)")


def _prepare_outputs(layout: _Layout, manifest: dict, npy_dir: Path | None, remove_old: bool) -> None:
    """Rank 0, before any shard: old outputs removed (--overwrite), stale temporaries gone, the manifest."""
    if remove_old:
        _remove_outputs(layout)
    layout.work.mkdir(parents=True, exist_ok=True)
    # a killed run's temporaries are never valid (shard archives' are removed per shard)
    remove_stale_temporaries(layout.work, ("manifest.json", "shard.*.json"))
    remove_stale_temporaries(layout.meta_dir, (layout.scp.name, layout.utt2num_frames.name, layout.yaml.name,
                                               layout.skipped.name))
    if npy_dir is not None:
        npy_dir.mkdir(exist_ok=True)
    atomic_write_text(layout.work / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def _announce(say: Callable[[str], None], layout: _Layout, sources: Sequence, extractor: FeatureExtractor,
              opts: ExtractOptions) -> None:
    """The projected archive size, and how many shards a resumed run finds done."""
    if layout.ark is not None:
        size, known_s, unknown = projected_size(sources, extractor, opts)
        extra = f"; {unknown} utterances of unknown duration not counted" if unknown else ""
        dur = f"{known_s / 3600:.2f} h" if known_s >= 360 else f"{known_s:.1f} s"
        say(f"projected archive size: {_human(size)} for {dur} of audio "
            f"({len(sources)} utterances, {extractor.dim} x {opts.dtype}"
            f"{' compressed' if opts.compress else ''} at 100 Hz{extra})")
    done_before = sum(1 for k in range(opts.num_shards) if layout.shard_record(k).is_file())
    if done_before:
        say(f"resuming: {done_before} of {opts.num_shards} shards already complete")


def _run_shards(todo: list[int], shards: list[list[int]], sources: Sequence, extractor: FeatureExtractor,
                layout: _Layout, npy_dir: Path | None, opts: ExtractOptions,
                progress_enabled: bool | None) -> tuple[float, float]:
    """This process's shards under one progress bar (audio-seconds, with an ETA when every duration is
    known); returns (audio seconds extracted, wall seconds)."""
    durations = [_source_duration(sources[i]) for k in todo for i in shards[k]]
    total = None if any(d is None for d in durations) else sum(durations)
    t0 = time.perf_counter()
    audio_done = [0.0]
    with progress(f"extract {extractor.feature_type}", total=total, unit="audio-s",
                  enabled=progress_enabled) as bar:
        def advance(seconds: float) -> None:
            audio_done[0] += seconds
            bar.advance(seconds)

        for k in todo:
            _run_shard(k, sources, shards[k], extractor, layout, npy_dir, opts, advance)
    return audio_done[0], time.perf_counter() - t0


def _finished_result(layout: _Layout) -> ExtractResult:
    """The result of a finished extraction, from its files (a --resume with nothing left to do)."""
    frames = [line.split() for line in layout.utt2num_frames.read_text(encoding="utf-8").splitlines() if line]
    skipped = layout.skipped.read_text(encoding="utf-8").split() if layout.skipped.is_file() else []
    return ExtractResult(complete=True, scp=layout.scp if layout.ark is not None else None,
                         num_utterances=len(frames), num_frames=sum(int(f[1]) for f in frames), skipped=skipped,
                         audio_seconds=0.0, wall_seconds=0.0)


def _merge(layout: _Layout, sources: Sequence, extractor: FeatureExtractor, opts: ExtractOptions,
           npy_dir: Path | None, audio_seconds: float, wall: float, version: str,
           manifest: dict | None = None) -> ExtractResult:
    """The shards' records -> feats.scp, utt2num_frames, feats.yaml (last: it marks the output whole
    and keeps the run's manifest for a later --resume); then the work records go."""
    scp_lines: list[str] = []
    frame_lines: list[str] = []
    skipped: list[str] = []
    total_frames = 0
    for k in range(layout.num_shards):
        rec = _shard_entries(layout.shard_record(k))
        for utt, offset, frames in rec["entries"]:
            if rec["ark"] is not None:
                scp_lines.append(f"{utt} {rec['ark']}:{offset}\n")
            frame_lines.append(f"{utt} {frames}\n")
            total_frames += frames
        skipped.extend(rec["skipped"])
    if layout.ark is not None:
        atomic_write_text(layout.scp, "".join(scp_lines))
    atomic_write_text(layout.utt2num_frames, "".join(frame_lines))
    if skipped:
        atomic_write_text(layout.skipped, "".join(f"{u}\n" for u in skipped))
    elif layout.skipped.exists():
        layout.skipped.unlink()
    write_provenance(layout.yaml, extractor, opts, layout=layout, npy_dir=npy_dir,
                     num_utterances=len(frame_lines), num_frames=total_frames, skipped=len(skipped),
                     version=version, run=manifest)
    # a kill from here on leaves a whole output plus records that a --resume merges again
    shutil.rmtree(layout.work, ignore_errors=True)
    return ExtractResult(complete=True, scp=layout.scp if layout.ark is not None else None,
                         num_utterances=len(frame_lines), num_frames=total_frames, skipped=skipped,
                         audio_seconds=audio_seconds, wall_seconds=wall)


def write_provenance(path: Path, extractor: FeatureExtractor, opts: ExtractOptions, *, layout: _Layout,
                     npy_dir: Path | None, num_utterances: int, num_frames: int, skipped: int,
                     version: str, run: dict | None = None) -> None:
    """``feats.yaml``: what the features are and where they came from (read by train-am)."""
    import yaml

    doc = {
        "feature_type": extractor.feature_type,
        "dim": extractor.dim,
        "frame_shift_ms": FRAME_SHIFT_MS,
        "sample_rate": SAMPLE_RATE,
        "dtype": opts.dtype,
        "compression": "kaldi-cm" if opts.compress else "none",
        "storage": ("kaldi-ark" if layout.ark is not None else "npy") + ("+npy" if layout.ark is not None and npy_dir else ""),
        "ark_format": ("kaldiio NPY records (kaldiio reads them; Kaldi binaries do not)"
                       if opts.dtype == "float16" else "Kaldi binary matrices"),
        "npy_dir": str(npy_dir) if npy_dir is not None else None,
        "num_shards": layout.num_shards,
        "num_utterances": num_utterances,
        "num_frames": num_frames,
        "skipped_short": skipped,
        **extractor.provenance(),
        "frame_count_note": ("log-mel (25 ms window, snip_edges) has one frame more than wav2vec c for "
                             "the same audio in most cases: 150000 samples -> 936 log-mel frames, 935 c "
                             "frames; train-am trims to the shorter when it combines them"),
        "w2vtk_version": version,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if run is not None:
        doc["run"] = run  # what `extract --resume` checks a rerun against once .feats.work is gone
    atomic_write_text(path, yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
