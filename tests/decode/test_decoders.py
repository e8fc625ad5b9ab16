"""Greedy, lexicon and lexicon-free decoders on synthetic emissions whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from decode_synth import TEXT, emissions_for
from w2vtk.decoding import BeamConfig, Decoder
from w2vtk.decoding.search import greedy_ids
from w2vtk.lm import LMResources
from w2vtk.tokens import ctc_collapse
from w2vtk.errors import W2vtkError


def _confused(tok, text: str, changes: list[tuple[int, int, str, float]], **kw) -> np.ndarray:
    """Emissions of ``text`` with (word index, char index, wrong token, margin) confusions."""
    words = text.split()
    confuse = {}
    for w, c, other, margin in changes:
        k = sum(len(x) + 1 for x in words[:w]) + c
        confuse[k] = (tok.index(other), margin)
    return emissions_for(tok.encode(text), len(tok), confuse=confuse, **kw)


def test_greedy_reads_the_best_path(lm_case):
    *_, tok = lm_case
    ids = tok.encode("a book all see")
    em = emissions_for(ids, len(tok), hold=3)
    assert greedy_ids(em) == ids  # doubled letters survive thanks to the blank between them
    hyp = Decoder("greedy", tok, BeamConfig()).decode(em)[0]
    assert hyp.words == ["a", "book", "all", "see"]
    assert ctc_collapse([0, 5, 5, 0, 5, 7, 7, 0]) == [5, 5, 7]


def test_lexicon_and_lexfree_decode_known_sentences_exactly(lm_case):
    _, _, word_lm, tok_lm, tok = lm_case
    rng = np.random.default_rng(0)
    lex = Decoder("lexicon", tok, BeamConfig(lm_weight=1.0, beam_size=50), LMResources(word_lm, tok, "lexicon"))
    free = Decoder("lexfree", tok, BeamConfig(lm_weight=0.5, sil_score=0.0, beam_size=50),
                   LMResources(tok_lm, tok, "lexfree"))
    for line in TEXT.lower().splitlines():
        em = emissions_for(tok.encode(line), len(tok), noise=1.0, rng=rng)
        assert lex.decode(em)[0].words == line.split()
        assert free.decode(em)[0].words == line.split()


def test_lm_scores_are_log10_as_kenlm(lm_case):
    """flashlight's KenLM passes KenLM's log10 scores through: a hypothesis' lmScore is the log10
    probability of its words (with </s>), which is why lm_weight weighs log10 units."""
    import kenlm

    _, _, word_lm, _, tok = lm_case
    model = kenlm.Model(str(word_lm / "lm.bin"))
    dec = Decoder("lexicon", tok, BeamConfig(lm_weight=1.0, beam_size=50), LMResources(word_lm, tok, "lexicon"))
    for line in ("the cat sat on the mat", "a dog sat"):
        hyp = dec.decode(emissions_for(tok.encode(line), len(tok)))[0]
        assert hyp.words == line.split()
        assert hyp.lm_score == pytest.approx(model.score(line, bos=True, eos=True), abs=1e-3)


def test_the_lm_repairs_a_noisy_greedy_result(lm_case):
    _, _, word_lm, tok_lm, tok = lm_case
    res = LMResources(word_lm, tok, "lexicon")
    greedy = Decoder("greedy", tok, BeamConfig())
    # non-words: "the bog sat on the iog" -> the lexicon alone repairs them
    em = _confused(tok, "the dog sat on the log", [(1, 0, "b", 1.0), (5, 0, "i", 1.0)])
    assert greedy.decode(em)[0].words == "the bog sat on the iog".split()
    assert Decoder("lexicon", tok, BeamConfig(lm_weight=1.0), res).decode(em)[0].words == "the dog sat on the log".split()
    free = Decoder("lexfree", tok, BeamConfig(lm_weight=1.0), LMResources(tok_lm, tok, "lexfree"))
    assert free.decode(em)[0].words == "the dog sat on the log".split()
    # a real but unlikely word ("the cat mat on"): only the LM weight repairs it
    em = _confused(tok, "the cat sat on the mat", [(2, 0, "m", 1.0)])
    assert greedy.decode(em)[0].words == "the cat mat on the mat".split()
    assert Decoder("lexicon", tok, BeamConfig(lm_weight=0.0), res).decode(em)[0].words == "the cat mat on the mat".split()
    assert Decoder("lexicon", tok, BeamConfig(lm_weight=2.0), res).decode(em)[0].words == "the cat sat on the mat".split()


def test_nbest_lists(lm_case):
    _, _, word_lm, _, tok = lm_case
    em = _confused(tok, "the cat sat on the mat", [(2, 0, "m", 0.5)])
    hyps = Decoder("lexicon", tok, BeamConfig(lm_weight=1.0, nbest=3), LMResources(word_lm, tok, "lexicon")).decode(em)
    assert len(hyps) == 3
    assert len({" ".join(h.words) for h in hyps}) == 3
    assert hyps[0].score >= hyps[1].score >= hyps[2].score


def test_lm_dir_and_decoder_must_agree(lm_case, tmp_path):
    import shutil

    _, _, word_lm, tok_lm, tok = lm_case
    with pytest.raises(W2vtkError, match="token-level LM"):
        LMResources(word_lm, tok, "lexfree")
    with pytest.raises(W2vtkError, match="needs a word LM"):
        LMResources(tok_lm, tok, "lexicon")
    other = tmp_path / "lm"
    shutil.copytree(word_lm, other)
    (other / "tokens.txt").write_text("<blk> 0\n| 1\na 2\n")
    with pytest.raises(W2vtkError, match="differs from the acoustic model"):
        LMResources(other, tok, "lexicon")
    with pytest.raises(W2vtkError, match="do not match"):
        Decoder("greedy", tok, BeamConfig()).decode(np.zeros((5, 3), dtype=np.float32))


def test_sentencepiece_and_phone_lexicons_decode(tmp_path):
    """spm: no silence token (the blank stands in); phones: ``sil`` between words, lexicon from a
    pronunciation dictionary."""
    from w2vtk.lm import build_lm
    from w2vtk.tokens import TokenSet, build_lang

    text = "the cat sat on the mat\nthe dog sat on the log\na cat and a dog sat\nthe cat saw the dog\n" * 3
    (tmp_path / "tr").write_text("".join(f"u{i} {line}\n" for i, line in enumerate(text.splitlines())))
    (tmp_path / "lm.txt").write_text(TEXT)
    build_lang(tmp_path / "tr", tmp_path / "spm", "spm", vocab_size=20)
    build_lm(tmp_path / "lm.txt", tmp_path / "spm", tmp_path / "lm_spm", order=3, memory="100M")
    tok = TokenSet.load(tmp_path / "spm")
    res = LMResources(tmp_path / "lm_spm", tok, "lexicon")
    assert not res.has_silence and res.sil_idx == tok.blank
    dec = Decoder("lexicon", tok, BeamConfig(lm_weight=1.0, sil_score=-5.0), res)
    for line in TEXT.lower().splitlines():
        assert dec.decode(emissions_for(tok.encode(line), len(tok)))[0].words == line.split()

    (tmp_path / "ph").write_text("u1 sil dh ah k ae t s ae t sil\n")
    build_lang(tmp_path / "ph", tmp_path / "phones", "phones", phone_set=48)
    (tmp_path / "dict").write_text("THE DH AH0\nCAT K AE1 T\nSAT S AE1 T\nMAT M AE1 T\nON AA1 N\n")
    (tmp_path / "lm2.txt").write_text("the cat sat on the mat\nthe cat sat\n")
    build_lm(tmp_path / "lm2.txt", tmp_path / "phones", tmp_path / "lm_ph", order=2, memory="100M",
             lexicon_dict=tmp_path / "dict")
    tok = TokenSet.load(tmp_path / "phones")
    res = LMResources(tmp_path / "lm_ph", tok, "lexicon")
    assert tok.tokens[res.sil_idx] == "sil"
    ids = [tok.index(p) for p in "sil dh ah k ae t sil s ae t sil".split()]
    hyp = Decoder("lexicon", tok, BeamConfig(lm_weight=1.0), res).decode(emissions_for(ids, len(tok)))[0]
    assert hyp.words == ["the", "cat", "sat"]


def test_decoder_warns_when_the_lm_case_differs_from_the_lexicon(lm_case, tmp_path):
    from w2vtk.lm import build_lm, estimate_kn_arpa

    _, lang, _, _, tok = lm_case
    upper = tmp_path / "upper.arpa"
    estimate_kn_arpa([line.split() for line in TEXT.splitlines()], 2, upper)
    build_lm(None, lang, tmp_path / "lm", arpa=upper, memory="100M")
    res = LMResources(tmp_path / "lm", tok, "lexicon")
    assert any("only 0.0% of" in w and "upper case" in w for w in res.warnings)


def test_lexfree_with_a_token_lm_of_order_12(lm_case, tmp_path):
    """wav2letter's lexicon-free setup: a 10-20-gram over letters.  With a KenLM toolchain built by
    ``bin/install_kenlm.sh --max-order 20 --python`` (what CI installs) it builds, loads and decodes;
    with PyPI's order-6 wheels it is refused before lmplz runs, naming the parts and the fix."""
    import kenlm

    from w2vtk.lm import build_lm, order_support_problems

    root, lang, _, _, tok = lm_case
    problems = order_support_problems(12)
    if problems:
        with pytest.raises(W2vtkError, match=r"install_kenlm\.sh --max-order 20 --python") as err:
            build_lm(root / "lm_text.txt", lang, tmp_path / "tok12", order=12, unit="token", memory="100M")
        assert "order 12" in str(err.value) and problems[0] in str(err.value)
        assert not (tmp_path / "tok12" / "lm.yaml").exists()
        return
    build_lm(root / "lm_text.txt", lang, tmp_path / "tok12", order=12, unit="token", memory="100M")
    assert kenlm.Model(str(tmp_path / "tok12" / "lm.bin")).order == 12
    free = Decoder("lexfree", tok, BeamConfig(lm_weight=1.0, beam_size=50), LMResources(tmp_path / "tok12", tok, "lexfree"))
    em = _confused(tok, "the dog sat on the log", [(1, 0, "b", 1.0), (5, 0, "i", 1.0)])
    assert free.decode(em)[0].words == "the dog sat on the log".split()


def test_an_order_the_toolchain_cannot_load_is_refused_with_the_fix(lm_case, tmp_path, monkeypatch):
    import w2vtk.lm as lm

    root, lang, *_ = lm_case
    monkeypatch.setitem(lm.ORDER_PROBES, 9, ["the kenlm Python module", "flashlight-text"])
    with pytest.raises(W2vtkError) as err:
        lm.build_lm(root / "lm_text.txt", lang, tmp_path / "tok9", order=9, unit="token", memory="100M")
    msg = str(err.value)
    assert "--order 9" in msg and "flashlight-text" in msg and "--max-order 20 --python" in msg
    assert not (tmp_path / "tok9").exists() or not (tmp_path / "tok9" / "lm.yaml").exists()


def _asg_emissions(ids: list[int], num_tokens: int, hold: int = 2, peak: float = 8.0,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """Raw ASG frame scores: each (packed) target token peaks for ``hold`` frames; no blank."""
    rows = []
    for tok in ids:
        for _ in range(hold):
            row = np.zeros(num_tokens)
            row[tok] = peak
            rows.append(row)
    em = np.stack(rows)
    if rng is not None:
        em = em + rng.normal(size=em.shape)
    return em.astype(np.float32)


def test_asg_greedy_and_lexicon_decoding_undo_repetition_labels(lm_case, tmp_path):
    """An ASG token set (--replabel 2): doubled letters are packed (b o <1> k), the Viterbi path and
    flashlight-text's lexicon decoder in ASG mode (its lexicon packed the same way) give the words."""
    from w2vtk.lm import build_lm
    from w2vtk.tokens import TokenSet, build_lang, pack_replabels

    root, *_ = lm_case
    build_lang(root / "train_text", tmp_path / "lang", "letters", replabel=2)
    (tmp_path / "lm_text.txt").write_text("A BOOK ALL SEE\nTHE CAT SAT ON THE MAT\nSEE A BOOK\nALL SEE THE CAT\n")
    build_lm(tmp_path / "lm_text.txt", tmp_path / "lang", tmp_path / "lm3", order=3, memory="100M")
    tok = TokenSet.load(tmp_path / "lang")
    n = len(tok)
    trans = np.zeros((n, n), dtype=np.float32)
    rng = np.random.default_rng(0)
    greedy = Decoder("greedy", tok, BeamConfig(), transitions=trans.tolist())
    lex = Decoder("lexicon", tok, BeamConfig(lm_weight=1.0, beam_size=50), LMResources(tmp_path / "lm3", tok, "lexicon"),
                  transitions=trans.tolist())
    for line in ("a book all see", "the cat sat on the mat", "see a book"):
        packed = pack_replabels(tok.encode(line), tok.replabel_ids)
        assert (tok.index("<1>") in packed) == ("book" in line or "see" in line)
        em = _asg_emissions(packed, n, rng=rng)
        assert greedy.decode(em)[0].words == line.split()
        hyp = lex.decode(em)[0]
        assert hyp.words == line.split() and tok.decode(hyp.tokens).split() == line.split()
    with pytest.raises(W2vtkError, match="transitions of shape"):
        Decoder("greedy", tok, BeamConfig(), transitions=[[0.0]])
