"""Greedy CTC decoding and the dev error rates shown while an acoustic model trains.

The rates are those of ``w2vtk score`` (:mod:`w2vtk.scoring`, Kaldi compute-wer counting):

- letters / sentencepiece: LER over the decoded words' characters joined by ``|`` (wav2letter's
  letter error rate) and WER over words;
- phones: PER over phones folded to TIMIT's 39 (``q`` deleted).
"""

from __future__ import annotations

from w2vtk.scoring import Counts, error_counts, metric_tokens
from w2vtk.tokens import fold_phone


class DevScorer:
    """Accumulates dev error counts for a token set (``w2vtk.tokens.TokenSet``)."""

    def __init__(self, tokens):
        self.tokens = tokens
        self.kind = tokens.type
        self.refs_unit: list[list[str]] = []
        self.hyps_unit: list[list[str]] = []
        self.refs_word: list[list[str]] = []
        self.hyps_word: list[list[str]] = []

    @property
    def unit_name(self) -> str:
        return "PER" if self.kind == "phones" else "LER"

    def add(self, ref_ids: list[int], hyp_ids: list[int]) -> None:
        """One utterance: reference label ids and greedy hypothesis ids (blanks allowed)."""
        ref_words = self.tokens.decode(ref_ids).split()
        hyp_words = self.tokens.decode(hyp_ids).split()
        if self.kind == "phones":
            # an unknown token (--unk-token) is not a TIMIT phone: it stays as it is
            self.refs_unit.append([p for w in ref_words for p in self._fold(w)])
            self.hyps_unit.append([p for w in hyp_words for p in self._fold(w)])
            return
        self.refs_word.append(ref_words)
        self.hyps_word.append(hyp_words)
        self.refs_unit.append(metric_tokens("ler", ref_words))
        self.hyps_unit.append(metric_tokens("ler", hyp_words))

    def _fold(self, phone: str) -> list[str]:
        try:
            folded = fold_phone(phone, 39)
        except KeyError:
            return [phone]
        return [] if folded is None else [folded]

    def totals(self) -> dict[str, Counts]:
        """Edit counts per metric name (``LER`` and ``WER``, or ``PER``), as ``w2vtk score`` counts."""
        out = {self.unit_name: error_counts(self.refs_unit, self.hyps_unit)}
        if self.kind != "phones":
            out["WER"] = error_counts(self.refs_word, self.hyps_word)
        return out
