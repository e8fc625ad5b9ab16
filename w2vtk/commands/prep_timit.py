"""``w2vtk prep timit CORPUS_DIR OUT_DIR [--phone-set 48|39]``: TIMIT -> train / dev / test data dirs."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer, prep_app: typer.Typer) -> None:
    @prep_app.command("timit")
    def prep_timit_cmd(
        corpus_dir: Path = typer.Argument(..., help="TIMIT copy (TRAIN/ and TEST/, any case, optional data/ level)."),
        out_dir: Path = typer.Argument(..., help="Output root: OUT_DIR/{train,dev,test}, OUT_DIR/local/lm_text.txt."),
        phone_set: int = typer.Option(48, "--phone-set", help="Fold the 61 TIMIT phones to 48 (Kaldi) or 39."),
    ) -> None:
        """Prepare TIMIT: train (3696 utts), dev (400), core test (192); SA sentences excluded."""
        from w2vtk.corpora.timit import prep_timit

        prep_timit(corpus_dir, out_dir, phone_set=phone_set)
