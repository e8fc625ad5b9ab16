"""``w2vtk score [--wer] [--ler] [--per] REF HYP``: Kaldi compute-wer counts and lines for Kaldi text files."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer, prep_app: typer.Typer) -> None:
    @app.command("score")
    def score_cmd(
        ref: Path = typer.Argument(..., help="Reference Kaldi text file (<utt-id> <words...>), or a data dir (its text)."),
        hyp: Path = typer.Argument(..., help="Hypothesis Kaldi text file; reports go next to it."),
        wer: bool = typer.Option(False, "--wer", help="Word error rate."),
        ler: bool = typer.Option(False, "--ler", help="Letter error rate (wav2letter: letters, words joined by '|')."),
        per: bool = typer.Option(False, "--per", help="Phone error rate, both sides folded to TIMIT's 39 phones."),
        filter: str = typer.Option(None, "--filter", help="Scoring filter: kaldi-wsj (drops <NOISE>, "
                                   "<SPOKEN_NOISE>, <UNK>; deletes ':' and '*' in words)."),
        case_fold: bool = typer.Option(False, "--case-fold", help="Compare case-insensitively."),
        mode: str = typer.Option("all", "--mode", help="Missing hypotheses, as compute-wer --mode: all "
                                 "(scored as empty, [PARTIAL]), present (skipped, [PARTIAL]), strict (error)."),
        per_speaker: Path = typer.Option(None, "--per-speaker", help="utt2spk file: add a per-speaker table "
                                         "(and per_speaker.tsv)."),
        out_dir: Path = typer.Option(None, "--out-dir", help="Write wer.txt, alignments.txt, score.json here "
                                     "instead of HYP's directory (named wer_<stem>.txt ... for a HYP not "
                                     "named hyp.txt)."),
        token_check: bool = typer.Option(True, "--token-check/--no-token-check", help="Stop when fewer than "
                                         "half of the hypothesis tokens occur in the reference."),
    ) -> None:
        """Score HYP against REF (WER and LER when no metric is named); prints compute-wer's lines and a table."""
        from w2vtk.progress import LoggedConsole

        from w2vtk.scoring import score_files, score_table, speaker_table

        metrics = [m for m, on in (("wer", wer), ("ler", ler), ("per", per)) if on] or ["wer", "ler"]
        result = score_files(ref, hyp, metrics, out_dir=out_dir, case_fold=case_fold, filter=filter,
                             mode=mode, utt2spk=per_speaker, check_tokens=token_check)
        console = LoggedConsole()
        for line in result.lines():
            console.print(line, highlight=False, markup=False)
        console.print(score_table(result, title=f"score: {hyp}"))
        if result.per_speaker is not None:
            console.print(speaker_table(result))
        from w2vtk.scoring import report_names

        console.print(f"wrote {', '.join(report_names(hyp))} in {out_dir or hyp.parent}", highlight=False,
                      markup=False)
