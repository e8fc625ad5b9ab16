"""Parameter search on a dev set (``w2vtk decode --tune``): trial configurations, resumable trials
(``trials.json``), ``trials.tsv``, the winner in ``best.yaml`` and reading it back (``--params``).

Random search (seeded) or a grid over alpha = lm_weight in [0, 5], beta = word_score in [-5, 5],
gamma = sil_score in [-8, 0] (fairseq's sweep ranges; see :class:`SearchRanges`), each trial
decoding the whole dev set; the trial with the lowest WER (then LER, then the smaller lm_weight)
wins.  The tuning set must not be a test set (:func:`w2vtk.decoding.run.check_not_test_set`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from w2vtk import faults
from w2vtk.config import from_dict, read_yaml_file, to_dict
from w2vtk.decoding.config import BeamConfig, DecodeConfig, SearchRanges
from w2vtk.decoding.pool import DecodePool
from w2vtk.decoding.search import error_rates
from w2vtk.errors import W2vtkError
from w2vtk.io import atomic_write_text, sha256_file
from w2vtk.progress import progress


def sample_trials(ranges: SearchRanges, trials: int, search: str, seed: int, base: BeamConfig,
                  tune_word_score: bool = True, tune_sil: bool = True) -> list[BeamConfig]:
    """Trial configurations.  ``random`` draws each tuned parameter uniformly in its range (seeded);
    ``grid`` takes k evenly spaced values per tuned parameter, k the largest with k^d <= trials
    (d tuned parameters).  A parameter whose range is one point (low == high) is fixed there; one
    not tuned (word_score for lexfree, sil_score without a silence token) keeps ``base``'s value."""
    if trials < 1:
        raise W2vtkError(f"--trials must be >= 1, got {trials}")
    names = ["lm_weight"] + (["word_score"] if tune_word_score else []) + (["sil_score"] if tune_sil else [])
    fixed: dict[str, float] = {}
    for n in list(names):
        lo, hi = getattr(ranges, n)
        if lo > hi:
            raise W2vtkError(f"ranges.{n}: low {lo} > high {hi}")
        if lo == hi:
            fixed[n] = float(lo)
            names.remove(n)
    points: list[dict[str, float]] = []
    if not names:
        points = [dict(fixed)]
    elif search == "grid":
        k = max(1, int(math.floor(trials ** (1.0 / len(names)) + 1e-9)))
        axes = [np.linspace(*getattr(ranges, n), k) if k > 1 else np.array([np.mean(getattr(ranges, n))])
                for n in names]
        for combo in np.array(np.meshgrid(*axes, indexing="ij")).reshape(len(names), -1).T:
            points.append({**fixed, **{n: float(round(v, 6)) for n, v in zip(names, combo)}})
    elif search == "random":
        rng = np.random.default_rng(seed)
        for _ in range(trials):
            points.append({**fixed, **{n: float(round(rng.uniform(*getattr(ranges, n)), 4)) for n in names}})
    else:
        raise W2vtkError(f"search must be random or grid, not {search!r}")
    return [dataclasses.replace(base, nbest=1, **p) for p in points]


def params_of(beam: BeamConfig) -> dict:
    d = dataclasses.asdict(beam)
    if math.isinf(d["unk_score"]):
        d["unk_score"] = "-inf"
    return d


def load_params(path: str | Path) -> dict:
    """best.yaml -> {"lm_weight", "word_score", "sil_score"} (its ``params`` mapping; a plain mapping of
    :class:`BeamConfig` keys is read as it is).  The tuned values only: the beam used while tuning is
    recorded under ``beam`` but not applied, so a wider beam can be applied to the test set."""
    path = Path(path)
    if not path.is_file():
        raise W2vtkError(f"--params {path}: no such file")
    data = read_yaml_file(path, "--params file") or {}
    params = data.get("params", data) if isinstance(data, dict) else None
    if not isinstance(params, dict):
        raise W2vtkError(f"--params {path}: expected a mapping")
    known = {f.name for f in dataclasses.fields(BeamConfig)}
    unknown = sorted((k for k in params if k not in known), key=str)
    if unknown:
        raise W2vtkError(f"--params {path}: unknown key(s) {', '.join(map(str, unknown))}")
    # the types of every value checked as the config loader does (a string "-inf" is a float)
    checked = from_dict(BeamConfig, {**to_dict(BeamConfig()), **params}, where=f"--params {path}")
    return {k: getattr(checked, k) for k in params}


def resume_trials(path: Path, signature: dict, n: int, log: Callable[[str], None]) -> list:
    """Rows of an interrupted identical search (None for trials still to run)."""
    rows: list = [None] * n
    if not path.is_file():
        return rows
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return rows
    if data.get("signature") != json.loads(json.dumps(signature)):
        return rows
    for r in data.get("rows", []):
        if isinstance(r, dict) and 0 <= r.get("trial", -1) < n:
            rows[r["trial"]] = r
    done = sum(r is not None for r in rows)
    if done:
        log(f"tune: resuming, {done} of {n} trials already done ({path})")
    return rows


def write_trials(path: Path, rows: list[dict]) -> None:
    cols = ["trial", "lm_weight", "word_score", "sil_score", "wer", "ler", "seconds"]
    lines = ["\t".join(cols)]
    for r in sorted(rows, key=lambda r: r["trial"]):
        lines.append("\t".join(str(r[c]) for c in cols))
    atomic_write_text(path, "\n".join(lines) + "\n")


def best_table(rows: list[dict], k: int = 5):
    """A rich Table of the ``k`` best trials (lowest WER, then LER)."""
    from rich.table import Table

    table = Table(title=f"best {min(k, len(rows))} of {len(rows)} trials")
    for col in ("trial", "lm_weight (alpha)", "word_score (beta)", "sil_score (gamma)", "WER %", "LER %"):
        table.add_column(col, justify="right")
    for r in sorted(rows, key=lambda r: (r["wer"], r["ler"] or 0, r["lm_weight"]))[:k]:
        table.add_row(str(r["trial"]), f"{r['lm_weight']:.3f}", f"{r['word_score']:.3f}", f"{r['sil_score']:.3f}",
                      f"{r['wer']:.2f}", "-" if r["ler"] is None else f"{r['ler']:.2f}")
    return table


def trial_plan(cfg: DecodeConfig, beam: BeamConfig, out_dir: Path, lang_dir: str | Path,
               tune_sil: bool) -> tuple[list[BeamConfig], dict]:
    """The search's trials and its signature (what a resumed or shared search must match)."""
    beams = sample_trials(cfg.ranges, cfg.trials, cfg.search, cfg.seed, beam,
                          tune_word_score=cfg.decoder == "lexicon", tune_sil=tune_sil)
    signature = {"decoder": cfg.decoder, "lang": str(Path(lang_dir).resolve()),
                 "emissions_sha256": sha256_file(out_dir / "emissions.ark"),
                 "trials": [params_of(b) for b in beams], "case_fold": cfg.case_fold}
    return beams, signature


def _trial_row(i: int, b: BeamConfig, rates: dict, secs: float) -> dict:
    return {"trial": i, "lm_weight": b.lm_weight, "word_score": b.word_score, "sil_score": b.sil_score,
            "wer": rates["wer"], "ler": rates["ler"], "seconds": round(secs, 3)}


def job_trials_path(out_dir: Path, job: int) -> Path:
    return out_dir / f"trials.job{job}.json"


def tune_job(pool: DecodePool, cfg: DecodeConfig, beam: BeamConfig, utts: list[str], refs: dict[str, str], *,
             out_dir: Path, lang_dir: str | Path, tune_sil: bool, job: int, num_jobs: int,
             log: Callable[[str], None]) -> int:
    """Array job ``job`` of ``num_jobs`` (``decode --tune --cmd slurm``): trials job-1, job-1+N, ...
    not yet done (in trials.json or this job's own trials.job<K>.json), each row written to that file
    as it finishes; returns the number of trials run. The parent merges the files."""
    beams, signature = trial_plan(cfg, beam, out_dir, lang_dir, tune_sil)
    path = job_trials_path(out_dir, job)
    rows = merge_rows(resume_trials(out_dir / "trials.json", signature, len(beams), lambda m: None),
                      resume_trials(path, signature, len(beams), lambda m: None))
    mine = [i for i in range(job - 1, len(beams), num_jobs)]
    todo = [i for i in mine if rows[i] is None]
    log(f"tune job {job} of {num_jobs}: {len(mine)} trials, {len(mine) - len(todo)} already done")

    def done(k: int, hyps: dict, secs: float) -> None:
        i = todo[k]
        rows[i] = _trial_row(i, beams[i], error_rates(refs, hyps, cfg.case_fold), secs)
        atomic_write_text(path, json.dumps({"signature": signature, "rows": [rows[j] for j in mine if rows[j]]},
                                           indent=1) + "\n")
        faults.hit("decode_trial", path)
        log(f"trial {i}: lm_weight {rows[i]['lm_weight']:.4g}, word_score {rows[i]['word_score']:.4g}, "
            f"sil_score {rows[i]['sil_score']:.4g}: WER {rows[i]['wer']:.2f} ({secs:.1f} s)")
    pool.trials([beams[i] for i in todo], utts, done)
    return len(todo)


def merge_rows(*sources: list) -> list:
    """Trial rows from several resumed lists (the first that has a trial wins)."""
    out = list(sources[0])
    for rows in sources[1:]:
        for i, r in enumerate(rows):
            if out[i] is None and r is not None:
                out[i] = r
    return out


def merge_job_trials(cfg: DecodeConfig, beam: BeamConfig, out_dir: Path, lang_dir: str | Path,
                     tune_sil: bool) -> int:
    """Fold the array jobs' trials.job<K>.json into trials.json (then remove them); returns the
    number of trials still missing."""
    beams, signature = trial_plan(cfg, beam, out_dir, lang_dir, tune_sil)
    quiet = lambda m: None  # noqa: E731
    rows = resume_trials(out_dir / "trials.json", signature, len(beams), quiet)
    # every job file, also those of an earlier array of another size (same signature: still valid)
    paths = sorted(out_dir.glob("trials.job*.json"))
    rows = merge_rows(rows, *(resume_trials(p, signature, len(beams), quiet) for p in paths))
    if any(r is not None for r in rows):
        atomic_write_text(out_dir / "trials.json", json.dumps({"signature": signature, "rows": rows}, indent=1)
                          + "\n")
    for p in paths:
        p.unlink(missing_ok=True)
    return sum(r is None for r in rows)


def tune(pool: DecodePool, cfg: DecodeConfig, beam: BeamConfig, utts: list[str], refs: dict[str, str], *,
         out_dir: Path, data_dir: Path, lang_dir: str | Path, tune_sil: bool, log: Callable[[str], None],
         progress_enabled: bool | None = None) -> tuple[BeamConfig, list[dict]]:
    """Run ``cfg.trials`` trials of ``cfg.search`` on ``utts`` and write trials.tsv and best.yaml;
    returns ``beam`` with the winning weights and every trial's row.

    Finished trials are kept (trials.json, rewritten after each one): a rerun of the same search on
    the same emissions and LM resumes instead of starting over."""
    beams, signature = trial_plan(cfg, beam, out_dir, lang_dir, tune_sil)
    rows = resume_trials(out_dir / "trials.json", signature, len(beams), log)
    todo = [i for i, r in enumerate(rows) if r is None]
    with progress("tune", total=len(beams), unit="trial", enabled=progress_enabled) as bar:
        bar.advance(len(beams) - len(todo))

        def done(i: int, hyps: dict, secs: float) -> None:
            rows[todo[i]] = _trial_row(todo[i], beams[todo[i]], error_rates(refs, hyps, cfg.case_fold), secs)
            atomic_write_text(out_dir / "trials.json", json.dumps({"signature": signature, "rows": rows}, indent=1)
                              + "\n")
            faults.hit("decode_trial", out_dir / "trials.json")
            bar.advance(1)
            bar.update(info=f"best WER {min(r['wer'] for r in rows if r):.2f}")
        pool.trials([beams[i] for i in todo], utts, done)
    write_trials(out_dir / "trials.tsv", rows)
    best = min(rows, key=lambda r: (r["wer"], r["ler"] if r["ler"] is not None else 0, r["lm_weight"], r["trial"]))
    beam = dataclasses.replace(beam, lm_weight=best["lm_weight"], word_score=best["word_score"],
                               sil_score=best["sil_score"])
    atomic_write_text(out_dir / "best.yaml", yaml.safe_dump(
        {"params": {"lm_weight": best["lm_weight"], "word_score": best["word_score"], "sil_score": best["sil_score"]},
         "beam": params_of(beam), "decoder": cfg.decoder, "tuned_on": str(data_dir), "lang": str(lang_dir),
         "trials": len(beams), "search": cfg.search, "seed": cfg.seed, "wer": best["wer"], "ler": best["ler"],
         "trial": best["trial"]}, sort_keys=False))
    return beam, rows
