"""``w2vtk train-am``: CTC acoustic model on a feature data dir (see :mod:`w2vtk.am.train`)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer, prep_app: typer.Typer) -> None:
    @app.command("train-am", context_settings={"allow_extra_args": False})
    def train_am_cmd(
        conf: Optional[Path] = typer.Option(None, "--conf", help="Config YAML (conf/am/timit.yaml, "
                                            "wsj.yaml, tiny.yaml). Default: EXP/config.yaml when resuming, "
                                            "else the built-in defaults."),
        lang: Path = typer.Option(..., "--lang", help="Lang dir with tokens.txt (w2vtk prep lang)."),
        train: Path = typer.Option(..., "--train", help="Training feature data dir (feats.scp + text)."),
        valid: Path = typer.Option(..., "--valid", help="Dev feature data dir (feats.scp + text)."),
        exp: Path = typer.Option(..., "--exp", help="Experiment dir; an existing checkpoint_last.pt "
                                 "there is resumed."),
        allow_feature_mismatch: bool = typer.Option(False, "--allow-feature-mismatch", help="Use features "
                                                    "whose type / checkpoint / layer differ from the "
                                                    "experiment's (feats.yaml)."),
        allow_changes: bool = typer.Option(False, "--allow-changes", help="Resume with settings that differ "
                                           "from EXP/config.yaml (the old file is kept as config.<N>.yaml); "
                                           "without it such a rerun is refused with the differences listed."),
        overrides: Optional[List[str]] = typer.Argument(None, metavar="[KEY=VALUE]...",
                                                        help="Config overrides, e.g. optim.lr=1e-3 "
                                                        "max_epochs=20 model.dropout=0.2."),
    ) -> None:
        """Train a CTC acoustic model; prints one row per epoch, keeps best / averaged checkpoints."""
        from w2vtk.am.config import TrainAMConfig
        from w2vtk.am.train import train_am
        from w2vtk.config import load_config
        from w2vtk.dist import cleanup, env_info
        from w2vtk.progress import console

        if conf is None and (exp / "config.yaml").is_file() and (exp / "checkpoint_last.pt").is_file():
            conf = exp / "config.yaml"  # a rerun continues the experiment as configured
        from w2vtk.logs import command_log

        with command_log(exp, "train-am"):
            cfg = load_config(TrainAMConfig, conf, overrides)
            try:
                result = train_am(cfg, lang_dir=lang, train_dir=train, valid_dir=valid, exp_dir=exp,
                                  allow_feature_mismatch=allow_feature_mismatch, allow_changes=allow_changes)
            finally:
                cleanup()
            if env_info().is_main:
                _summary(cfg, result, console)


def _summary(cfg, result, console) -> None:
    if result.stopped_early:
        console.print(f"stopped after {result.updates} updates (optim.max_update); resume with the same "
                      f"command -> {result.exp_dir}", highlight=False)
    else:
        best = "-" if result.best_error is None else f"{result.best_error:.2f}"
        console.print(f"train-am done: {result.epochs_done} epochs, {result.updates} updates, best dev "
                      f"{cfg.best_metric} {best} (epoch {result.best_epoch}) -> {result.exp_dir}",
                      highlight=False)
