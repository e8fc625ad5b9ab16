"""``w2vtk prep validate|fix|subset|combine``: Kaldi data-dir tools (library: :mod:`w2vtk.data`)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def _summary_line(path: Path) -> str:
    from w2vtk.data import load_data_dir

    dd = load_data_dir(path, validate=False)
    durations = dd.durations()
    hours = "" if durations is None else f", {sum(durations.values()) / 3600:.3f} h"
    return f"{len(dd.utt2spk)} utterances, {len(dd.spk2utt)} speakers{hours}"


def register(app: typer.Typer, prep_app: typer.Typer) -> None:
    @prep_app.command("validate")
    def validate_cmd(
        data_dir: Path = typer.Argument(..., help="Kaldi data directory."),
        no_text: bool = typer.Option(False, "--no-text", help="Allow a dir without text (unlabelled audio)."),
    ) -> None:
        """Check a data dir (sorting, key sets, utt2spk/spk2utt, segments, ...): one line per problem, exit 1 if any."""
        from w2vtk.data import validate_data_dir

        problems = validate_data_dir(data_dir, require_text=not no_text)
        if problems:
            for problem in problems:
                typer.echo(f"{data_dir}/{problem}")
            typer.echo(f"{data_dir}: {len(problems)} problem(s); `w2vtk prep fix {data_dir}` "
                       "repairs key-set and order problems", err=True)
            raise typer.Exit(1)
        typer.echo(f"OK {data_dir}: {_summary_line(data_dir)}")

    @prep_app.command("fix")
    def fix_cmd(data_dir: Path = typer.Argument(..., help="Kaldi data directory, repaired in place.")) -> None:
        """Keep utterances present and valid in every file, re-sort, rebuild spk2utt (originals in DIR/.backup)."""
        from w2vtk.data import fix_data_dir, validate_data_dir

        kept, total = fix_data_dir(data_dir)
        typer.echo(f"fix {data_dir}: kept {kept} of {total} utterances "
                   f"(originals in {data_dir}/.backup)")
        problems = validate_data_dir(data_dir, require_text=(data_dir / "text").exists())
        if problems:
            for problem in problems:
                typer.echo(f"{data_dir}/{problem}")
            typer.echo(f"{data_dir}: {len(problems)} problem(s) remain that fix cannot repair",
                       err=True)
            raise typer.Exit(1)

    @prep_app.command("subset")
    def subset_cmd(
        data_dir: Path = typer.Argument(..., help="Source data directory."),
        out_dir: Path = typer.Argument(..., help="Output data directory."),
        hours: Optional[float] = typer.Option(None, "--hours", help="Take this many hours (needs utt2dur or segments)."),
        utts: Optional[int] = typer.Option(None, "--utts", help="Take this many utterances."),
        spk_list: Optional[Path] = typer.Option(None, "--spk-list", help="File of speaker ids (first field per line)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the speaker-balanced choice."),
    ) -> None:
        """Deterministic speaker-balanced subset (speakers take turns, seeded), all files in step."""
        from w2vtk.data import subset_data_dir
        from w2vtk.errors import W2vtkError

        if sum(x is not None for x in (hours, utts, spk_list)) != 1:
            raise W2vtkError("prep subset: give exactly one of --hours, --utts, --spk-list")
        subset_data_dir(data_dir, out_dir, hours=hours, utts=utts, spk_list=spk_list, seed=seed)
        typer.echo(f"subset {data_dir} -> {out_dir}: {_summary_line(out_dir)}")

    @prep_app.command("combine")
    def combine_cmd(
        out_dir: Path = typer.Argument(..., help="Output data directory."),
        data_dirs: List[Path] = typer.Argument(..., help="Source data directories."),
    ) -> None:
        """Concatenate data dirs (duplicate utterance ids are an error; files not in every source are dropped)."""
        from w2vtk.data import combine_data_dirs

        warnings = combine_data_dirs(out_dir, data_dirs)
        for warning in warnings:
            typer.echo(f"warning: {warning}", err=True)
        typer.echo(f"combine {len(data_dirs)} dirs -> {out_dir}: {_summary_line(out_dir)}")
