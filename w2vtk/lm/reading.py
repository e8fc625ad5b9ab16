"""Reading an LM dir (``prep lm``'s output) for decoding: the flashlight LM, lexicon trie and word
dictionary (:class:`LMResources`), its description and token checks, and perplexity."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable, Iterable

from w2vtk.config import read_yaml_file
from w2vtk.errors import W2vtkError
from w2vtk.lm.estimate import arpa_unigrams
from w2vtk.lm.lexicon import read_lexicon, read_sentences, text_case, token_sequence
from w2vtk.tokens import pack_replabels, read_tokens_txt, read_transcripts

def silence_token(tokens) -> str | None:
    """The decoder's silence token: ``|`` for letters, ``sil`` for TIMIT phones (the pause /
    closure class), none for sentencepiece (its pieces carry the word boundary ``▁``; the decoder
    then uses the blank as silence and the silence score is not tuned)."""
    if tokens.type == "letters":
        return "|"
    if tokens.type == "phones" and "sil" in tokens.tokens:
        return "sil"
    return None


def vocab_overlap(lm_words: Iterable[str], lexicon_words: Iterable[str]) -> tuple[float, str]:
    """(fraction of lexicon words known to the LM, a hint naming the case of each side)."""
    lm = {w for w in lm_words if w not in ("<s>", "</s>", "<unk>")}
    lex = set(lexicon_words)
    if not lex:
        return 0.0, ""
    rate = len(lex & lm) / len(lex)
    lm_case, lex_case = text_case(lm), text_case(lex)
    hint = f"LM words are {lm_case} case, lexicon words {lex_case} case" if lm_case != lex_case else ""
    return rate, hint


class LMResources:
    """The lexicon, word dictionary, KenLM and trie of an LM dir, built once and shared by decoders
    with different weights (the trie holds LM scores; the weight is applied by the decoder)."""

    def __init__(self, lm_dir: str | Path, tokens, decoder: str, check_overlap: bool = True):
        from flashlight.lib.text.decoder import SmearingMode, Trie
        from flashlight.lib.text.decoder.kenlm import KenLM
        from flashlight.lib.text.dictionary import Dictionary

        self.lm_dir = Path(lm_dir)
        self.tokens = tokens
        self.decoder = decoder
        lm_file = self.lm_dir / "lm.bin"
        if not lm_file.is_file():
            lm_file = self.lm_dir / "lm.arpa"
        if not lm_file.is_file():
            raise W2vtkError(f"{self.lm_dir}: no lm.bin or lm.arpa (make it with `w2vtk prep lm`)")
        check_lm_tokens(self.lm_dir, tokens)
        meta = read_lm_yaml(self.lm_dir)
        unit = meta.get("unit", "word")
        if decoder == "lexfree" and unit != "token":
            raise W2vtkError(f"{self.lm_dir}: the lexicon-free decoder needs a token-level LM "
                             f"(`w2vtk prep lm --unit token`), this one is a {unit} LM")
        if decoder == "lexicon" and unit != "word":
            raise W2vtkError(f"{self.lm_dir}: the lexicon decoder needs a word LM, this one is a {unit} LM")
        self.token_dict = Dictionary(list(tokens.tokens))
        sil = silence_token(tokens)
        if sil is None and tokens.blank is None:
            raise W2vtkError(f"{tokens.type} token set without a blank or a silence token ('|' or 'sil'): the "
                             f"beam-search decoder needs one of them")
        self.sil_idx = tokens.tokens.index(sil) if sil is not None else tokens.blank
        self.has_silence = sil is not None
        self.warnings: list[str] = []
        try:
            if decoder == "lexfree":
                self.lm = KenLM(str(lm_file), self.token_dict)
                self.trie = None
                self.word_dict = None
                self.unk_word = -1
                return
            lexicon = read_lexicon(self.lm_dir / "lexicon.txt")
            self.word_dict = Dictionary()
            for w in lexicon:
                self.word_dict.add_entry(w)
            self.word_dict.add_entry("<unk>")
            self.unk_word = self.word_dict.get_index("<unk>")
            self.word_dict.set_default_index(self.unk_word)
            self.lm = KenLM(str(lm_file), self.word_dict)
        except (RuntimeError, OSError) as err:
            raise W2vtkError(f"{lm_file}: flashlight cannot load it ({' '.join(str(err).split())[:200]})") from None
        if check_overlap and (self.lm_dir / "lm.arpa").is_file():
            rate, hint = vocab_overlap(arpa_unigrams(self.lm_dir / "lm.arpa"), lexicon)
            if rate < 0.5:
                self.warnings.append(f"only {100 * rate:.1f}% of {self.lm_dir}/lexicon.txt's words are in the LM"
                                     + (f" ({hint})" if hint else ""))
        index = {t: i for i, t in enumerate(tokens.tokens)}
        self.trie = Trie(len(tokens.tokens), self.sil_idx)
        start = self.lm.start(False)
        for word, spellings in lexicon.items():
            w_idx = self.word_dict.get_index(word)
            _, score = self.lm.score(start, w_idx)
            for sp in spellings:
                try:
                    ids = [index[t] for t in sp]
                except KeyError as err:
                    raise W2vtkError(f"{self.lm_dir}/lexicon.txt: word {word!r} is spelled with {err.args[0]!r}, "
                                     f"not a token of the acoustic model") from None
                if tokens.replabel_ids:  # an ASG token set: spelled as its targets are packed
                    ids = pack_replabels(ids, tokens.replabel_ids)
                self.trie.insert(ids, w_idx, score)
        self.trie.smear(SmearingMode.MAX)


def read_lm_yaml(lm_dir: Path) -> dict:
    """An LM dir's lm.yaml (how ``prep lm`` built it) as a mapping; {} when the dir has none."""
    path = lm_dir / "lm.yaml"
    if not path.is_file():
        return {}
    data = read_yaml_file(path, "LM description") or {}
    if not isinstance(data, dict):
        raise W2vtkError(f"{path}: expected a mapping (written by `w2vtk prep lm`)")
    return data


def check_lm_tokens(lm_dir: Path, tokens) -> None:
    """Refuse an LM dir whose tokens.txt is not the acoustic model's token list."""
    path = lm_dir / "tokens.txt"
    if path.is_file() and read_tokens_txt(path) != list(tokens.tokens):
        raise W2vtkError(f"{path} differs from the acoustic model's tokens.txt: the LM dir was built for "
                         f"another token set (rebuild it with `w2vtk prep lm --lang` of the AM's lang)")


def perplexity(lm_path: str | Path, text: str | Path, *, to_case: Callable[[str], str] | None = None,
               tokens=None) -> dict:
    """Perplexity of a text (one sentence per line, ``</s>`` counted) with the ``kenlm`` module.

    ``text`` is a plain text, or a data dir whose Kaldi ``text`` is read without the utterance ids.
    With ``tokens`` the sentences are turned into token strings (token LMs).
    Returns {"ppl", "ppl_no_oov", "sentences", "words", "oov"}; log10 probabilities as KenLM.
    """
    import kenlm

    lm_path = Path(lm_path)
    try:
        model = kenlm.Model(str(lm_path))
    except (OSError, RuntimeError) as err:
        raise W2vtkError(f"{lm_path}: KenLM cannot load it ({' '.join(str(err).split())[:160]})") from None
    to_case = to_case or (lambda w: w)
    total = total_no_oov = 0.0
    n_tokens = n_oov = n_sent = 0
    text = Path(text)
    if text.is_dir():


        sentences: Iterable[list[str]] = [t.split() for t in read_transcripts(text / "text").values() if t]
    else:
        sentences = read_sentences(text)
    for words in sentences:
        words = [to_case(w) for w in words]
        if tokens is not None:
            words = token_sequence(words, tokens, Counter())
        n_sent += 1
        for logp, _ngram_len, oov in model.full_scores(" ".join(words), bos=True, eos=True):
            total += logp
            n_tokens += 1
            if oov:
                n_oov += 1
            else:
                total_no_oov += logp
    if n_tokens == 0:
        raise W2vtkError(f"{text}: no sentences")
    ppl = 10 ** (-total / n_tokens)
    ppl_no_oov = 10 ** (-total_no_oov / max(1, n_tokens - n_oov))
    return {"ppl": round(ppl, 3), "ppl_no_oov": round(ppl_no_oov, 3), "sentences": n_sent,
            "words": n_tokens - n_sent, "oov": n_oov}
