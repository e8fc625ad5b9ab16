"""``w2vtk report EXP [--out DIR]``: plots and provenance of an experiment as one HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer, prep_app: typer.Typer) -> None:
    @app.command("report")
    def report_cmd(
        exp: Path = typer.Argument(..., metavar="EXP", help="A pretrain, train-am or decode dir, or a "
                                   "recipe's whole exp dir."),
        out: Optional[Path] = typer.Option(None, "--out", help="Where index.html and the PNG plots go "
                                           "(default EXP/report)."),
    ) -> None:
        """Plot pre-training and AM curves, decoder tuning and results (PNG, matplotlib) into DIR/index.html."""
        from w2vtk.progress import console
        from w2vtk.report import make_report

        rep = make_report(exp, out, log=lambda m: console.print(m, highlight=False, markup=False))
        console.print(f"wrote {rep.index} ({len(rep.plots)} plots)", highlight=False, markup=False)
