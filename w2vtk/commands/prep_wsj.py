"""``w2vtk prep wsj --wsj0 DIR --wsj1 DIR OUT_DIR``: WSJ0 + WSJ1 -> the five standard data dirs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer, prep_app: typer.Typer) -> None:
    @prep_app.command("wsj")
    def prep_wsj_cmd(
        out_dir: Path = typer.Argument(..., help="Output root: OUT_DIR/<set>/, OUT_DIR/local/lm_text.txt."),
        wsj0: Path = typer.Option(..., "--wsj0", help="Directory holding the WSJ0 discs (11-1.1 ... 11-13.1)."),
        wsj1: Path = typer.Option(..., "--wsj1", help="Directory holding the WSJ1 discs (13-1.1 ... 13-34.1)."),
        transcripts: str = typer.Option("kaldi", "--transcripts",
                                        help="Normalisation of transcripts and LM text: kaldi | wav2letter."),
        audio_out: Optional[Path] = typer.Option(None, "--audio-out",
                                                 help="Convert every .wv1 once to 16-bit FLAC here; wav.scp points at them."),
        decoder: Optional[str] = typer.Option(None, "--decoder",
                                              help="Shorten decoder: sph2pipe | ffmpeg | desphere (default: first available)."),
        jobs: Optional[int] = typer.Option(None, "--jobs", help="Parallel FLAC conversions (default: up to 4)."),
    ) -> None:
        """Prepare WSJ: train_si284, train_si84, test_dev93, test_eval92, test_eval93 + LM text."""
        from w2vtk.corpora.wsj import prep_wsj

        prep_wsj(wsj0, wsj1, out_dir, transcripts=transcripts, audio_out=audio_out, decoder=decoder,
                 jobs=jobs)
