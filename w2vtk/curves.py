"""The mini recipe's study curves (stage 7 of recipes/mini/run.sh): WER against minutes of labeled
speech (log-mel and wav2vec) and against minutes of pre-training audio, each point the mean and
range over AM seeds, into ``EXP/curves.json``, two PNG plots (matplotlib, Agg) and a section of
``EXP/RESULTS.md``.  Run as ``w2vtk results EXP --curves --sets 'dev test' --seeds '1 2 3' ...``.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Iterable

from w2vtk.errors import W2vtkError
from w2vtk.io import atomic_write_bytes, atomic_write_text
from w2vtk.progress import LoggedConsole
from w2vtk.results import (CURVES_BEGIN, CURVES_END, SYSTEMS, am_dir_name, cell, check_metrics, check_seeds,
                           choose_systems, read_score, rich_table, summarize_seeds, with_section)

CURVES = {"am_minutes": ("curve_am_minutes.png", "labeled minutes"),
          "pretrain_minutes": ("curve_pretrain_minutes.png", "pre-training minutes")}
COLOURS = {"logmel": "C0", "wav2vec": "C1"}


def minutes_label(value: str | float) -> str:
    """The canonical text of an amount of audio in minutes (``"5"``, ``"0.5"``): curves.json keys
    and the curve directories' names (``am_fbank_5m_s1``) use it."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (number > 0) or math.isinf(number):
        raise W2vtkError(f"curves: {value!r} is not a positive number of minutes")
    return f"{number:g}"


def _points(values: Iterable[str | float], what: str) -> list[str]:
    labels = [minutes_label(v) for v in values]
    for label in labels:
        if labels.count(label) > 1:
            raise W2vtkError(f"curves: {what} {label} is given twice")
    return labels


def curve_am_dir(exp: str | Path, curve: str, system: str, point: str, seed: int, main: str) -> Path:
    """The AM of one curve point and seed.

    ``curve`` "am_minutes": ``point`` minutes of labeled audio, ``EXP/curves/am_<feat>_<point>m_s<seed>``;
    "pretrain_minutes": wav2vec pre-trained on ``point`` minutes, ``EXP/curves/am_w2v_p<point>m_s<seed>``.
    The point equal to ``main`` (the recipe's own amount) is stage 4's AM, ``EXP/am_<feat>_s<seed>``.
    """
    exp = Path(exp)
    if float(point) == float(main):
        return exp / am_dir_name(system, seed)
    if curve == "am_minutes":
        return exp / "curves" / f"{SYSTEMS[system]}_{point}m_s{seed}"
    if curve == "pretrain_minutes":
        return exp / "curves" / f"{SYSTEMS[system]}_p{point}m_s{seed}"
    raise W2vtkError(f"curves: unknown curve {curve!r} (expected one of {', '.join(CURVES)})")


def collect_curves(exp: str | Path, *, sets: list[str], metrics: list[str], seeds: list[int],
                   systems: list[str] | None = None, am_minutes: Iterable[str | float] = (),
                   main_am_minutes: str | float | None = None,
                   pretrain_minutes: Iterable[str | float] = (),
                   main_pretrain_minutes: str | float | None = None) -> dict[str, dict]:
    """Read the score.json files of every curve point (see :func:`curve_am_dir`).

    ``am_minutes``: labeled amounts (minutes) of the curve of every system; the recipe's own
    amount ``main_am_minutes`` is always one of its points.  ``pretrain_minutes``: amounts of
    pre-training audio (minutes) of the wav2vec system, plus ``main_pretrain_minutes`` (the main
    model).  A curve whose list is empty is left out, and so is the pre-training curve without a
    wav2vec system.  Returns ``{"am_minutes": {system: {"<minutes>": {set: row}}},
    "pretrain_minutes": {"wav2vec": {...}}}``, points in increasing order, each ``row`` that of
    :func:`summarize_seeds` (percent).
    """
    exp = Path(exp)
    if not sets:
        raise W2vtkError("curves: no sets given")
    chosen = choose_systems(systems)
    check_metrics(metrics)
    seed_list = check_seeds(seeds)
    plan: dict[str, tuple[list[str], list[str], str]] = {}
    am_points = _points(am_minutes, "labeled amount")
    if am_points:
        if main_am_minutes is None:
            raise W2vtkError("curves: the labeled-minutes curve needs the recipe's own amount (--main-am-minutes)")
        main = minutes_label(main_am_minutes)
        plan["am_minutes"] = (chosen, sorted(set(am_points) | {main}, key=float), main)
    pre_points = _points(pretrain_minutes, "pre-training amount")
    if pre_points and "wav2vec" in chosen:
        if main_pretrain_minutes is None:
            raise W2vtkError("curves: the pre-training curve needs the main model's amount (--main-pretrain-minutes)")
        main = minutes_label(main_pretrain_minutes)
        above = [p for p in pre_points if float(p) > float(main)]
        if above:
            raise W2vtkError(f"curves: pre-training amount {above[0]} is above the main model's {main} minutes")
        plan["pretrain_minutes"] = (["wav2vec"], sorted(set(pre_points) | {main}, key=float), main)
    if not plan:
        raise W2vtkError("curves: no curve points given (--am-minutes and/or --pretrain-minutes with wav2vec)")
    curves: dict[str, dict] = {}
    for curve, (curve_systems, points, main) in plan.items():
        curves[curve] = {}
        for system in curve_systems:
            curves[curve][system] = {}
            for point in points:
                per_set = {}
                for set_name in sets:
                    per_seed = {seed: read_score(curve_am_dir(exp, curve, system, point, seed, main)
                                                 / f"decode_{set_name}" / "score.json", metrics)
                                for seed in seed_list}
                    per_set[set_name] = summarize_seeds(per_seed, metrics)
                curves[curve][system][point] = per_set
    return curves


def plot_curves(curves: dict[str, dict], out_dir: str | Path, *, set_name: str = "test",
                metric: str = "wer") -> list[Path]:
    """One PNG per curve in ``out_dir`` (:data:`CURVES` names them): ``metric`` (percent) on
    ``set_name`` against minutes on a log axis, one line per system, the mean over seeds with
    min-max error bars.  Written atomically with matplotlib's Agg canvas; returns the paths."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    written = []
    for curve, by_system in curves.items():
        file_name, x_label = CURVES[curve]
        fig = Figure(figsize=(6.0, 4.0), dpi=100)
        FigureCanvasAgg(fig)  # a canvas of its own: no pyplot, no global backend state
        ax = fig.add_subplot()
        ticks: set[float] = set()
        for system, points in by_system.items():
            rows = []
            for point, per_set in points.items():
                if set_name not in per_set:
                    raise W2vtkError(f"curves: no {set_name} set at {curve} {point} (sets: {', '.join(per_set)})")
                rows.append((float(point), per_set[set_name]))
            xs = [x for x, _ in rows]
            means = [row[metric] for _, row in rows]
            below = [row[metric] - row.get(f"{metric}_min", row[metric]) for _, row in rows]
            above = [row.get(f"{metric}_max", row[metric]) - row[metric] for _, row in rows]
            ax.errorbar(xs, means, yerr=[below, above], marker="o", capsize=4, label=system,
                        color=COLOURS.get(system))
            ticks.update(xs)
        ax.set_xscale("log")
        ax.set_xticks(sorted(ticks), [f"{t:g}" for t in sorted(ticks)])
        ax.set_xticks([], minor=True)
        ax.set_xlabel(x_label)
        ax.set_ylabel(f"{set_name} {metric.upper()} (%)")
        ax.set_title(f"{set_name} {metric.upper()} against {x_label} (mean, min-max over AM seeds)", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        path = out_dir / file_name
        atomic_write_bytes(path, buf.getvalue())
        written.append(path)
    return written


def curves_markdown(curves: dict[str, dict], sets: list[str], metrics: list[str], *,
                    plot_set: str = "test") -> str:
    """The RESULTS.md section of the curves (markers included): per curve its PNG and a table
    of ``mean (min-max)`` per (metric, set, system), one row per point."""
    seeds = next((list(row["seeds"]) for by_system in curves.values() for points in by_system.values()
                  for per_set in points.values() for row in per_set.values()), [])
    parts = [CURVES_BEGIN + "\n", "## Curves\n\n",
             f"Error rates in percent: mean over the AM seeds ({', '.join(seeds)}), (min-max) over them; "
             "every AM decoded with its system's decoder parameters tuned in stage 5 (no retuning). "
             f"The plots show {plot_set} {metrics[0].upper()}.\n"]
    for curve, by_system in curves.items():
        file_name, x_label = CURVES[curve]
        parts.append(f"\n### {metrics[0].upper()} against {x_label}\n\n![{plot_set} {metrics[0].upper()} "
                     f"against {x_label}]({file_name})\n\n")
        head = [x_label] + [f"{m.upper()} {s} {system}" for m in metrics for s in sets for system in by_system]
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---:"] * len(head)) + "|"]
        points = next(iter(by_system.values()))
        for point in points:
            cells = [point] + [cell(by_system[system][point][s], m)
                               for m in metrics for s in sets for system in by_system]
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(lines) + "\n")
    parts.append(CURVES_END + "\n")
    return "".join(parts)


def write_curves(exp: str | Path, curves: dict[str, dict], sets: list[str], metrics: list[str], *,
                 plot_set: str = "test") -> list[Path]:
    """``EXP/curves.json``, the PNG plots and the curves section of ``EXP/RESULTS.md`` (replaced
    in place, or added; the rest of the file is kept), all atomically; returns the paths written."""
    exp = Path(exp)
    if plot_set not in sets:
        raise W2vtkError(f"curves: the plotted set {plot_set!r} is not among the sets ({', '.join(sets)})")
    json_path, md_path = exp / "curves.json", exp / "RESULTS.md"
    pngs = plot_curves(curves, exp, set_name=plot_set, metric=metrics[0])
    atomic_write_text(json_path, json.dumps(curves, indent=2, sort_keys=False) + "\n")
    try:
        text = md_path.read_text(encoding="utf-8") if md_path.exists() else "# Results\n"
    except (OSError, UnicodeDecodeError) as err:
        raise W2vtkError(f"curves: cannot read {md_path}: {err}") from None
    atomic_write_text(md_path, with_section(text, curves_markdown(curves, sets, metrics, plot_set=plot_set)))
    return [json_path, *pngs, md_path]


def print_curves(curves: dict[str, dict], sets: list[str], metric: str) -> None:
    """The curves of one metric (the plotted one) as rich tables; RESULTS.md has every metric."""
    console = LoggedConsole()
    for curve, by_system in curves.items():
        x_label = CURVES[curve][1]
        head = [x_label] + [f"{metric.upper()} {s} {system}" for s in sets for system in by_system]
        points = next(iter(by_system.values()))
        rows = [[point] + [cell(by_system[system][point][s], metric) for s in sets for system in by_system]
                for point in points]
        console.print(rich_table(f"{metric.upper()} against {x_label}: mean (min-max) over AM seeds",
                                  head, rows))


def report_curves(exp: str | Path, *, sets: list[str], metrics: list[str], systems: list[str],
                  seeds: list[int], am_minutes: list[str], main_am_minutes: str | None,
                  pretrain_minutes: list[str], main_pretrain_minutes: str | None,
                  plot_set: str = "test") -> list[Path]:
    """``w2vtk results EXP --curves``: collect the study curves (stage 7 of recipes/mini/run.sh),
    write curves.json, the plots and RESULTS.md's curves section, print them; the files written."""
    curves = collect_curves(exp, sets=sets, metrics=metrics, seeds=seeds, systems=systems,
                            am_minutes=am_minutes, main_am_minutes=main_am_minutes,
                            pretrain_minutes=pretrain_minutes, main_pretrain_minutes=main_pretrain_minutes)
    written = write_curves(exp, curves, sets, metrics, plot_set=plot_set)
    print_curves(curves, sets, metrics[0])
    return written
