"""``w2vtk prep librispeech CORPUS_DIR OUT_DIR``: LibriSpeech subsets -> data dirs + LM text."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer, prep_app: typer.Typer) -> None:
    @prep_app.command("librispeech")
    def prep_librispeech_cmd(
        corpus_dir: Path = typer.Argument(..., help="LibriSpeech/ (OpenSLR 12 layout) or the directory "
                                          "holding it."),
        out_dir: Path = typer.Argument(..., help="Output root: OUT_DIR/<set> (dev_clean, train_clean_100, "
                                       "..., train_960), OUT_DIR/local/lm_text.txt."),
        subsets: Optional[List[str]] = typer.Option(None, "--subsets", help="Subsets to prepare, repeated "
                                                    "or comma-separated (dev-clean or dev_clean; "
                                                    "train_960 = its three parts). Default: all present."),
        speaker: str = typer.Option("reader-chapter", "--speaker", help="Speaker id: reader-chapter "
                                    "(Kaldi's choice) or reader."),
        lm_dir: Optional[Path] = typer.Option(None, "--lm-dir", help="Directory with the OpenSLR 11 files "
                                              "(4-gram.arpa.gz, librispeech-lexicon.txt, "
                                              "librispeech-lm-norm.txt.gz, ...). Default: LibriSpeech/ "
                                              "and its parent."),
    ) -> None:
        """Prepare LibriSpeech: one data dir per subset (+ train_960), LM text, LM resources linked."""
        from w2vtk.corpora.librispeech import prepare_librispeech

        prepare_librispeech(corpus_dir, out_dir, subsets=subsets, speaker=speaker, lm_dir=lm_dir)
