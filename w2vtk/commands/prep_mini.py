"""``w2vtk prep mini OUT_DIR``: synthesize the built-in espeak-ng corpus and prepare train/dev/test."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer, prep_app: typer.Typer) -> None:
    @prep_app.command("mini")
    def prep_mini_cmd(
        out_dir: Path = typer.Argument(..., help="Output root: OUT_DIR/{train,dev,test}, "
                                       "OUT_DIR/local/lm_text.txt."),
        corpus_dir: Optional[Path] = typer.Option(None, "--corpus-dir", help="Where the synthesized "
                                                  "LibriSpeech-layout corpus goes (default OUT_DIR/corpus)."),
        minutes: float = typer.Option(20.0, "--minutes", help="Total audio in minutes (about)."),
        seed: int = typer.Option(0, "--seed", help="Fixes speakers, sentences and audio (same seed: "
                                 "byte-identical FLAC on the same machine)."),
        speakers: Optional[int] = typer.Option(None, "--speakers", help="Pseudo-speakers (default "
                                               "max(6, 0.8 per minute)); about 1/8 each for dev, test."),
        held_speakers: Optional[int] = typer.Option(None, "--held-speakers", help="Speakers in each of "
                                                    "dev and test (default about 1/8 of all); their "
                                                    "voices are never train voices."),
        held_minutes: Optional[float] = typer.Option(None, "--held-minutes", help="Minutes in each of dev "
                                                     "and test (default: every speaker an equal share)."),
        lm_sentences: int = typer.Option(20000, "--lm-sentences", help="Extra grammar sentences for the "
                                         "LM text (never a corpus sentence)."),
        workers: Optional[int] = typer.Option(None, "--workers", help="Synthesis processes (default: the "
                                              "usable CPU cores)."),
    ) -> None:
        """Synthesize the mini corpus (espeak-ng voices as speakers) and prepare train / dev / test."""
        from w2vtk.corpora.mini import synthesize_mini

        synthesize_mini(out_dir, minutes=minutes, seed=seed, corpus_dir=corpus_dir, speakers=speakers,
                        held_speakers=held_speakers, held_minutes=held_minutes, lm_sentences=lm_sentences, workers=workers)
