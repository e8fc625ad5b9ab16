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
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

from w2vtk.errors import W2vtkError
from w2vtk.io import atomic_write_text

# results.json key -> acoustic-model directory under EXP, in table order.
SYSTEMS = {"logmel": "am_fbank", "wav2vec": "am_w2v"}
METRICS = ("wer", "ler", "per")


def decode_dir(exp: Path, system: str, set_name: str) -> Path:
    """Where stage 5 decodes ``set_name`` with the AM of ``system`` ("logmel" or "wav2vec")."""
    return exp / SYSTEMS[system] / f"decode_{set_name}"


def collect_results(exp: str | Path, sets: list[str], metrics: list[str],
                    systems: list[str] | None = None) -> dict[str, dict[str, dict]]:
    """Read ``score.json`` of every (system, set) decode directory.

    Returns ``{system: {set: {metric: percent}}}`` for ``systems`` (default: all of
    :data:`SYSTEMS`, in its order); raises W2vtkError naming the first missing or incomplete score
    file.
    """
    exp = Path(exp)
    if not sets:
        raise W2vtkError("results: no sets given")
    chosen = list(SYSTEMS) if systems is None else [s for s in SYSTEMS if s in systems]
    unknown = [s for s in (systems or []) if s not in SYSTEMS]
    if unknown or not chosen:
        raise W2vtkError(f"results: systems must be among {', '.join(SYSTEMS)}, not {' '.join(systems or [])!r}")
    for metric in metrics:
        if metric not in METRICS:
            raise W2vtkError(f"results: unknown metric {metric!r} (expected one of {', '.join(METRICS)})")
    results: dict[str, dict[str, dict]] = {}
    for system in chosen:
        per_set: dict[str, dict] = {}
        for set_name in sets:
            path = decode_dir(exp, system, set_name) / "score.json"
            if not path.is_file():
                raise W2vtkError(f"results: {path} is missing (made by stage 5 decode / stage 6 score)")
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                scored = data["metrics"]
            except (ValueError, KeyError, TypeError, RecursionError) as err:
                # RecursionError: deeply nested JSON ("[" * 10**5)
                raise W2vtkError(f"results: {path} is not a w2vtk score.json "
                                 f"({' '.join(str(err).split())[:120]})") from None
            if not isinstance(scored, dict):
                raise W2vtkError(f"results: {path} is not a w2vtk score.json ('metrics' is not a mapping)")
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
                row[metric] = round(float(rate), 2)
            per_set[set_name] = row
        results[system] = per_set
    return results


def markdown_table(results: dict[str, dict[str, dict]], sets: list[str], metrics: list[str]) -> str:
    """One row per set, one column per (metric, system), e.g. ``| dev | 20.1 | 15.3 |``."""
    head = ["set"] + [f"{m.upper()} {system}" for m in metrics for system in results]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for set_name in sets:
        cells = [set_name] + [f"{results[system][set_name][m]:.2f}" for m in metrics for system in results]
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


def write_results(exp: str | Path, results: dict, sets: list[str], metrics: list[str], *,
                  title: str = "Results", command: str | None = None) -> tuple[Path, Path]:
    """Write ``EXP/results.json`` and ``EXP/RESULTS.md`` (atomically); returns their paths."""
    from w2vtk import __version__

    exp = Path(exp)
    json_path, md_path = exp / "results.json", exp / "RESULTS.md"
    atomic_write_text(json_path, json.dumps(results, indent=2, sort_keys=False) + "\n")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"# {title}\n", "\nError rates in percent (" + ", ".join(m.upper() for m in metrics) +
             "); log-mel = AM on 80 log-mel features (`am_fbank`), wav2vec = AM on wav2vec "
             "features (`am_w2v`; the layer is in its feats.yaml, `c` by default).\n\n", markdown_table(results, sets, metrics),
             "\n## Provenance\n\n", f"- made {stamp} by w2vtk {__version__}\n",
             f"- machine: {_machine()}\n"]
    if command:
        parts.append(f"- command: `{command}`\n")
    parts.append("- scores: " + ", ".join(f"`{decode_dir(exp, s, n).relative_to(exp)}/score.json`"
                                         for s in results for n in sets) + "\n")
    atomic_write_text(md_path, "".join(parts))
    return json_path, md_path


def print_table(results: dict, sets: list[str], metrics: list[str], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("set")
    for metric in metrics:
        for system in results:
            table.add_column(f"{metric.upper()} {system}", justify="right")
    for set_name in sets:
        table.add_row(set_name, *[f"{results[system][set_name][m]:.2f}" for m in metrics for system in results])
    Console().print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m w2vtk.results", description=__doc__.split("\n\n")[0])
    parser.add_argument("--exp", required=True, type=Path, help="Recipe experiment directory.")
    parser.add_argument("--sets", required=True, nargs="+", help="Evaluation data-dir set names.")
    parser.add_argument("--metrics", nargs="+", default=["wer", "ler"], help="wer, ler and/or per.")
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), help="logmel and/or wav2vec.")
    parser.add_argument("--title", default="Results", help="Table title.")
    parser.add_argument("--command", default=None, help="Command line to record in RESULTS.md.")
    args = parser.parse_args(argv)
    try:
        results = collect_results(args.exp, args.sets, args.metrics, args.systems)
        json_path, md_path = write_results(args.exp, results, args.sets, args.metrics, title=args.title,
                                           command=args.command)
    except W2vtkError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print_table(results, args.sets, args.metrics, args.title)
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
