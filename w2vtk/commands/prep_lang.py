"""``w2vtk prep lang --type letters|phones|spm --text TEXT --out DIR``: the token set (tokens.txt, lang.yaml[, spm.model])."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer, prep_app: typer.Typer) -> None:
    @prep_app.command("lang")
    def prep_lang_cmd(
        token_type: str = typer.Option(..., "--type", help="letters | phones | spm."),
        text: Path = typer.Option(..., "--text", help="Training transcripts: data/<train>/text."),
        out: Path = typer.Option(..., "--out", help="Lang dir to write, e.g. data/lang."),
        vocab_size: int = typer.Option(500, "--vocab-size", help="spm: number of pieces (blank and unk included)."),
        spm_type: str = typer.Option("unigram", "--spm-type", help="spm: unigram | bpe."),
        phone_set: int = typer.Option(48, "--phone-set", help="phones: TIMIT 48 or 39 (text folded to 39)."),
        unk_token: str = typer.Option(None, "--unk-token", help="Map symbols outside the set to this token "
                                      "(added to the set) instead of failing."),
        replabel: int = typer.Option(0, "--replabel", help="ASG: add the repetition labels <1> .. <N> "
                                     "(wav2letter's --replabel; 0: none; implies --criterion asg)."),
        criterion: str = typer.Option(None, "--criterion", help="ctc: blank <blk> at index 0; asg: no blank "
                                      "(letters, phones). Default: asg with --replabel, else ctc."),
    ) -> None:
        """Build the token set shared by train-am, prep lm, decode and score (CTC: blank <blk> = 0)."""
        from rich.table import Table

        from w2vtk.tokens import build_lang

        tset = build_lang(text, out, token_type, vocab_size=vocab_size, spm_type=spm_type,
                          phone_set=phone_set, unk_token=unk_token, replabel=replabel,
                          criterion=criterion)
        info = tset.info
        table = Table(title=f"lang: {out}")
        table.add_column("field")
        table.add_column("value")
        table.add_row("type", info.type + (f" ({info.spm_type})" if info.spm_type else ""))
        table.add_row("tokens" + (" (with blank)" if tset.blank is not None else " (no blank: ASG)"), str(len(tset)))
        table.add_row("boundary '|'", "-" if tset.boundary is None else str(tset.boundary))
        if info.letters_set:
            table.add_row("letter set", info.letters_set)
        if info.phone_set:
            table.add_row("phone set", str(info.phone_set))
        table.add_row("case", str(info.case))
        table.add_row("unk token", str(info.unk_token))
        if info.replabel:
            table.add_row("repetition labels", str(info.replabel))
        shown = " ".join(tset.symbols[:40]) + (" ..." if len(tset.symbols) > 40 else "")
        table.add_row("tokens", shown)
        from rich.markup import escape

        from w2vtk.progress import LoggedConsole

        console = LoggedConsole()

        console.print(table)
        for line in tset.warnings:
            console.print(f"[yellow]warning: {escape(line)}[/yellow]", highlight=False)
