"""``w2vtk prep lm --text TEXT --lang DIR --order 4 --out DIR``: KenLM n-gram + words + lexicon (see w2vtk.lm)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer, prep_app: typer.Typer) -> None:
    @prep_app.command("lm")
    def prep_lm_cmd(
        text: Path = typer.Option(None, "--text", help="LM text, one sentence per line (data/local/lm_text.txt)."),
        lang: Path = typer.Option(..., "--lang", help="Lang dir with tokens.txt (w2vtk prep lang)."),
        out: Path = typer.Option(..., "--out", help="LM dir to write, e.g. data/lang_4g."),
        order: int = typer.Option(4, "--order", help="N-gram order, 1..32; above 6 needs KenLM built with bin/install.sh --lm-max-order 20."),
        unit: str = typer.Option("word", "--unit", help="word (lexicon decoder) | token (lexicon-free decoder)."),
        vocab: Path = typer.Option(None, "--vocab", help="Restrict the vocabulary to this word list "
                                   "(first field per line, '#' comments), e.g. WSJ's wlist20o.nvp."),
        prune: str = typer.Option(None, "--prune", help="lmplz --prune count thresholds per order, e.g. '0 0 1'."),
        memory: str = typer.Option("20%", "--memory", help="lmplz / build_binary -S memory cap (20%, 2G)."),
        exclude_digits: bool = typer.Option(False, "--exclude-digits/--no-exclude-digits",
                                            help="Leave words containing a digit out of the vocabulary "
                                                 "(wav2letter's WSJ recipe)."),
        lexicon_dict: Path = typer.Option(None, "--lexicon-dict", help="Pronunciation dictionary "
                                          "(WORD ph1 ph2 ...) for a phone token set."),
        arpa: Path = typer.Option(None, "--arpa", help="Use this ARPA instead of estimating one "
                                  "(e.g. an official 4-gram); its unigrams are the vocabulary."),
        ppl_text: Path = typer.Option(None, "--ppl-text", help="Report the perplexity of this text "
                                      "(plain sentences, or a data dir: its text)."),
    ) -> None:
        """Build lm.arpa, lm.bin (KenLM), words.txt, lexicon.txt and a copy of tokens.txt."""
        from w2vtk.progress import LoggedConsole
        from rich.table import Table

        from w2vtk.lm import build_lm

        console = LoggedConsole()

        def log(msg: str) -> None:
            console.print(msg, highlight=False, markup=False)

        res = build_lm(text, lang, out, order=order, unit=unit, vocab=vocab, prune=prune, memory=memory,
                       exclude_digits=exclude_digits, lexicon_dict=lexicon_dict, arpa=arpa,
                       ppl_text=ppl_text, log=log)
        for w in res.warnings:
            LoggedConsole(stderr=True).print(f"warning: {w}", highlight=False, markup=False)
        table = Table(title=f"prep lm: {out}")
        table.add_column("field")
        table.add_column("value", justify="right")
        table.add_row("unit / order", f"{res.unit} / {res.order}")
        table.add_row("estimated by", res.builder)
        table.add_row("sentences / words", f"{res.num_sentences:,} / {res.num_words:,}")
        table.add_row("vocabulary", f"{res.vocab_size:,}")
        table.add_row("lexicon words", f"{res.lexicon_words:,}")
        table.add_row("skipped words", f"{len(res.skipped):,}")
        for n, c in sorted(res.ngram_counts.items()):
            table.add_row(f"{n}-grams", f"{c:,}")
        table.add_row("binary", str(res.binary) if res.binary else "- (ARPA only)")
        if res.ppl is not None:
            table.add_row("perplexity", f"{res.ppl['ppl']:.2f} ({res.ppl['oov']} OOV)")
        console.print(table)
