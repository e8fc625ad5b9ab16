"""On the mini corpus (committed seed 0): LM decoding reaches WER <= 0.8 x greedy WER.

Two versions of the check.

1. A real acoustic model: ``tests/fixtures/mini_am_fbank`` is the log-mel CTC model that the full
   mini recipe trained (recipes/mini, default profile, 2026-11-25: the average of epochs 38-40,
   weights stored in float16 to keep the fixture at 1.5 MB).  The test synthesizes the 1.5-minute
   mini corpus with seed 0 (the session fixture), extracts its log-mel features, builds the 4-gram
   with lmplz from the corpus's own local/lm_text.txt (no dev or test sentence), tunes the LM
   weights on dev with ``w2vtk decode --tune`` and applies them to test.  Measured when written:
   test greedy WER 90.0 (LER 39.1), LM WER 42.0 (0.47x).  The fixture corpus's voices and grammar
   are those of the recipe's corpus (same synthesizer, same seed), so its dev/test speakers may
   have been among the model's training speakers: the AM is a real one, not a held-out evaluation.
2. A simulated acoustic model (emissions of the dev and test transcripts in which, with a seeded
   generator, 15% of the letters lose to a random other letter by 0.2-1.5 nats a frame, plus
   Gaussian logit noise), which isolates the search and the LM from any AM.
"""

from __future__ import annotations

import numpy as np

from decode_synth import emissions_for
from w2vtk.decoding import BeamConfig, Decoder, SearchRanges, error_rates, sample_trials
from w2vtk.lm import LMResources
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


FIXTURE_AM = __import__("pathlib").Path(__file__).resolve().parents[1] / "fixtures" / "mini_am_fbank"


def test_lm_decoding_beats_greedy_with_the_mini_recipes_acoustic_model(mini_corpus, tmp_path):
    import shutil

    import pytest

    from w2vtk.cli import main

    def cli(*args: str) -> None:
        with pytest.raises(SystemExit) as exc:
            main(list(args))
        assert exc.value.code in (0, None), args

    am = tmp_path / "am"
    shutil.copytree(FIXTURE_AM, am)
    for name in ("dev", "test"):
        cli("extract", "--type", "logmel", "--in", str(mini_corpus / name), "--out-dir", str(tmp_path / f"{name}_fbank"))
    build_lm(mini_corpus / "local" / "lm_text.txt", am, tmp_path / "lang_4g", order=4, memory="200M")
    cli("decode", "--am", str(am), "--decoder", "greedy", "--data", str(tmp_path / "test_fbank"),
        "--out", str(tmp_path / "greedy_test"))
    cli("decode", "--am", str(am), "--lang", str(tmp_path / "lang_4g"), "--decoder", "lexicon",
        "--data", str(tmp_path / "dev_fbank"), "--out", str(tmp_path / "lm_dev"), "--tune", "--trials", "16",
        "--test-sets", "test")
    cli("decode", "--am", str(am), "--lang", str(tmp_path / "lang_4g"), "--decoder", "lexicon",
        "--data", str(tmp_path / "test_fbank"), "--out", str(tmp_path / "lm_test"),
        "--params", str(tmp_path / "lm_dev" / "best.yaml"))
    import json

    greedy = json.loads((tmp_path / "greedy_test" / "score.json").read_text())
    lm = json.loads((tmp_path / "lm_test" / "score.json").read_text())
    greedy_wer, lm_wer = float(greedy["metrics"]["wer"]["rate"]), float(lm["metrics"]["wer"]["rate"])
    print(f"mini test, real AM: greedy WER {greedy_wer:.2f}, LM WER {lm_wer:.2f}")
    assert greedy_wer > 50.0  # the real AM does err: the LM has work to do
    assert lm_wer <= 0.8 * greedy_wer
