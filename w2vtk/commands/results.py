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
        curves: bool = typer.Option(False, "--curves", help="Instead: the study curves (stage 7 of "
                                    "recipes/mini/run.sh): EXP/curves.json, PNG plots and RESULTS.md's curves "
                                    "section; needs --sets and --seeds."),
        am_minutes: Optional[str] = typer.Option(None, "--am-minutes", help="With --curves: labeled minutes "
                                                 "of the AM curve, e.g. '2 20'."),
        main_am_minutes: Optional[str] = typer.Option(None, "--main-am-minutes", help="With --curves: the "
                                                      "recipe's own labeled minutes (stage 4's AMs)."),
        pretrain_minutes: Optional[str] = typer.Option(None, "--pretrain-minutes", help="With --curves: "
                                                       "pre-training minutes below the main model's."),
        main_pretrain_minutes: Optional[str] = typer.Option(None, "--main-pretrain-minutes", help="With "
                                                            "--curves: minutes the main model was pre-trained on."),
        plot_set: str = typer.Option("test", "--plot-set", help="With --curves: the set the plots show."),
    ) -> None:
        """Mean, min and max over AM seeds per set and system: a table, EXP/results.json, EXP/RESULTS.md
        (with --curves: the study curves instead)."""
        from w2vtk.errors import W2vtkError
        from w2vtk.progress import console
        from w2vtk.results import SYSTEMS, report_results

        seed_list = _list(seeds)
        if seed_list is not None and not all(s.isdigit() for s in seed_list):
            raise W2vtkError(f"--seeds {seeds!r}: expected non-negative integers")
        if curves:
            from w2vtk.curves import report_curves

            if not _list(sets) or not seed_list:
                raise W2vtkError("--curves needs --sets and --seeds")
            written = report_curves(exp, sets=_list(sets), metrics=_list(metrics) or ["wer", "ler"],
                                    systems=_list(systems) or list(SYSTEMS), seeds=[int(s) for s in seed_list],
                                    am_minutes=_list(am_minutes) or [], main_am_minutes=main_am_minutes,
                                    pretrain_minutes=_list(pretrain_minutes) or [],
                                    main_pretrain_minutes=main_pretrain_minutes, plot_set=plot_set)
            console.print("wrote " + ", ".join(str(p) for p in written), highlight=False, markup=False)
            return
        json_path, md_path = report_results(exp, _list(sets), _list(metrics), _list(systems),
                                            None if seed_list is None else [int(s) for s in seed_list],
                                            title=title, command=command)
        console.print(f"wrote {json_path} and {md_path}", highlight=False, markup=False)
