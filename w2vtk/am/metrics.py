"""Greedy CTC decoding and the dev error rates shown while an acoustic model trains.

- letters / sentencepiece: LER over the characters of the decoded words (word boundaries count as
  one ``|`` character between words, as wav2letter's letter error rate) and WER over words;
- phones: PER over phones folded to the 39 of Lee & Hon (1989) when the set is TIMIT's 48 / 61.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def greedy_ids(frame_ids) -> list[int]:
    """Best path (T',) frame argmaxes -> token ids: collapse repeats, then drop blanks (id 0)."""
    out: list[int] = []
    prev = -1
    for t in frame_ids:
        t = int(t)
        if t != prev and t != 0:
            out.append(t)
        prev = t
    return out


@dataclass
class ErrorTotals:
    """Edit-distance totals (errors, reference length) for one unit (chars, words, phones)."""

    errors: int = 0
    ref_len: int = 0

    @property
    def rate(self) -> float:
        """Percent; 0 for an empty reference with no errors."""
        if self.ref_len == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return 100.0 * self.errors / self.ref_len


def _edit_counts(refs: list[list[str]], hyps: list[list[str]]) -> tuple[int, int]:
    """(Levenshtein errors, reference length) summed over utterances."""
    try:
        from w2vtk.scoring import error_counts
    except ImportError:
        error_counts = None
    if error_counts is not None:
        c = error_counts(refs, hyps)
        return int(c.ins + c.dels + c.subs), int(c.ref_len)
    from rapidfuzz.distance import Levenshtein

    return (sum(Levenshtein.distance(r, h) for r, h in zip(refs, hyps)), sum(len(r) for r in refs))


def _chars(words: list[str]) -> list[str]:
    return list("|".join(words))


class DevScorer:
    """Accumulates dev error counts for a token set (``w2vtk.tokens.TokenSet``)."""

    def __init__(self, tokens):
        self.tokens = tokens
        self.kind = tokens.type
        self.fold = _phone_fold(tokens) if self.kind == "phones" else None
        self.refs_unit: list[list[str]] = []
        self.hyps_unit: list[list[str]] = []
        self.refs_word: list[list[str]] = []
        self.hyps_word: list[list[str]] = []

    @property
    def unit_name(self) -> str:
        return "PER" if self.kind == "phones" else "LER"

    def add(self, ref_ids: list[int], hyp_ids: list[int]) -> None:
        if self.kind == "phones":
            sym = self.tokens.tokens
            ref = [self.fold(sym[i]) for i in ref_ids if i != 0]
            hyp = [self.fold(sym[i]) for i in hyp_ids if i != 0]
            self.refs_unit.append([p for p in ref if p])
            self.hyps_unit.append([p for p in hyp if p])
            return
        ref_words = self.tokens.decode(ref_ids).split()
        hyp_words = self.tokens.decode(hyp_ids).split()
        self.refs_word.append(ref_words)
        self.hyps_word.append(hyp_words)
        self.refs_unit.append(_chars(ref_words))
        self.hyps_unit.append(_chars(hyp_words))

    def totals(self) -> dict[str, ErrorTotals]:
        out = {}
        e, n = _edit_counts(self.refs_unit, self.hyps_unit)
        out[self.unit_name] = ErrorTotals(e, n)
        if self.kind != "phones":
            e, n = _edit_counts(self.refs_word, self.hyps_word)
            out["WER"] = ErrorTotals(e, n)
        return out


def _phone_fold(tokens):
    """Symbol -> symbol of the 39-phone scoring set ('' for a deleted label such as 'q'); symbols
    outside TIMIT's sets (e.g. an unknown token) are kept as they are."""
    from w2vtk.tokens import fold_phone

    def fold(p: str) -> str:
        try:
            return fold_phone(p, 39) or ""
        except KeyError:
            return p

    return fold


def stack_totals(parts: list[dict[str, ErrorTotals]]) -> dict[str, ErrorTotals]:
    out: dict[str, ErrorTotals] = {}
    for part in parts:
        for k, v in part.items():
            t = out.setdefault(k, ErrorTotals())
            t.errors += v.errors
            t.ref_len += v.ref_len
    return out


def argmax_frames(log_probs: np.ndarray) -> np.ndarray:
    return np.asarray(log_probs).argmax(axis=-1)
