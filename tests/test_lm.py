"""w2vtk.lm / `w2vtk prep lm`: KenLM building (lmplz and the pure-Python fallback), lexicons for
letters, phones and sentencepiece, vocabulary options, perplexity, bad input."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from w2vtk import lm as lm_mod
from w2vtk.lm import build as lm_build
from w2vtk.errors import W2vtkError
from w2vtk.lm import build_lm, estimate_kn_arpa, find_kenlm_binary, perplexity
from w2vtk.tokens import build_lang

from system_tools import require_tool

TEXT = """THE CAT SAT ON THE MAT
THE DOG SAT ON THE LOG
A CAT AND A DOG SAT
THE CAT SAW THE DOG
THE DOG SAW A CAT ON THE MAT
"""
MEM = "100M"  # keep lmplz's -S small: tests run beside other jobs


def _lang(tmp: Path, text: str = "the cat sat\nthe dog sat\n", kind: str = "letters", **kw) -> Path:
    tr = tmp / "train_text"
    tr.write_text("".join(f"u{i} {line}\n" for i, line in enumerate(text.strip().splitlines())))
    out = tmp / f"lang_{kind}"
    build_lang(tr, out, kind, **kw)
    return out


def _lm_text(tmp: Path, text: str = TEXT) -> Path:
    p = tmp / "lm_text.txt"
    p.write_text(text)
    return p


def test_kenlm_binaries_are_built():
    # bin/install.sh builds them; a missing build fails loudly (skips only after --no-system).
    for name in ("lmplz", "build_binary"):
        require_tool(find_kenlm_binary(name) is not None,
                     f"KenLM's {name} (looked for in $KENLM_BIN, tools/kenlm/bin and PATH)")


def _need_lmplz() -> None:
    require_tool(find_kenlm_binary("lmplz") is not None, "KenLM's lmplz")


def test_letters_lm_with_lmplz(tmp_path):
    _need_lmplz()
    import kenlm

    lang = _lang(tmp_path)  # lower-case letters; the LM text is upper case
    dev = tmp_path / "dev.txt"
    dev.write_text("THE CAT SAT ON THE LOG\n")
    res = build_lm(_lm_text(tmp_path), lang, tmp_path / "lm", order=3, memory=MEM, ppl_text=dev)
    out = tmp_path / "lm"
    assert res.builder == "lmplz" and res.binary == out / "lm.bin" and res.order == 3
    assert (out / "words.txt").read_text().split() == sorted("the cat sat on mat dog log a and saw".split())
    lex = dict(line.split("\t") for line in (out / "lexicon.txt").read_text().splitlines())
    assert lex["cat"] == "c a t |" and lex["a"] == "a |"
    assert (out / "tokens.txt").read_text() == (lang / "tokens.txt").read_text()
    assert res.ngram_counts[1] == 10 + 3  # words + <s>, </s>, <unk>
    assert not res.skipped and (out / "skipped_words.txt").read_text() == ""
    model = kenlm.Model(str(out / "lm.bin"))
    assert model.order == 3 and "cat" in model and "CAT" not in model
    assert 1.0 < res.ppl["ppl"] < 20 and res.ppl["oov"] == 0
    # the perplexity function agrees with the one stored in the build
    assert perplexity(out / "lm.bin", dev, to_case=str.lower)["ppl"] == res.ppl["ppl"]
    meta = (out / "lm.yaml").read_text()
    assert "builder: lmplz" in meta and "silence: '|'" in meta


def test_words_outside_the_tokens_are_skipped_and_listed(tmp_path):
    lang = _lang(tmp_path)
    text = _lm_text(tmp_path, TEXT + "THE CAFÉ B52 SAT\n")
    res = build_lm(text, lang, tmp_path / "lm", order=2, memory=MEM)
    assert set(res.skipped) == {"café", "b52"}
    listed = (tmp_path / "lm" / "skipped_words.txt").read_text()
    assert "café\t" in listed and "b52\t" in listed and "'é'" in listed
    assert any("2 word(s) cannot be spelled" in w for w in res.warnings)
    lex_words = {line.split("\t")[0] for line in (tmp_path / "lm" / "lexicon.txt").read_text().splitlines()}
    assert "café" not in lex_words and "cat" in lex_words
    # WSJ-style: words with digits are not even in the vocabulary
    res = build_lm(text, lang, tmp_path / "lm2", order=2, memory=MEM, exclude_digits=True)
    assert set(res.skipped) == {"café"}
    assert "b52" not in (tmp_path / "lm2" / "words.txt").read_text().split()


def test_vocab_file_restricts_the_vocabulary(tmp_path):
    lang = _lang(tmp_path)
    vocab = tmp_path / "wlist"
    vocab.write_text("#\tcomment line of wlist20o.nvp\nTHE\nCAT\nSAT\nON\nMAT\n")
    res = build_lm(_lm_text(tmp_path), lang, tmp_path / "lm", order=3, memory=MEM, vocab=vocab)
    assert (tmp_path / "lm" / "words.txt").read_text().split() == ["cat", "mat", "on", "sat", "the"]
    unigrams = set(lm_mod.arpa_unigrams(tmp_path / "lm" / "lm.arpa"))
    assert "dog" not in unigrams and "cat" in unigrams
    assert res.vocab_size == 5


def test_python_fallback_matches_lmplz_counts_and_is_normalised(tmp_path, monkeypatch):
    _need_lmplz()
    import kenlm

    lang = _lang(tmp_path)
    text = _lm_text(tmp_path)
    ref = build_lm(text, lang, tmp_path / "lmplz", order=3, memory=MEM)
    monkeypatch.setattr(lm_build, "find_kenlm_binary", lambda name: None)
    res = build_lm(text, lang, tmp_path / "py", order=3, memory=MEM)
    assert res.builder == "python-kn" and res.binary is None
    assert any("pure-Python" in w for w in res.warnings)
    assert res.ngram_counts == ref.ngram_counts
    model = kenlm.Model(str(tmp_path / "py" / "lm.arpa"))
    vocab = (tmp_path / "py" / "words.txt").read_text().split() + ["</s>", "<unk>"]
    for context in ([], ["the"], ["the", "cat"], ["a", "dog"]):
        state = kenlm.State()
        model.BeginSentenceWrite(state)
        for w in context:
            nxt = kenlm.State()
            model.BaseScore(state, w, nxt)
            state = nxt
        total = sum(10 ** model.BaseScore(state, w, kenlm.State()) for w in vocab)
        assert total == pytest.approx(1.0, abs=1e-4), context
    dev = tmp_path / "dev.txt"
    dev.write_text("the cat sat on the log\n")
    p_ref, p_py = perplexity(ref.binary, dev)["ppl"], perplexity(tmp_path / "py" / "lm.arpa", dev)["ppl"]
    assert abs(math.log(p_py / p_ref)) < 0.25  # one discount per order vs modified KN's three
    # big texts need lmplz
    monkeypatch.setattr(lm_build, "FALLBACK_MAX_WORDS", 10)
    with pytest.raises(W2vtkError, match="install_kenlm"):
        build_lm(text, lang, tmp_path / "py2", order=3)


def test_kn_fallback_writes_backoffs_for_contexts(tmp_path):
    counts = estimate_kn_arpa([["a", "b"], ["a", "c"]], 2, tmp_path / "x.arpa")
    arpa = (tmp_path / "x.arpa").read_text()
    assert counts == {1: 6, 2: 5} and "\\2-grams:" in arpa
    line_a = next(line for line in arpa.splitlines() if line.split("\t")[1:2] == ["a"])
    assert len(line_a.split("\t")) == 3  # "a" is a context: it carries a backoff weight


def test_spm_lexicon(tmp_path):
    text = "the cat sat on the mat\nthe dog sat on the log\na cat and a dog sat\n" * 3
    lang = _lang(tmp_path, text, "spm", vocab_size=19)
    res = build_lm(_lm_text(tmp_path), lang, tmp_path / "lm", order=2, memory=MEM)
    lex = dict(line.split("\t") for line in (tmp_path / "lm" / "lexicon.txt").read_text().splitlines())
    assert "".join(lex["cat"].split()) == "▁cat"
    assert (tmp_path / "lm" / "spm.model").is_file() and res.lexicon_words == 9
    assert set(res.skipped) == {"saw"}  # 'w' never occurs in the sentencepiece training text
    assert "silence: null" in (tmp_path / "lm" / "lm.yaml").read_text()


def test_phone_lexicon_from_a_dictionary(tmp_path):
    lang = _lang(tmp_path, "dh ah k ae t s ae t\n", "phones", phone_set=48)
    text = _lm_text(tmp_path, "the cat sat\nthe cat\nzebra sat\n")
    with pytest.raises(W2vtkError, match="--lexicon-dict"):
        build_lm(text, lang, tmp_path / "lm", order=2, memory=MEM)
    cmu = tmp_path / "cmudict"
    cmu.write_text(";;; comment\nTHE  DH AH0\nTHE(2)  DH IY0\nCAT  K AE1 T\nSAT  S AE1 T\n")
    res = build_lm(text, lang, tmp_path / "lm", order=2, memory=MEM, lexicon_dict=cmu)
    lex = (tmp_path / "lm" / "lexicon.txt").read_text().splitlines()
    assert "the\tdh ah" in lex and "the\tdh iy" in lex and "cat\tk ae t" in lex
    assert res.skipped == {"zebra": "not in the pronunciation dictionary"}
    assert "silence: sil" in (tmp_path / "lm" / "lm.yaml").read_text()


def test_token_level_lm(tmp_path):
    import kenlm

    lang = _lang(tmp_path)
    res = build_lm(_lm_text(tmp_path), lang, tmp_path / "tok", order=6, unit="token", memory=MEM)
    model = kenlm.Model(str(tmp_path / "tok" / "lm.bin"))
    assert model.order == 6 and res.unit == "token"
    assert "|" in model and "c" in model and "cat" not in model
    # a seen letter string scores better than a scrambled one
    assert model.score("t h e | c a t", bos=True, eos=True) > model.score("t c e | h a t", bos=True, eos=True)
    with pytest.raises(W2vtkError, match="choose 1..32"):
        build_lm(_lm_text(tmp_path), lang, tmp_path / "tok40", order=40, unit="token")


def test_arpa_in_another_case_warns_with_the_overlap(tmp_path):
    lang = _lang(tmp_path)
    upper = tmp_path / "upper.arpa"
    estimate_kn_arpa([line.split() for line in TEXT.splitlines()], 2, upper)
    res = build_lm(None, lang, tmp_path / "lm", arpa=upper, memory=MEM)
    warning = next(w for w in res.warnings if "of the lexicon's words are in the LM" in w)
    assert "only 0.0%" in warning and "upper case" in warning and "lower case" in warning


def test_prep_lm_cli(tmp_path, capsys):
    from w2vtk.cli import main

    lang = _lang(tmp_path)
    text = _lm_text(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["prep", "lm", "--text", str(text), "--lang", str(lang), "--order", "2", "--out",
              str(tmp_path / "lm"), "--memory", MEM])
    assert exc.value.code in (0, None)
    assert (tmp_path / "lm" / "lm.bin").is_file() and "2-grams" in capsys.readouterr().out
    bad_cases = [
        (["--order", "33"], "--order 33"),
        (["--unit", "char"], "--unit"),
        (["--memory", "lots"], "--memory"),
        (["--prune", "1 1"], "--prune"),
    ]
    for extra, msg in bad_cases:
        with pytest.raises(SystemExit) as exc:
            main(["prep", "lm", "--text", str(text), "--lang", str(lang), "--out", str(tmp_path / "bad")] + extra)
        err = capsys.readouterr().err
        assert exc.value.code == 1 and err.startswith("error:") and msg in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad" / "lm.yaml").exists()
    with pytest.raises(SystemExit) as exc:
        main(["prep", "lm", "--text", str(text), "--lang", str(tmp_path / "nolang"), "--out", str(tmp_path / "bad")])
    assert exc.value.code == 1 and "tokens.txt" in capsys.readouterr().err


def test_prune_drops_singleton_ngrams(tmp_path):
    lang = _lang(tmp_path)
    text = _lm_text(tmp_path)
    full = build_lm(text, lang, tmp_path / "full", order=3, memory=MEM)
    pruned = build_lm(text, lang, tmp_path / "pruned", order=3, memory=MEM, prune="0 1 1")
    assert pruned.ngram_counts[1] == full.ngram_counts[1]
    assert pruned.ngram_counts[2] < full.ngram_counts[2] and pruned.ngram_counts[3] < full.ngram_counts[3]
    assert "prune:\n- 0\n- 1\n- 1" in (tmp_path / "pruned" / "lm.yaml").read_text()


def test_ppl_text_without_the_kenlm_module_is_one_clear_error_before_building(tmp_path, monkeypatch):
    import sys

    lang = _lang(tmp_path)
    dev = tmp_path / "dev.txt"
    dev.write_text("the cat\n")
    monkeypatch.setitem(sys.modules, "kenlm", None)  # as if not installed: import raises ImportError
    with pytest.raises(W2vtkError, match="--ppl-text needs the kenlm Python module.*pip install kenlm"):
        build_lm(_lm_text(tmp_path), lang, tmp_path / "lm", order=3, memory=MEM, ppl_text=dev)
    assert not (tmp_path / "lm").exists()
    with pytest.raises(W2vtkError, match="--ppl-text .*missing.txt: file not found"):
        build_lm(_lm_text(tmp_path), lang, tmp_path / "lm", order=3, memory=MEM, ppl_text=tmp_path / "missing.txt")
