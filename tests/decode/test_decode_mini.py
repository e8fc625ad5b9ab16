"""On the mini corpus (committed seed 0): LM decoding reaches WER <= 0.8 x greedy WER.

A CTC model trained on the mini corpus's ~70 s of training speech within a test's budget reads
too few letters right for this check to mean anything (tiny conf, 40 epochs, 6 CPU minutes: dev
LER 76%, greedy WER 100%).  So the acoustic model is simulated: emissions of the dev and test
transcripts in which, with a seeded generator, 15% of the letters lose to a random other letter by
0.2-1.5 nats a frame, plus Gaussian logit noise.  The LM is the real one: the 4-gram that
``prep lm`` builds with lmplz from the corpus's local/lm_text.txt (train transcripts + grammar
sentences; no dev or test sentence).  The weights are tuned on dev and applied to test.
"""

from __future__ import annotations

import numpy as np

from decode_synth import emissions_for
from w2vtk.decoding import BeamConfig, Decoder, LMResources, SearchRanges, error_rates, sample_trials
from w2vtk.lm import build_lm
from w2vtk.tokens import TokenSet, build_lang, read_transcripts

SEED = 0


def _simulated_am(texts: dict[str, str], tok: TokenSet, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = {}
    v = len(tok)
    for utt, text in sorted(texts.items()):
        ids = tok.encode(text)
        confuse = {}
        for i, lab in enumerate(ids):
            if lab != tok.boundary and rng.random() < 0.15:
                other = int(rng.integers(2, v))
                if other != lab:
                    confuse[i] = (other, float(rng.uniform(0.2, 1.5)))
        out[utt] = emissions_for(ids, v, hold=2, confuse=confuse, noise=0.5, rng=rng)
    return out


def test_lm_decoding_beats_greedy_on_the_mini_corpus(mini_corpus, tmp_path):
    build_lang(mini_corpus / "train" / "text", tmp_path / "lang", "letters")
    build_lm(mini_corpus / "local" / "lm_text.txt", tmp_path / "lang", tmp_path / "lang_4g", order=4,
             memory="200M")
    tok = TokenSet.load(tmp_path / "lang")
    res = LMResources(tmp_path / "lang_4g", tok, "lexicon")
    rng = np.random.default_rng(SEED)
    dev = read_transcripts(mini_corpus / "dev" / "text")
    test = read_transcripts(mini_corpus / "test" / "text")
    dev_em, test_em = _simulated_am(dev, tok, rng), _simulated_am(test, tok, rng)

    greedy = Decoder("greedy", tok, BeamConfig())

    def wer(decoder, ems, refs):
        return error_rates(refs, {u: decoder.decode(m)[0].words for u, m in ems.items()})["wer"]

    trials = sample_trials(SearchRanges(), 12, "random", SEED, BeamConfig(beam_size=100, beam_threshold=25))
    scored = [(wer(Decoder("lexicon", tok, b, res), dev_em, dev), b.lm_weight, i) for i, b in enumerate(trials)]
    best = trials[min(scored)[2]]
    greedy_wer = wer(greedy, test_em, test)
    lm_wer = wer(Decoder("lexicon", tok, best, res), test_em, test)
    print(f"mini test: greedy WER {greedy_wer:.2f}, LM WER {lm_wer:.2f} (lm_weight {best.lm_weight}, "
          f"word_score {best.word_score}, sil_score {best.sil_score})")
    assert greedy_wer > 20.0  # the simulated AM does err
    assert lm_wer <= 0.8 * greedy_wer
