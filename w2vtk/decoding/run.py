"""``w2vtk decode``: :func:`decode_dir` = emissions (cached), then tuning or one decode, hyp.txt,
scoring and decode.json; and the test-set guard that keeps tuning off test sets."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import yaml

from w2vtk.cluster import CmdConfig, run_jobs
from w2vtk.config import save_config
from w2vtk.data.kaldi_dir import read_role
from w2vtk.decoding.config import FRAME_SECONDS, BeamConfig, DecodeConfig
from w2vtk.decoding.emissions import Emissions, emissions_job, load_or_compute_emissions
from w2vtk.decoding.pool import DecodeJob, DecodePool
from w2vtk.decoding.search import Hypothesis
from w2vtk.decoding.tune import load_params, merge_job_trials, params_of, tune as run_tuning, tune_job
from w2vtk.dist import balanced_shards
from w2vtk.errors import W2vtkError
from w2vtk.io import atomic_write_text, read_json_record, remove_stale_temporaries, sha256_file
from w2vtk.lm.reading import LMResources
from w2vtk.progress import progress
from w2vtk.scoring import score_files
from w2vtk.tokens import read_transcripts

FEATURE_SUFFIXES = ("_w2v", "_fbank", "_logmel", "_mfcc", "_feats", "_hires", "_c", "_z")


def set_name(data_dir: str | Path) -> str:
    """A data dir's set name: its directory name without feature suffixes (``test_eval92_w2v`` ->
    ``test_eval92``; Kaldi's ``test_dev93`` stays ``test_dev93``)."""
    name = Path(data_dir).resolve().name
    changed = True
    while changed:
        changed = False
        for sfx in FEATURE_SUFFIXES:
            if name.endswith(sfx) and len(name) > len(sfx):
                name, changed = name[: -len(sfx)], True
    return name


def check_not_test_set(data_dir: Path, test_sets: Sequence[str]) -> None:
    """Refuse tuning on a test set: the data dir's recorded role (``DIR/role``, written by the
    corpus preps and kept by extract, subset and combine) is ``test``, or its set name
    (:func:`set_name`) or directory name is one of ``test_sets`` (names, or paths whose last
    component is compared)."""
    if read_role(data_dir) == "test":
        raise W2vtkError(f"--tune on {data_dir}: this data dir is a test set (its 'role' file, written when "
                         f"the corpus was prepared); tune on a dev set and apply the result with --params")
    names = {Path(data_dir).resolve().name, set_name(data_dir)}
    for t in test_sets:
        t = Path(t).name
        if t in names:
            raise W2vtkError(f"--tune on {data_dir}: {t!r} is a test set; tune on a dev set and apply the "
                             f"result with --params (test sets: {', '.join(test_sets)})")


# Files :func:`decode_dir` writes into its out dir (glob patterns; scoring adds per-metric files).
DECODE_OUTPUTS = ("decode.yaml", "emissions.ark", "emissions.scp", "emissions.yaml", "trials.json", "trials.tsv",
                  "best.yaml", "hyp.txt", "nbest.txt", "nbest.tsv", "wer.txt", "alignments*.txt", "score.json",
                  "per_speaker.tsv", "decode.json", "trials.job*.json", "hyps.job*.json", "decode_params.yaml",
                  "emissions.job*.ark", "emissions.job*.scp", "emissions.job*.json")


@dataclass(frozen=True)
class ArrayJob:
    """One array job of a ``--cmd slurm`` decode (hidden CLI options ``--KIND-job K --KIND-jobs N``):
    ``kind`` emissions | trial | decode, ``index`` K (1-based) of ``count`` N."""

    kind: str
    index: int
    count: int


@dataclass
class DecodeResult:
    """What :func:`decode_dir` did: the chosen parameters, rates, timings and files."""

    out_dir: Path
    decoder: str
    params: dict
    wer: float | None
    ler: float | None
    utterances: int
    audio_seconds: float
    search_seconds: float
    wall_seconds: float
    rtf: float
    emissions_rtf: float | None
    trials: list[dict] | None = None
    warnings: list[str] = field(default_factory=list)


def decode_dir(cfg: DecodeConfig, *, am_dir: str | Path, data_dir: str | Path, out_dir: str | Path,
               lang_dir: str | Path | None = None, tune: bool = False, params: str | Path | None = None,
               log: Callable[[str], None] = print, progress_enabled: bool | None = None,
               cmd: CmdConfig | None = None, job: ArrayJob | None = None) -> DecodeResult | None:
    """``w2vtk decode``: emissions (cached), then tuning (``tune``) or one decode, hyp.txt and scoring.

    ``data_dir``: a feature data dir (feats.scp, text). ``lang_dir``: an LM dir (``prep lm``) for
    the lexicon / lexfree decoders. ``params``: a best.yaml whose values override ``cfg.beam``.
    Writes into ``out_dir``: emissions.{ark,scp,yaml}, (tuning) trials.tsv and best.yaml, hyp.txt
    (+ nbest.txt with ``beam.nbest`` > 1), wer.txt / alignments.txt / score.json (w2vtk.scoring),
    decode.json (parameters, rates, real-time factors) and the resolved decode.yaml.

    ``cmd`` slurm: every step is an array of ``cfg.nj`` Slurm jobs (logs ``out_dir/log/KIND.JOB.log``),
    merged here into the files a one-process run writes. The emissions (when not cached): job K
    runs its share of the AM's batches (:func:`w2vtk.decoding.emissions.emission_shards`). With
    ``tune``, the trials: job K takes trials K-1, K-1+N, ...; their rows are merged into trials.json.
    The decode itself (with the tuned or given weights): job K searches one balanced shard of the
    utterances; the hypotheses are merged here, then scored. A rerun keeps the jobs that finished.
    ``job``: run one such array job (it returns None).
    """
    if job is not None:
        return _array_job(cfg, job, Path(am_dir), Path(data_dir), Path(out_dir), lang_dir, params, log)
    t_start = time.perf_counter()
    am_dir, data_dir, out_dir = Path(am_dir), Path(data_dir), Path(out_dir)
    refs = _check_request(cfg, data_dir, lang_dir, tune, params)
    beam = cfg.beam if params is None else dataclasses.replace(cfg.beam, **load_params(params))
    for name in ("beam_size", "nbest"):
        if getattr(beam, name) < 1:
            raise W2vtkError(f"beam.{name} must be >= 1")
    out_dir.mkdir(parents=True, exist_ok=True)
    # temporaries of a killed run are never valid; without this they would stay for ever
    remove_stale_temporaries(out_dir, DECODE_OUTPUTS)
    save_config(cfg, out_dir / "decode.yaml")

    array = cmd is not None and cmd.backend != "local"
    em = load_or_compute_emissions(am_dir, data_dir, out_dir, which=cfg.checkpoint, device=cfg.device,
                                   batch_frames=cfg.batch_frames, log=log, progress_enabled=progress_enabled,
                                   array=_emissions_array(cfg, cmd, am_dir, data_dir, out_dir, lang_dir, log)
                                   if array else None)
    utts, refs_scored, frames, audio_s = _scored_utterances(em, refs, data_dir, log)
    res = None
    if cfg.decoder != "greedy":
        res = LMResources(lang_dir, em.tokens, cfg.decoder)  # validates the LM dir before any worker starts
        for w in res.warnings:
            log(f"warning: {w}")
    warnings, tune_sil = (list(res.warnings), res.has_silence) if res is not None else ([], False)
    nj = cfg.nj if cfg.nj > 0 else max(1, len(os.sched_getaffinity(0)))
    nj = 1 if cfg.decoder == "greedy" else min(nj, cfg.trials if tune else len(utts))
    if array:  # the trials and the search run as array jobs: this process only reads their results
        nj = 1
    job = DecodeJob(cfg.decoder, str(am_dir), str(lang_dir) if lang_dir else None, str(out_dir))
    trial_rows = None
    # with workers, each loads its own LM: free this copy before they start
    local_res, res = (res if nj == 1 else None), None
    if tune and array:
        _tune_array(cfg, cmd, beam, am_dir, data_dir, out_dir, lang_dir, tune_sil, log)
    if tune or not array:
        with DecodePool(job, nj, tokens=em.tokens, mats=em.mats, resources=local_res,
                        transitions=em.provenance.get("asg_transitions")) as pool:
            if tune:
                beam, trial_rows = run_tuning(pool, cfg, beam, utts, refs_scored, out_dir=out_dir, data_dir=data_dir,
                                              lang_dir=lang_dir, tune_sil=tune_sil, log=log,
                                              progress_enabled=progress_enabled)
            if not array:
                with progress(f"decode ({cfg.decoder})", total=sum(frames.values()) * FRAME_SECONDS, unit="audio-s",
                              enabled=progress_enabled) as bar:
                    t0 = time.perf_counter()
                    hyps, search_s = pool.decode(utts, beam, frames,
                                                 on_done=lambda f: bar.advance(f * FRAME_SECONDS))
                    wall_decode = time.perf_counter() - t0
    if array:
        t0 = time.perf_counter()
        hyps, search_s = _decode_array(cfg, cmd, beam, am_dir, data_dir, out_dir, lang_dir, utts, frames, log)
        wall_decode = time.perf_counter() - t0
    write_hyps(out_dir, hyps, beam.nbest)
    return _score_and_report(cfg, data_dir, out_dir, beam, em, utts, audio_s, search_s, wall_decode, t_start,
                             trial_rows, warnings, nj)


def _job_argv(kind: str, n: int, am_dir: Path, data_dir: Path, out_dir: Path, lang_dir, *extra: str) -> list[str]:
    """The ``w2vtk decode`` command of array job ``JOB`` of ``n`` (``kind``: trial | decode), reading
    the resolved config this process saved (decode.yaml), one decoder process each."""
    argv = [sys.executable, "-m", "w2vtk", "decode", "--am", str(am_dir.absolute()), "--data", str(data_dir.absolute()),
            "--out", str(out_dir.absolute()), "--conf", str((out_dir / "decode.yaml").absolute()), "--nj", "1",
            *extra, f"--{kind}-job", "JOB", f"--{kind}-jobs", str(n)]
    return argv + (["--lang", str(Path(lang_dir).absolute())] if lang_dir is not None else [])


def _array_size(cfg: DecodeConfig) -> int:
    """Jobs per array: ``nj``, or 4 when it is 0 (all cores: meaningless for a cluster)."""
    return cfg.nj if cfg.nj > 0 else 4


def _emissions_array(cfg: DecodeConfig, cmd: CmdConfig, am_dir: Path, data_dir: Path, out_dir: Path, lang_dir,
                     log: Callable[[str], None]) -> tuple[int, Callable[[int], None]]:
    """(N, run) for :func:`load_or_compute_emissions`: the AM forward pass as array jobs."""
    def run(n: int) -> None:
        log(f"emissions: {n} {cmd.backend} array jobs; logs {out_dir}/log/emissions.JOB.log")
        run_jobs(cmd, n, out_dir / "log" / "emissions.JOB.log",
                 _job_argv("emissions", n, am_dir, data_dir, out_dir, lang_dir), name="emissions")
    return _array_size(cfg), run


def _array_job(cfg: DecodeConfig, job: ArrayJob, am_dir: Path, data_dir: Path, out_dir: Path, lang_dir, params,
               log: Callable[[str], None]) -> None:
    """Run one array job (see :func:`decode_dir`)."""
    if job.kind == "emissions":
        return emissions_job(am_dir, data_dir, out_dir, job.index, job.count, which=cfg.checkpoint,
                             device=cfg.device, batch_frames=cfg.batch_frames, log=log)
    if job.kind == "trial":
        return _tune_job(cfg, am_dir, data_dir, out_dir, lang_dir, job.index, job.count, log)
    if job.kind == "decode":
        return _decode_job(cfg, am_dir, data_dir, out_dir, lang_dir, params, job.index, job.count, log)
    raise W2vtkError(f"unknown array job kind {job.kind!r}")


def _tune_array(cfg: DecodeConfig, cmd: CmdConfig, beam: BeamConfig, am_dir: Path, data_dir: Path, out_dir: Path,
                lang_dir, tune_sil: bool, log: Callable[[str], None]) -> None:
    """The tuning trials as array jobs, merged into trials.json (see :func:`decode_dir`)."""
    n = min(_array_size(cfg), cfg.trials)
    log(f"tune: {cfg.trials} trials as a {cmd.backend} array of {n} jobs; logs {out_dir}/log/tune.JOB.log")
    run_jobs(cmd, n, out_dir / "log" / "tune.JOB.log", _job_argv("trial", n, am_dir, data_dir, out_dir, lang_dir,
                                                                 "--tune"), name="tune")
    missing = merge_job_trials(cfg, beam, out_dir, lang_dir, tune_sil)
    if missing:
        raise W2vtkError(f"tune: {missing} trials have no result after the array jobs (see {out_dir}/log/tune.*.log)")


def _decode_signature(emissions_sha256: str, beam: BeamConfig, shard: list[str]) -> dict:
    """What a decode job's hyps.job<K>.json must match: the weights, the emissions and the shard."""
    return json.loads(json.dumps({"params": params_of(beam), "emissions_sha256": emissions_sha256, "utts": shard}))


def _decode_array(cfg: DecodeConfig, cmd: CmdConfig, beam: BeamConfig, am_dir: Path, data_dir: Path, out_dir: Path,
                  lang_dir, utts: list[str], frames: dict[str, int],
                  log: Callable[[str], None]) -> tuple[dict[str, list[Hypothesis]], float]:
    """The search as array jobs, one balanced shard of the utterances each (see :func:`decode_dir`);
    returns the merged hypotheses and the jobs' summed search seconds."""
    shards = balanced_shards(utts, frames, _array_size(cfg))
    n = len(shards)
    atomic_write_text(out_dir / "decode_params.yaml", yaml.safe_dump({"params": params_of(beam)}, sort_keys=False))
    argv = _job_argv("decode", n, am_dir, data_dir, out_dir, lang_dir, "--params",
                     str((out_dir / "decode_params.yaml").absolute()))
    log(f"decode: {len(utts)} utterances as a {cmd.backend} array of {n} jobs; logs {out_dir}/log/decode.JOB.log")
    run_jobs(cmd, n, out_dir / "log" / "decode.JOB.log", argv, name="decode")
    emissions_sha256 = sha256_file(out_dir / "emissions.ark")
    hyps: dict[str, list[Hypothesis]] = {}
    secs = 0.0
    for k, shard in enumerate(shards, start=1):
        path = out_dir / f"hyps.job{k}.json"
        data = read_json_record(path)
        if data.get("signature") != _decode_signature(emissions_sha256, beam, shard):
            raise W2vtkError(f"decode job {k}: {path} is missing or from another decode (see {out_dir}/log/decode.{k}.log)")
        hyps.update({u: [Hypothesis(*h) for h in hs] for u, hs in data["hyps"].items()})
        secs += float(data["search_s"])
    for path in out_dir.glob("hyps.job*.json"):
        path.unlink()
    return hyps, secs


def _job_setup(cfg: DecodeConfig, am_dir: Path, data_dir: Path, out_dir: Path, lang_dir, params, job: int,
               num_jobs: int, kind: str, log: Callable[[str], None]):
    """What every search job of a decode reads: the checks, the cached emissions (never computed
    here: the parent did) and the scored utterances. Returns (emissions, utts, refs, frames)."""
    if not 1 <= job <= num_jobs:
        raise W2vtkError(f"--{kind}-job {job}: must be 1..{num_jobs} (--{kind}-jobs)")
    if not (out_dir / "emissions.yaml").is_file():
        raise W2vtkError(f"--{kind}-job {job}: {out_dir} has no emissions cache; array jobs are started by "
                         f"`w2vtk decode --cmd slurm`")
    refs = _check_request(cfg, data_dir, lang_dir, kind == "trial", params)
    em = load_or_compute_emissions(am_dir, data_dir, out_dir, which=cfg.checkpoint, device=cfg.device,
                                   batch_frames=cfg.batch_frames, log=log, progress_enabled=False)
    utts, refs_scored, frames, _ = _scored_utterances(em, refs, data_dir, log)
    return em, utts, refs_scored, frames


def _job_pool(cfg: DecodeConfig, em: Emissions, am_dir: Path, out_dir: Path, lang_dir):
    """A search job's one-process pool and its LM resources (None for greedy); the LM is loaded here,
    once the job knows it has work."""
    res = LMResources(lang_dir, em.tokens, cfg.decoder) if cfg.decoder != "greedy" else None
    spec = DecodeJob(cfg.decoder, str(am_dir), str(lang_dir) if lang_dir else None, str(out_dir))
    return DecodePool(spec, 1, tokens=em.tokens, mats=em.mats, resources=res,
                      transitions=em.provenance.get("asg_transitions")), res


def _decode_job(cfg: DecodeConfig, am_dir: Path, data_dir: Path, out_dir: Path, lang_dir, params, job: int,
                num_jobs: int, log: Callable[[str], None]) -> None:
    """One array job of :func:`_decode_array`: shard ``job`` of the utterances, unless a finished
    run of it (same weights, emissions and utterances) is there already."""
    beam = cfg.beam if params is None else dataclasses.replace(cfg.beam, **load_params(params))
    em, utts, _, frames = _job_setup(cfg, am_dir, data_dir, out_dir, lang_dir, params, job, num_jobs, "decode", log)
    shards = balanced_shards(utts, frames, num_jobs)
    if job > len(shards):
        raise W2vtkError(f"--decode-job {job}: only {len(shards)} shards for {len(utts)} utterances")
    shard = shards[job - 1]
    path = out_dir / f"hyps.job{job}.json"
    signature = _decode_signature(sha256_file(out_dir / "emissions.ark"), beam, shard)
    if read_json_record(path).get("signature") == signature:
        log(f"decode job {job} of {num_jobs}: already done ({path})")
        return None
    pool, _ = _job_pool(cfg, em, am_dir, out_dir, lang_dir)
    with pool:
        hyps, secs = pool.decode(shard, beam, frames)
    rows = {u: [[h.words, h.tokens, h.score, h.am_score, h.lm_score] for h in hs] for u, hs in hyps.items()}
    atomic_write_text(path, json.dumps({"signature": signature, "hyps": rows, "search_s": secs}) + "\n")
    log(f"decode job {job} of {num_jobs}: {len(shard)} utterances, {sum(frames[u] for u in shard) * FRAME_SECONDS:.1f} "
        f"audio-s, search {secs:.1f} s")
    return None


def _tune_job(cfg: DecodeConfig, am_dir: Path, data_dir: Path, out_dir: Path, lang_dir, job: int, num_jobs: int,
              log: Callable[[str], None]) -> None:
    """One array job of :func:`_tune_array`: its share of the trials on the cached emissions."""
    if cfg.decoder == "greedy" or lang_dir is None:
        raise W2vtkError("--trial-job: tuning needs the lexicon or lexfree decoder and --lang")
    em, utts, refs_scored, _ = _job_setup(cfg, am_dir, data_dir, out_dir, lang_dir, None, job, num_jobs, "trial", log)
    pool, res = _job_pool(cfg, em, am_dir, out_dir, lang_dir)
    with pool:
        tune_job(pool, cfg, cfg.beam, utts, refs_scored, out_dir=out_dir, lang_dir=lang_dir,
                 tune_sil=res.has_silence, job=job, num_jobs=num_jobs, log=log)
    return None


def _check_request(cfg: DecodeConfig, data_dir: Path, lang_dir, tune: bool, params) -> dict[str, str]:
    """The request's one-line errors, before anything is written; returns the reference transcripts."""
    if tune and params is not None:
        raise W2vtkError("--tune and --params exclude each other (tune on dev, then apply with --params)")
    if tune and cfg.decoder == "greedy":
        raise W2vtkError("--tune needs an LM decoder (lexicon or lexfree); greedy has nothing to tune")
    if tune:
        check_not_test_set(data_dir, cfg.test_sets)
    if cfg.decoder != "greedy" and lang_dir is None:
        raise W2vtkError(f"the {cfg.decoder} decoder needs --lang (an LM dir from `w2vtk prep lm`)")
    if not data_dir.is_dir():
        raise W2vtkError(f"{data_dir}: data dir not found")
    if not (data_dir / "text").is_file():
        raise W2vtkError(f"{data_dir}: no text file (decode scores against it)")
    refs = read_transcripts(data_dir / "text")
    if not refs:
        raise W2vtkError(f"{data_dir}/text: no utterances (empty set)")
    if tune and not any(t.strip() for t in refs.values()):
        raise W2vtkError(f"{data_dir}/text: every transcript is empty; nothing to tune on")
    return refs


def _scored_utterances(em: Emissions, refs: dict[str, str], data_dir: Path, log: Callable[[str], None]):
    """(utterances with emissions and a transcript, their references, emission frames, audio seconds)."""
    utts = sorted(u for u in em.mats if u in refs)
    missing = sorted(set(refs) - set(em.mats))
    if not utts:
        raise W2vtkError(f"{data_dir}: no utterance has both features and a transcript")
    if missing:
        log(f"warning: {len(missing)} utterance(s) of {data_dir}/text have no features and score as empty")
    frames = {u: em.mats[u].shape[0] for u in utts}
    audio_s = FRAME_SECONDS * sum(em.input_frames.get(u, frames[u]) for u in utts)
    return utts, {u: refs[u] for u in utts}, frames, audio_s


def _score_and_report(cfg: DecodeConfig, data_dir: Path, out_dir: Path, beam: BeamConfig, em: Emissions,
                      utts: list[str], audio_s: float, search_s: float, wall_decode: float, t_start: float,
                      trial_rows: list[dict] | None, warnings: list[str], nj: int) -> DecodeResult:
    """Score hyp.txt against the data dir's text and write decode.json."""
    result = score_files(data_dir / "text", out_dir / "hyp.txt", cfg.metrics, out_dir=out_dir,
                         case_fold=cfg.case_fold, check_tokens=False)
    wer = result.metrics["wer"].counts.rate if "wer" in result.metrics else None
    ler = result.metrics["ler"].counts.rate if "ler" in result.metrics else None
    rtf = wall_decode / audio_s if audio_s else float("nan")
    out = DecodeResult(out_dir=out_dir, decoder=cfg.decoder, params=params_of(beam), wer=wer, ler=ler,
                       utterances=len(utts), audio_seconds=round(audio_s, 3),
                       search_seconds=round(search_s, 3), wall_seconds=round(time.perf_counter() - t_start, 3),
                       rtf=round(rtf, 6), emissions_rtf=em.provenance.get("rtf"), trials=trial_rows,
                       warnings=warnings)
    summary = dataclasses.asdict(out)
    summary["out_dir"] = str(out_dir)
    summary["lines"] = result.lines()
    summary["nj"] = nj
    summary["search_rtf_per_process"] = round(search_s / audio_s, 6) if audio_s else None
    atomic_write_text(out_dir / "decode.json", json.dumps(summary, indent=2) + "\n")
    return out


def write_hyps(out_dir: Path, hyps: dict[str, list[Hypothesis]], nbest: int) -> None:
    lines = []
    for u in sorted(hyps):
        words = " ".join(hyps[u][0].words)
        lines.append(f"{u} {words}".rstrip())
    atomic_write_text(out_dir / "hyp.txt", "\n".join(lines) + "\n")
    if nbest > 1:
        nb, tsv = [], ["utt\trank\tscore\tam_score\tlm_score\twords"]
        for u in sorted(hyps):
            for k, h in enumerate(hyps[u], start=1):
                nb.append(f"{u}-{k} {' '.join(h.words)}".rstrip())
                tsv.append(f"{u}\t{k}\t{h.score:.4f}\t{h.am_score:.4f}\t{h.lm_score:.4f}\t{' '.join(h.words)}")
        atomic_write_text(out_dir / "nbest.txt", "\n".join(nb) + "\n")
        atomic_write_text(out_dir / "nbest.tsv", "\n".join(tsv) + "\n")
