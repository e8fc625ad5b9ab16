"""Search over emissions: greedy (best path) and flashlight-text's lexicon / lexicon-free beam search
behind one :class:`Decoder`, and the WER / LER of a set of hypotheses."""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from w2vtk.decoding.config import BeamConfig
from w2vtk.errors import W2vtkError
from w2vtk.lm.reading import LMResources
from w2vtk.scoring import error_counts, letters_of, normalise
from w2vtk.am.viterbi import decoder_transitions, viterbi
from w2vtk.tokens import asg_token_ids, ctc_collapse

def greedy_ids(emission: np.ndarray, blank: int = 0) -> list[int]:
    """Best path of (T', V) emissions: argmax per frame, repeats merged, blanks dropped."""
    return ctc_collapse(emission.argmax(axis=1).tolist(), blank)


@dataclass
class Hypothesis:
    """One decoding result: words, the collapsed token ids and the scores flashlight reports."""

    words: list[str]
    tokens: list[int]
    score: float = 0.0
    am_score: float = 0.0
    lm_score: float = 0.0


class Decoder:
    """One decoder (greedy, lexicon or lexfree) with fixed options; :meth:`decode` one utterance."""

    def __init__(self, kind: str, tokens, beam: BeamConfig, resources: LMResources | None = None,
                 transitions: list | None = None):
        """``transitions``: an ASG model's (V, V) transition scores, ``[prev, next]`` (its emissions are
        then raw frame scores, decoded with the transitions added and repetition labels undone); None
        for CTC (log-probabilities, blank 0)."""
        self.kind, self.tokens, self.beam, self.res = kind, tokens, beam, resources
        self.asg = transitions is not None
        self._trans = None
        if self.asg:
            self._trans = np.asarray(transitions, dtype=np.float32)
            v = len(tokens.tokens)
            if tuple(self._trans.shape) != (v, v):
                raise W2vtkError(f"ASG transitions of shape {tuple(self._trans.shape)} do not match {v} tokens")
        if kind == "greedy":
            return
        from flashlight.lib.text.decoder import (CriterionType, LexiconDecoder, LexiconDecoderOptions,
                                                 LexiconFreeDecoder, LexiconFreeDecoderOptions)

        if resources is None:
            raise W2vtkError(f"the {kind} decoder needs an LM dir (--lang)")
        v = len(tokens.tokens)
        bst = beam.beam_size_token if beam.beam_size_token > 0 else v
        sil = beam.sil_score if resources.has_silence else 0.0
        crit = CriterionType.ASG if self.asg else CriterionType.CTC
        # flashlight-text reads transitions[next * N + prev]; CTC has none and a blank, ASG no blank
        trans = decoder_transitions(self._trans) if self.asg else []
        blank = -1 if self.asg else tokens.blank
        if kind == "lexicon":
            opts = LexiconDecoderOptions(beam_size=beam.beam_size, beam_size_token=bst,
                                         beam_threshold=beam.beam_threshold, lm_weight=beam.lm_weight,
                                         word_score=beam.word_score, unk_score=beam.unk_score, sil_score=sil,
                                         log_add=beam.log_add, criterion_type=crit)
            self._dec = LexiconDecoder(opts, resources.trie, resources.lm, resources.sil_idx, blank,
                                       resources.unk_word, trans, False)
        elif kind == "lexfree":
            opts = LexiconFreeDecoderOptions(beam_size=beam.beam_size, beam_size_token=bst,
                                             beam_threshold=beam.beam_threshold, lm_weight=beam.lm_weight,
                                             sil_score=sil, log_add=beam.log_add,
                                             criterion_type=crit)
            self._dec = LexiconFreeDecoder(opts, resources.lm, resources.sil_idx, blank, trans)
        else:
            raise W2vtkError(f"unknown decoder {kind!r} (greedy, lexicon, lexfree)")

    def decode(self, emission: np.ndarray) -> list[Hypothesis]:
        """(T', V) natural-log probabilities -> up to ``beam.nbest`` hypotheses, best first."""
        if emission.ndim != 2 or emission.shape[1] != len(self.tokens.tokens):
            raise W2vtkError(f"emissions of shape {emission.shape} do not match {len(self.tokens.tokens)} tokens")
        if self.kind == "greedy":
            ids = asg_token_ids(viterbi(emission, self._trans), self.tokens.replabel_ids) if self.asg else \
                greedy_ids(emission, self.tokens.blank)
            return [Hypothesis(self.tokens.decode(ids).split(), ids)]
        if emission.shape[0] == 0:
            return [Hypothesis([], [])]
        em = np.ascontiguousarray(emission, dtype=np.float32)
        results = self._dec.decode(em.ctypes.data, em.shape[0], em.shape[1])
        hyps = []
        for r in results[: max(1, self.beam.nbest)]:
            ids = (asg_token_ids([t for t in r.tokens if t >= 0], self.tokens.replabel_ids) if self.asg
                   else ctc_collapse(r.tokens, self.tokens.blank))
            if self.kind == "lexicon":
                words = [self.res.word_dict.get_entry(w) for w in r.words if w >= 0]
            else:
                words = self.tokens.decode(ids).split()
            hyps.append(Hypothesis(words, ids, float(r.score), float(r.emittingModelScore), float(r.lmScore)))
        return hyps or [Hypothesis([], [])]


def error_rates(refs: dict[str, str], hyps: dict[str, list[str]], case_fold: bool = False) -> dict[str, float]:
    """{"wer": %, "ler": %} over the utterances of ``refs`` (a missing hypothesis is empty)."""
    r_words = [normalise(refs[u], case_fold=case_fold) for u in refs]
    h_words = [normalise(" ".join(hyps.get(u, [])), case_fold=case_fold) for u in refs]
    wer = error_counts(r_words, h_words)
    ler = error_counts([letters_of(w) for w in r_words], [letters_of(w) for w in h_words])
    if wer.ref_len == 0:
        raise W2vtkError("no reference words to score (every transcript is empty)")
    return {"wer": round(wer.rate, 4), "ler": round(ler.rate, 4) if ler.rate is not None else None,
            "word_errors": wer.errors, "ref_words": wer.ref_len}
