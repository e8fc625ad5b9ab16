"""Collect a recipe's scores into one results table (stage 6 of recipes/*/run.sh).

A recipe decodes every evaluation set with two acoustic models, one on log-mel features
(``EXP/am_fbank``) and one on wav2vec features (``EXP/am_w2v``), and scores each decode
directory with ``w2vtk score`` (``score.json``).  This module reads those files and writes

- ``EXP/results.json``: ``{"logmel": {"<set>": {"wer": 5.6, "ler": 2.2}}, "wav2vec": {...}}``,
  error rates in percent (``per`` for TIMIT), keys the data-dir set names;
- ``EXP/RESULTS.md``: the same as a markdown table, with the command line, the decode
  directories and the machine;

and prints the table with rich.  Run it as ``python -m w2vtk.results --exp EXP --sets dev test
--metrics per``.

With ``--seeds 1 2 3`` (the recipe's ``--am-seeds``) every system has one AM per seed,
``EXP/am_fbank_s1``, ...; each set's entry then holds the mean over seeds (``wer``), its range
(``wer_min``, ``wer_max``) and every seed's figures (``seeds``: ``{"1": {"wer": ...}}``).

The mini recipe's study curves (stage 7) are :mod:`w2vtk.curves`; their RESULTS.md section, between
:data:`CURVES_BEGIN` and :data:`CURVES_END`, is kept when this module rewrites the file.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from w2vtk import __version__
from w2vtk.errors import W2vtkError
from w2vtk.io import atomic_write_text
from w2vtk.progress import LoggedConsole

# results.json key -> acoustic-model directory under EXP, in table order.
SYSTEMS = {"logmel": "am_fbank", "wav2vec": "am_w2v"}
METRICS = ("wer", "ler", "per")
# The study curves: curves.json key -> (PNG file name, x-axis label).
# RESULTS.md keeps the curves section (stage 7) between these lines when stage 6 rewrites the file.
CURVES_BEGIN = "<!-- w2vtk curves: begin -->"
CURVES_END = "<!-- w2vtk curves: end -->"
# One colour per system in every plot, so that wav2vec looks the same on both curves.


def am_dir_name(system: str, seed: int | None = None) -> str:
    """The AM directory of ``system`` under EXP: ``am_fbank``, or ``am_fbank_s<seed>`` with seeds."""
    return SYSTEMS[system] if seed is None else f"{SYSTEMS[system]}_s{seed}"


def decode_dir(exp: Path, system: str, set_name: str, seed: int | None = None) -> Path:
    """Where stage 5 decodes ``set_name`` with the AM of ``system`` ("logmel" or "wav2vec")."""
    return exp / am_dir_name(system, seed) / f"decode_{set_name}"


def choose_systems(systems: list[str] | None) -> list[str]:
    chosen = list(SYSTEMS) if systems is None else [s for s in SYSTEMS if s in systems]
    unknown = [s for s in (systems or []) if s not in SYSTEMS]
    if unknown or not chosen:
        raise W2vtkError(f"results: systems must be among {', '.join(SYSTEMS)}, not {' '.join(systems or [])!r}")
    return chosen


def check_metrics(metrics: list[str]) -> None:
    for metric in metrics:
        if metric not in METRICS:
            raise W2vtkError(f"results: unknown metric {metric!r} (expected one of {', '.join(METRICS)})")


def check_seeds(seeds: Iterable[int]) -> list[int]:
    """The AM seeds as given (non-negative integers, none twice); raises W2vtkError otherwise."""
    out: list[int] = []
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise W2vtkError(f"results: seed {seed!r} is not a non-negative integer")
        if seed in out:
            raise W2vtkError(f"results: seed {seed} is given twice")
        out.append(seed)
    if not out:
        raise W2vtkError("results: no seeds given")
    return out


def scored_metrics(path: Path) -> dict:
    """The ``metrics`` mapping of one ``score.json``; W2vtkError naming the file when it is missing
    or malformed."""
    if not path.is_file():
        raise W2vtkError(f"results: {path} is missing (made by stage 5 decode / stage 6 score)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        scored = data["metrics"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as err:
        # RecursionError: deeply nested JSON ("[" * 10**5)
        raise W2vtkError(f"results: {path} is not a w2vtk score.json "
                         f"({' '.join(str(err).split())[:120]})") from None
    if not isinstance(scored, dict):
        raise W2vtkError(f"results: {path} is not a w2vtk score.json ('metrics' is not a mapping)")
    return scored


def read_score(path: Path, metrics: list[str]) -> dict[str, float]:
    """The unrounded rates (percent) of ``metrics`` in one ``score.json``; W2vtkError naming the
    file when it is missing, malformed or lacks a metric."""
    scored = scored_metrics(path)
    row = {}
    for metric in metrics:
        entry = scored.get(metric)
        rate = entry.get("rate") if isinstance(entry, dict) else None
        if rate is None:
            raise W2vtkError(f"results: {path} has no {metric} rate (score with --{metric})")
        finite = isinstance(rate, (int, float)) and not isinstance(rate, bool) \
            and abs(rate) < 1e300 and math.isfinite(rate)  # abs first: 10**400 overflows float()
        if not finite:
            raise W2vtkError(f"results: {path}: {metric} rate is not a finite number: "
                             f"{str(rate)[:40]}")
        row[metric] = float(rate)
    return row


def summarize_seeds(per_seed: dict[int, dict[str, float]], metrics: list[str]) -> dict:
    """Mean, min and max over seeds of each metric (percent, 2 decimals) and every seed's figures.

    The mean is taken over the unrounded rates, so it may differ in the last decimal from the mean
    of the rounded per-seed figures.  Keys, in order: each metric (the mean), then ``<metric>_min``
    and ``<metric>_max`` for each metric, then ``seeds`` = ``{"<seed>": {metric: rate}}``.
    """
    row: dict = {}
    for metric in metrics:
        values = [scores[metric] for scores in per_seed.values()]
        row[metric] = round(math.fsum(values) / len(values), 2)
    for metric in metrics:
        values = [scores[metric] for scores in per_seed.values()]
        row[f"{metric}_min"] = round(min(values), 2)
        row[f"{metric}_max"] = round(max(values), 2)
    row["seeds"] = {str(seed): {m: round(scores[m], 2) for m in metrics} for seed, scores in per_seed.items()}
    return row


def collect_results(exp: str | Path, sets: list[str], metrics: list[str],
                    systems: list[str] | None = None,
                    seeds: list[int] | None = None) -> dict[str, dict[str, dict]]:
    """Read ``score.json`` of every (system, set[, seed]) decode directory.

    Returns ``{system: {set: {metric: percent}}}`` for ``systems`` (default: all of
    :data:`SYSTEMS`, in its order); with ``seeds``, each set's entry is that of
    :func:`summarize_seeds` over ``am_<feat>_s<seed>/decode_<set>/score.json``.  Raises
    W2vtkError naming the first missing or incomplete score file.
    """
    exp = Path(exp)
    if not sets:
        raise W2vtkError("results: no sets given")
    chosen = choose_systems(systems)
    check_metrics(metrics)
    seed_list = check_seeds(seeds) if seeds is not None else None
    results: dict[str, dict[str, dict]] = {}
    for system in chosen:
        per_set: dict[str, dict] = {}
        for set_name in sets:
            if seed_list is None:
                rates = read_score(decode_dir(exp, system, set_name) / "score.json", metrics)
                per_set[set_name] = {m: round(r, 2) for m, r in rates.items()}
            else:
                per_seed = {seed: read_score(decode_dir(exp, system, set_name, seed) / "score.json", metrics)
                            for seed in seed_list}
                per_set[set_name] = summarize_seeds(per_seed, metrics)
        results[system] = per_set
    return results


def _seeded(results: dict) -> bool:
    return any("seeds" in row for per_set in results.values() for row in per_set.values())


def cell(row: dict, metric: str) -> str:
    """``12.34``, or ``12.34 (10.00-15.00)`` (mean and range over seeds)."""
    if "seeds" in row:
        return f"{row[metric]:.2f} ({row[metric + '_min']:.2f}-{row[metric + '_max']:.2f})"
    return f"{row[metric]:.2f}"


def _seed_names(results: dict) -> list[str]:
    for per_set in results.values():
        for row in per_set.values():
            return list(row.get("seeds", {}))
    return []


def markdown_table(results: dict[str, dict[str, dict]], sets: list[str], metrics: list[str]) -> str:
    """One row per set, one column per (metric, system), e.g. ``| dev | 20.1 | 15.3 |``; with seeds
    each cell is ``mean (min-max)``."""
    head = ["set"] + [f"{m.upper()} {system}" for m in metrics for system in results]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for set_name in sets:
        cells = [set_name] + [cell(results[system][set_name], m) for m in metrics for system in results]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def seeds_table(results: dict[str, dict[str, dict]], sets: list[str], metrics: list[str]) -> str:
    """Every seed's figures: one row per (set, seed), one column per (metric, system)."""
    head = ["set", "seed"] + [f"{m.upper()} {system}" for m in metrics for system in results]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---", "---:"] + ["---:"] * (len(head) - 2)) + "|"]
    for set_name in sets:
        for seed in _seed_names(results):
            cells = [set_name, seed] + [f"{results[system][set_name]['seeds'][seed][m]:.2f}"
                                        for m in metrics for system in results]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        import torch

        gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        torch_version = torch.__version__
    except Exception:  # torch missing or CUDA broken: the table still gets written
        gpus, torch_version = [], "unknown"
    gpu = f"{len(gpus)} x {gpus[0]}" if gpus else "no GPU"
    return (f"{platform.node()}: {os.cpu_count()} CPU cores ({cpu}), {gpu}, "
            f"Python {platform.python_version()}, torch {torch_version}")


def _curves_section(md_path: Path) -> str | None:
    """The curves section (markers included) of an existing RESULTS.md, or None."""
    try:
        text = md_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    start, end = text.find(CURVES_BEGIN), text.find(CURVES_END)
    if start < 0 or end < start:
        return None
    return text[start:end + len(CURVES_END)] + "\n"


def with_section(text: str, section: str) -> str:
    """``text`` with its curves section replaced by ``section`` (else put before ## Provenance)."""
    start, end = text.find(CURVES_BEGIN), text.find(CURVES_END)
    if start >= 0 and end >= start:
        rest = text[end + len(CURVES_END):].lstrip("\n")
        return text[:start] + section + ("\n" + rest if rest else "")
    at = text.find("\n## Provenance")
    if at < 0:
        return text + ("\n" if text and not text.endswith("\n\n") else "") + section
    return text[:at + 1] + section + text[at:]


def write_results(exp: str | Path, results: dict, sets: list[str], metrics: list[str], *,
                  title: str = "Results", command: str | None = None) -> tuple[Path, Path]:
    """Write ``EXP/results.json`` and ``EXP/RESULTS.md`` (atomically); returns their paths.

    A curves section that stage 7 put in an existing RESULTS.md is kept.
    """
    exp = Path(exp)
    json_path, md_path = exp / "results.json", exp / "RESULTS.md"
    atomic_write_text(json_path, json.dumps(results, indent=2, sort_keys=False) + "\n")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    seeded = _seeded(results)
    if not seeded:
        parts = [f"# {title}\n", "\nError rates in percent (" + ", ".join(m.upper() for m in metrics) +
                 "); log-mel = AM on 80 log-mel features (`am_fbank`), wav2vec = AM on wav2vec "
                 "features (`am_w2v`; the layer is in its feats.yaml, `c` by default).\n\n",
                 markdown_table(results, sets, metrics)]
    else:
        seeds = _seed_names(results)
        parts = [f"# {title}\n", "\nError rates in percent (" + ", ".join(m.upper() for m in metrics) +
                 f"): mean over {len(seeds)} AM seeds ({', '.join(seeds)}), (min-max) over them; "
                 "log-mel = AMs on 80 log-mel features (`am_fbank_s<seed>`), wav2vec = AMs on wav2vec "
                 "features (`am_w2v_s<seed>`; the layer is in their feats.yaml, `c` by default). "
                 "The decoder is tuned once per system, on the first seed's AM.\n\n",
                 markdown_table(results, sets, metrics), "\n### Every seed\n\n",
                 seeds_table(results, sets, metrics)]
    section = _curves_section(md_path)
    if section:
        parts.append("\n" + section)
    parts += ["\n## Provenance\n\n", f"- made {stamp} by w2vtk {__version__}\n",
              f"- machine: {_machine()}\n",
              "- plots (training curves, decoder tuning, results): [report/index.html](report/index.html) "
              "(`w2vtk report`)\n"]
    if command:
        parts.append(f"- command: `{command}`\n")
    if not seeded:
        parts.append("- scores: " + ", ".join(f"`{decode_dir(exp, s, n).relative_to(exp)}/score.json`"
                                             for s in results for n in sets) + "\n")
    else:
        parts.append("- scores: " + ", ".join(f"`{SYSTEMS[s]}_s<seed>/decode_{n}/score.json`"
                                             for s in results for n in sets)
                     + f" for seed in {', '.join(_seed_names(results))}\n")
    atomic_write_text(md_path, "".join(parts))
    return json_path, md_path


def rich_table(title: str, head: list[str], rows: list[list[str]], left: int = 1):
    from rich.table import Table

    table = Table(title=title)
    for i, name in enumerate(head):
        table.add_column(name, justify="left" if i < left else "right")
    for row in rows:
        table.add_row(*row)
    return table


def print_table(results: dict, sets: list[str], metrics: list[str], title: str) -> None:
    head = ["set"] + [f"{m.upper()} {system}" for m in metrics for system in results]
    rows = [[set_name] + [cell(results[system][set_name], m) for m in metrics for system in results]
            for set_name in sets]
    console = LoggedConsole()
    if _seeded(results):
        console.print(rich_table(f"{title}: mean (min-max) over AM seeds", head, rows))
        rows = [[set_name, seed] + [f"{results[system][set_name]['seeds'][seed][m]:.2f}"
                                    for m in metrics for system in results]
                for set_name in sets for seed in _seed_names(results)]
        console.print(rich_table(f"{title}: every seed", ["set", "seed"] + head[1:], rows, left=2))
    else:
        console.print(rich_table(title, head, rows))


def discover(exp: str | Path) -> dict:
    """What a recipe's exp dir holds, for ``w2vtk results EXP`` without options: the systems whose
    AM dirs exist (``am_fbank``, ``am_w2v`` or their ``_s<seed>`` forms), the AM seeds common to
    them (None without seeds), the sets decoded and scored by every one of them (``decode_<set>/
    score.json``) and the metrics their score.json files share."""
    exp = Path(exp)
    systems, seed_sets = [], []
    for system, base in SYSTEMS.items():
        seeded = {int(m.group(1)) for p in exp.glob(f"{base}_s*")
                  if (m := re.fullmatch(re.escape(base) + r"_s([0-9]+)", p.name)) and p.is_dir()}
        if (exp / base).is_dir() or seeded:
            systems.append(system)
            seed_sets.append(seeded if not (exp / base).is_dir() else set())
    if not systems:
        raise W2vtkError(f"{exp}: no acoustic-model dirs ({', '.join(SYSTEMS.values())}[_s<seed>]) to report")
    seeds = sorted(set.intersection(*seed_sets)) if all(seed_sets) else None
    dirs = [exp / am_dir_name(s, seed) for s in systems for seed in (seeds or [None])]
    sets = sorted(set.intersection(*[{p.name[len("decode_"):] for p in d.glob("decode_*")
                                      if (p / "score.json").is_file()} for d in dirs]))
    if not sets:
        raise W2vtkError(f"{exp}: no set is decoded and scored (decode_<set>/score.json) by every AM of "
                         f"{', '.join(systems)}")
    metrics = None
    for d in dirs:
        for set_name in sets:
            found = set(scored_metrics(d / f"decode_{set_name}" / "score.json"))
            metrics = found if metrics is None else metrics & found
    order = [m for m in METRICS if m in (metrics or set())]
    if not order:
        raise W2vtkError(f"{exp}: the score.json files share no metric (wer, ler, per)")
    return {"systems": systems, "seeds": seeds, "sets": sets, "metrics": order}


def report_results(exp: str | Path, sets: list[str] | None = None, metrics: list[str] | None = None,
                   systems: list[str] | None = None, seeds: list[int] | None = None,
                   title: str = "Results", command: str | None = None) -> tuple[Path, Path]:
    """``w2vtk results``: what :func:`discover` finds, overridden by the given lists; writes
    results.json and RESULTS.md and prints the table."""
    found = discover(exp)
    sets = sets or found["sets"]
    metrics = metrics or found["metrics"]
    systems = systems or found["systems"]
    seeds = seeds if seeds is not None else found["seeds"]
    results = collect_results(exp, sets, metrics, systems, seeds=seeds)
    paths = write_results(exp, results, sets, metrics, title=title, command=command)
    print_table(results, sets, metrics, title)
    return paths
