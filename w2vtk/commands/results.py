"""``w2vtk results EXP``: a recipe's results table, results.json and RESULTS.md from its scored decodes."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def _list(text: Optional[str]) -> Optional[list[str]]:
    return None if text is None else [t for t in text.replace(",", " ").split() if t]


def register(app: typer.Typer, prep_app: typer.Typer) -> None:
    @app.command("results")
    def results_cmd(
        exp: Path = typer.Argument(..., metavar="EXP", help="A recipe's exp dir (am_fbank[_s<seed>]/, "
                                   "am_w2v[_s<seed>]/ with decode_<set>/score.json)."),
        sets: Optional[str] = typer.Option(None, "--sets", help="Sets, e.g. 'dev test' (default: every set "
                                           "each AM decoded and scored)."),
        metrics: Optional[str] = typer.Option(None, "--metrics", help="wer, ler and/or per (default: those "
                                              "every score.json has)."),
        systems: Optional[str] = typer.Option(None, "--systems", help="logmel and/or wav2vec (default: "
                                              "those with AM dirs)."),
        seeds: Optional[str] = typer.Option(None, "--seeds", help="AM seeds, e.g. '1 2 3' (default: the "
                                            "am_<feat>_s<seed> dirs common to the systems)."),
        title: str = typer.Option("Results", "--title", help="Table title."),
        command: Optional[str] = typer.Option(None, "--command", help="The command line that made EXP, "
                                              "recorded in RESULTS.md (the recipes pass their own)."),
    ) -> None:
        """Mean, min and max over AM seeds per set and system: a table, EXP/results.json, EXP/RESULTS.md."""
        from w2vtk.errors import W2vtkError
        from w2vtk.progress import console
        from w2vtk.results import report_results

        seed_list = _list(seeds)
        if seed_list is not None and not all(s.isdigit() for s in seed_list):
            raise W2vtkError(f"--seeds {seeds!r}: expected non-negative integers")
        json_path, md_path = report_results(exp, _list(sets), _list(metrics), _list(systems),
                                            None if seed_list is None else [int(s) for s in seed_list],
                                            title=title, command=command)
        console.print(f"wrote {json_path} and {md_path}", highlight=False, markup=False)
