"""``w2vtk report EXP [--out DIR]``: an HTML page of plots and provenance for any experiment dir.

EXP may be a pre-training dir, an AM dir, a decode dir or a recipe's whole ``$exp``; the report
reads only what the stages already write and finds it by walking EXP:

- ``metrics.jsonl`` with ``update`` records (pretrain): loss and ranking accuracy, train and valid,
  against updates;
- ``metrics.jsonl`` with ``epoch`` records (train-am): train / dev loss and the dev error rates
  against epochs;
- ``trials.tsv`` (decode --tune): lm weight against word score, coloured by dev WER, best marked;
- ``results.json`` (a recipe's stage 6): error rates per set and system as bars, with the AM seeds'
  range;
- provenance: each config.yaml, each final checkpoint with its sha256, the w2vtk version, the machine.

Each plot is a PNG beside ``index.html`` (matplotlib's Agg backend; no display needed), referenced
by a relative ``src``. A file that is missing, half written or not what it should be is skipped with
a note on the page; a directory with nothing readable is an error.
"""

from __future__ import annotations

import html
import json
import math
import os
import platform
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from w2vtk import __version__
from w2vtk.errors import W2vtkError
from w2vtk.io import atomic_write_bytes, atomic_write_text, sha256_file
from w2vtk.training import parse_metrics_line

SKIP_DIRS = {"data", "log", "tensorboard", "report", ".done", "corpus"}
MAX_DEPTH = 4


@dataclass
class Report:
    """What :func:`make_report` wrote: the page, its plots and the notes about skipped files."""

    index: Path
    plots: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _walk(root: Path):
    """Directories under ``root`` (itself first), depth-limited, skipping data and diagnostics."""
    stack = [(root, 0)]
    while stack:
        d, depth = stack.pop()
        yield d
        if depth >= MAX_DEPTH:
            continue
        try:
            children = sorted((p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")),
                              key=lambda p: p.name, reverse=True)
        except OSError:
            continue
        stack.extend((c, depth + 1) for c in children if c.name not in SKIP_DIRS)


def _records(path: Path, notes: list[str]) -> list[dict]:
    """The readable records of a metrics.jsonl (a line cut by a kill is skipped and noted)."""
    out, bad = [], 0
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as err:
        notes.append(f"{path}: unreadable ({err.strerror or err}); skipped")
        return []
    for line in text.splitlines():
        if line.strip():
            rec = parse_metrics_line(line)
            if rec is None:
                bad += 1
            else:
                out.append(rec)
    if bad:
        notes.append(f"{path}: {bad} unreadable line(s) skipped (a run killed while writing?)")
    return out


def _num(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _series(recs: list[dict], key: str, field_: str, split: str | None = None) -> tuple[list, list]:
    xs, ys = [], []
    for r in recs:
        if split is not None and r.get("split") != split:
            continue
        x, y = _num(r.get(key)), _num(r.get(field_))
        if x is not None and y is not None:
            xs.append(x)
            ys.append(y)
    return xs, ys


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _plt().close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _finish(fig, title: str, drawn: bool, path: Path) -> Path | None:
    """Title and save a figure, or drop it (None) when no series had data."""
    fig.suptitle(title)
    if not drawn:
        _plt().close(fig)
        return None
    return _save(fig, path)


def _plot_pretrain(recs: list[dict], title: str, path: Path) -> Path | None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    drawn = False
    for ax, name, label in ((axes[0], "loss", "loss"), (axes[1], "rank_acc", "ranking accuracy")):
        for split, style in (("train", "-"), ("valid", "o-")):
            xs, ys = _series(recs, "update", name, split)
            if xs:
                ax.plot(xs, ys, style, label=split, markersize=3)
                drawn = True
        ax.set_xlabel("update")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    return _finish(fig, title, drawn, path)


def _plot_am(recs: list[dict], title: str, path: Path) -> Path | None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    drawn = False
    for name, label in (("train_loss", "train"), ("dev_loss", "dev")):
        xs, ys = _series(recs, "epoch", name)
        if xs:
            axes[0].plot(xs, ys, "-" if name == "train_loss" else "o-", label=label, markersize=3)
            drawn = True
    axes[0].set_ylabel("CTC loss per token")
    for name in ("ler", "per", "wer"):
        xs, ys = _series(recs, "epoch", name)
        if xs:
            axes[1].plot(xs, ys, "o-", label=f"dev {name.upper()}", markersize=3)
            drawn = True
    axes[1].set_ylabel("error rate (%)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    return _finish(fig, title, drawn, path)


def _read_trials(path: Path, notes: list[str]) -> list[dict]:
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        notes.append(f"{path}: unreadable ({err}); skipped")
        return []
    head = lines[0].split("\t") if lines else []
    need = {"lm_weight", "word_score", "wer"}
    if not need <= set(head):
        notes.append(f"{path}: no {', '.join(sorted(need))} columns; skipped")
        return []
    for line in lines[1:]:
        cells = line.split("\t")
        if len(cells) != len(head):
            continue
        try:
            rows.append({k: float(cells[head.index(k)]) for k in need})
        except ValueError:
            continue
    return rows


def _plot_trials(rows: list[dict], title: str, path: Path) -> Path | None:
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    sc = ax.scatter([r["lm_weight"] for r in rows], [r["word_score"] for r in rows],
                    c=[r["wer"] for r in rows], cmap="viridis_r", s=28)
    best = min(rows, key=lambda r: r["wer"])
    ax.scatter([best["lm_weight"]], [best["word_score"]], marker="*", s=240, facecolor="none",
               edgecolor="red", linewidth=1.5, label=f"best: WER {best['wer']:.2f}")
    fig.colorbar(sc, ax=ax, label="dev WER (%)")
    ax.set_xlabel("lm weight")
    ax.set_ylabel("word score")
    ax.legend(loc="best")
    ax.set_title(title)
    return _save(fig, path)


def _plot_results(results: dict, path: Path) -> Path | None:
    """Bars per (set, metric) and system; whiskers = the AM seeds' min..max when present."""
    plt = _plt()
    systems = [s for s in results if isinstance(results[s], dict)]
    groups = []
    for s in systems:
        for set_name, entry in results[s].items():
            if isinstance(entry, dict):
                for metric in ("wer", "per", "ler"):
                    if _num(entry.get(metric)) is not None and (set_name, metric) not in groups:
                        groups.append((set_name, metric))
    if not systems or not groups:
        return None
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(groups) * len(systems) / 2 + 2), 4))
    width = 0.8 / len(systems)
    for i, s in enumerate(systems):
        xs, ys, lo, hi = [], [], [], []
        for g, (set_name, metric) in enumerate(groups):
            entry = results[s].get(set_name) or {}
            y = _num(entry.get(metric))
            if y is None:
                continue
            xs.append(g + (i - (len(systems) - 1) / 2) * width)
            ys.append(y)
            mn, mx = _num(entry.get(f"{metric}_min")), _num(entry.get(f"{metric}_max"))
            lo.append(y - mn if mn is not None else 0.0)
            hi.append(mx - y if mx is not None else 0.0)
        bars = ax.bar(xs, ys, width, label=s, yerr=[lo, hi], capsize=3)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    ax.set_xticks(range(len(groups)), [f"{n} {m.upper()}" for n, m in groups])
    ax.set_ylabel("error rate (%)")
    ax.set_title("results (bars: mean over AM seeds; whiskers: min..max)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _slug(rel: Path) -> str:
    text = "_".join(rel.parts) or "exp"
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)


def _machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.node()} ({platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, {gpu}), " \
           f"Python {platform.python_version()}, torch {torch.__version__}"


def make_report(exp: str | Path, out: str | Path | None = None, log=None) -> Report:
    """Write ``out/index.html`` (default ``EXP/report/``) and its PNG plots; see the module doc."""
    exp = Path(exp)
    if not exp.is_dir():
        raise W2vtkError(f"{exp}: not a directory")
    out = Path(out) if out is not None else exp / "report"
    notes: list[str] = []
    pending, provenance = _find_plots(exp, out, notes)
    if not pending:
        raise W2vtkError(f"{exp}: nothing to report (no readable metrics.jsonl, trials.tsv or results.json "
                         f"under it)")
    out.mkdir(parents=True, exist_ok=True)
    plots: list[Path] = []
    sections: list[str] = []
    for title, draw in pending:
        try:
            png = draw()
        except Exception as err:  # noqa: BLE001 - a plot that cannot be drawn is a note, not a crash
            notes.append(f"{title}: not plotted ({type(err).__name__}: {err})")
            continue
        if png is None:
            notes.append(f"{title}: no data to plot")
            continue
        plots.append(png)
        src = os.path.relpath(png, out)
        sections.append(f"<h2>{html.escape(title)}</h2>\n<img src=\"{html.escape(src)}\" "
                        f"alt=\"{html.escape(title)}\">\n")
    index = out / "index.html"
    atomic_write_text(index, _page(exp, sections, provenance, notes))
    if log is not None:
        for n in notes:
            log(f"note: {n}")
    return Report(index=index, plots=plots, notes=notes)


def _find_plots(exp: Path, out: Path, notes: list[str]) -> tuple[list[tuple[str, Any]], list[tuple[str, str, str]]]:
    """What EXP holds to plot, as (title, draw() -> PNG path or None) in page order, and its
    provenance rows (dir, file, path or sha256); unreadable inputs become notes."""
    pending: list[tuple[str, Any]] = []
    provenance: list[tuple[str, str, str]] = []
    results_path = exp / "results.json"
    if results_path.is_file():
        try:
            results = json.loads(results_path.read_text(encoding="utf-8"))
            if not isinstance(results, dict):
                raise ValueError("not a mapping")
            pending.append(("Results", lambda p=out / "results.png", r=results: _plot_results(r, p)))
        except (OSError, ValueError, UnicodeDecodeError) as err:
            notes.append(f"{results_path}: unreadable ({err}); skipped")
    for d in _walk(exp):
        rel = d.relative_to(exp)
        if not rel.parts:  # EXP itself: named after its directory
            rel = Path(exp.resolve().name)
        name = str(rel)
        metrics = d / "metrics.jsonl"
        if metrics.is_file():
            recs = _records(metrics, notes)
            if any("update" in r and "split" in r for r in recs):
                pending.append((f"Pre-training: {name}",
                                lambda r=recs, t=name, p=out / f"pretrain_{_slug(rel)}.png": _plot_pretrain(r, t, p)))
            elif any("epoch" in r for r in recs):
                pending.append((f"Acoustic model: {name}",
                                lambda r=recs, t=name, p=out / f"am_{_slug(rel)}.png": _plot_am(r, t, p)))
            elif recs:
                notes.append(f"{metrics}: neither pre-training nor acoustic-model records; skipped")
        trials = d / "trials.tsv"
        if trials.is_file():
            rows = _read_trials(trials, notes)
            pending.append((f"Decoder tuning: {name}",
                            lambda r=rows, t=name, p=out / f"tune_{_slug(rel)}.png": _plot_trials(r, t, p)))
        if (d / "config.yaml").is_file():
            provenance.append((name, "config", str(d / "config.yaml")))
        for ck in ("checkpoint_best.pt", "checkpoint_avg.pt"):
            if (d / ck).is_file():
                try:
                    provenance.append((name, ck, sha256_file(d / ck)))
                except OSError as err:
                    notes.append(f"{d / ck}: unreadable ({err.strerror or err})")
    return pending, provenance


def _page(exp: Path, sections: list[str], provenance: list[tuple[str, str, str]], notes: list[str]) -> str:
    """index.html: the plot sections, the provenance table, the version / machine stamp, the notes."""
    prov_rows = "".join(f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td><td><code>{html.escape(c)}"
                        f"</code></td></tr>\n" for a, b, c in provenance)
    note_items = "".join(f"<li>{html.escape(n)}</li>\n" for n in notes)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>w2vtk report: {html.escape(str(exp))}</title>\n"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}img{max-width:100%}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}</style>"
        "</head><body>\n"
        f"<h1>w2vtk report: {html.escape(str(exp))}</h1>\n" + "".join(sections) +
        "<h2>Provenance</h2>\n<table><tr><th>dir</th><th>file</th><th>path / sha256</th></tr>\n" + prov_rows +
        "</table>\n"
        f"<p>w2vtk {html.escape(__version__)}; {html.escape(_machine())}; made "
        f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}</p>\n" +
        (f"<h2>Notes</h2>\n<ul>\n{note_items}</ul>\n" if notes else "") +
        "</body></html>\n")
