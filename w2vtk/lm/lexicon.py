"""LM text, word lists, case, and lexicons (word -> spellings in the AM's tokens)."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from w2vtk.errors import W2vtkError
from w2vtk.io import atomic_open, decode_utf8
from w2vtk.tokens import fold_timit_phone, pack_replabels

def read_sentences(path: str | Path) -> Iterator[list[str]]:
    """LM text: one sentence per line, words separated by white space; empty lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise W2vtkError(f"{path}: no such file")
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise W2vtkError(f"{path}:{line_no}: not valid UTF-8") from None
            words = line.split()
            if words:
                yield words


def utf8_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file; bad bytes are a W2vtkError naming the file and line."""
    return decode_utf8(path.read_bytes(), path).splitlines()


def read_word_list(path: str | Path) -> list[str]:
    """A vocabulary file: the first field of each line; ``#`` lines (wlist20o.nvp's header) skipped."""
    path = Path(path)
    if not path.is_file():
        raise W2vtkError(f"{path}: no such file")
    out: list[str] = []
    seen = set()
    for line in utf8_lines(path):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if fields[0] not in seen:
            seen.add(fields[0])
            out.append(fields[0])
    if not out:
        raise W2vtkError(f"{path}: no words")
    return out


def case_mapper(case: str | None) -> Callable[[str], str]:
    """The function putting words into a token set's case (identity for mixed / caseless sets)."""
    if case == "lower":
        return str.lower
    if case == "upper":
        return str.upper
    return lambda w: w


def text_case(words: Iterable[str]) -> str | None:
    """"lower", "upper", "mixed" or None (no cased letter) for a collection of words."""
    lower = upper = False
    for w in words:
        lower = lower or any(c.islower() for c in w)
        upper = upper or any(c.isupper() for c in w)
        if lower and upper:
            return "mixed"
    return "lower" if lower else "upper" if upper else None


# --- lexicons -----------------------------------------------------------------------------------

@dataclasses.dataclass
class Lexicon:
    """``entries``: word -> list of spellings (token strings); ``skipped``: word -> reason."""

    entries: dict[str, list[list[str]]]
    skipped: dict[str, str]

    def write(self, path: Path) -> None:
        with atomic_open(path) as fh:
            for word, spellings in self.entries.items():
                for sp in spellings:
                    fh.write(f"{word}\t{' '.join(sp)}\n")


def read_pronunciations(path: str | Path) -> dict[str, list[list[str]]]:
    """A pronunciation dictionary: ``WORD ph1 ph2 ...`` lines (CMUdict / Kaldi lexicon.txt style).

    Alternative pronunciations are repeated lines (CMUdict's ``WORD(2)`` is read as ``WORD``);
    ``;;;`` and ``#`` lines are comments.  Phones are kept as written (see :func:`phone_lexicon`).
    """
    path = Path(path)
    if not path.is_file():
        raise W2vtkError(f"{path}: no such file")
    out: dict[str, list[list[str]]] = {}
    for line_no, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith(";;;") or fields[0].startswith("#"):
            continue
        if len(fields) < 2:
            raise W2vtkError(f"{path}:{line_no}: expected 'WORD phone ...', got {line!r}")
        word = re.sub(r"\(\d+\)$", "", fields[0])
        prons = out.setdefault(word, [])
        if fields[1:] not in prons:
            prons.append(fields[1:])
    if not out:
        raise W2vtkError(f"{path}: no pronunciations")
    return out


def build_lexicon(words: Sequence[str], tokens, pronunciations: dict[str, list[list[str]]] | None = None) -> Lexicon:
    """Spell ``words`` with a :class:`w2vtk.tokens.TokenSet`.

    letters: the word's characters then ``|`` (a word with a character outside the set is skipped);
    spm: the word's sentencepiece pieces (a word needing the unknown piece is skipped);
    phones: the dictionary's pronunciations, each phone lower-cased, CMUdict stress digits removed and
    folded to the token set (TIMIT 61 -> 48/39); a word absent from the dictionary, or with a phone
    outside the set, is skipped.
    """
    entries: dict[str, list[list[str]]] = {}
    skipped: dict[str, str] = {}
    if tokens.type == "letters":
        letters = set(tokens.symbols) - {"|"}
        for w in words:
            bad = [c for c in w if c not in letters]
            if bad:
                skipped[w] = f"characters {''.join(dict.fromkeys(bad))!r} not in tokens.txt"
                continue
            entries[w] = [list(w) + ["|"]]
    elif tokens.type == "spm":
        known = set(tokens.symbols)
        unk = tokens.info.unk_token or "<unk>"
        for w in words:
            pieces = tokens.pieces(w)
            if not pieces or unk in pieces or any(p not in known for p in pieces):
                skipped[w] = "needs the sentencepiece unknown piece"
                continue
            entries[w] = [pieces]
    else:
        if pronunciations is None:
            raise W2vtkError("a phone token set needs a pronunciation dictionary (--lexicon-dict FILE)")
        phone_set = tokens.info.phone_set or 48
        phones = set(tokens.symbols)
        for w in words:
            prons = pronunciations.get(w)
            if prons is None:
                skipped[w] = "not in the pronunciation dictionary"
                continue
            spelled = []
            reason = ""
            for pron in prons:
                out = []
                for p in pron:
                    p = re.sub(r"\d$", "", p.lower())
                    try:
                        folded = fold_timit_phone(p, phone_set)
                    except W2vtkError:
                        folded = p
                    if folded is None:
                        continue
                    if folded not in phones:
                        reason = f"phone {p!r} not in tokens.txt"
                        out = None
                        break
                    out.append(folded)
                if out:
                    if out not in spelled:
                        spelled.append(out)
            if spelled:
                entries[w] = spelled
            else:
                skipped[w] = reason or "empty pronunciation"
    return Lexicon(entries, skipped)


def read_lexicon(path: str | Path) -> dict[str, list[list[str]]]:
    """``word<TAB or space>t1 t2 ...`` lines -> word -> spellings (order of the file)."""
    path = Path(path)
    if not path.is_file():
        raise W2vtkError(f"{path}: no such file (make it with `w2vtk prep lm`)")
    out: dict[str, list[list[str]]] = {}
    for line_no, line in enumerate(utf8_lines(path), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            raise W2vtkError(f"{path}:{line_no}: expected 'word token ...', got {line!r}")
        out.setdefault(fields[0], []).append(fields[1:])
    if not out:
        raise W2vtkError(f"{path}: empty lexicon")
    return out


def token_sequence(words: list[str], tokens, bad: Counter) -> list[str]:
    """A sentence as token strings for a token-level LM (letters: words joined by ``|``). With an ASG
    set's repetition labels the sentence is packed as its training targets are (``hello`` ->
    ``h e l <1> o``), so the LM scores the token stream the lexicon-free ASG decoder proposes."""
    out: list[str] = []
    for w in words:
        try:
            if tokens.type == "phones":
                pieces = [tokens.tokens[i] for i in tokens.encode(w, utt=w)]
            else:
                pieces = tokens.pieces(w)
        except W2vtkError:
            bad[w] += 1
            continue
        if tokens.type == "letters" and out:
            out.append("|")
        out.extend(pieces)
    if tokens.replabel_ids and out:
        packed = pack_replabels([tokens.index(t) for t in out], tokens.replabel_ids)
        out = [tokens.tokens[i] for i in packed]
    return out
