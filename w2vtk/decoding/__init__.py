"""Decoding CTC emissions (``w2vtk decode``): the ``w2vtk.decoding`` package.

Modules: ``config`` (:class:`DecodeConfig`, :class:`BeamConfig`, :class:`SearchRanges`),
``emissions`` (loading an AM, computing emissions, the emissions cache), ``search`` (greedy and
flashlight-text beam search behind one :class:`Decoder`), ``pool`` (worker processes), ``tune``
(parameter search, best.yaml) and ``run`` (:func:`decode_dir`, the command). The LM dir is read by
:mod:`w2vtk.lm.reading`. This package imports only the torch-free modules; ``emissions`` and
``run`` (torch) are imported by name, so decoder worker processes stay small.

Emissions cache.  The AM's (T', V) natural-log probabilities are computed once per (AM checkpoint,
feature data dir) with :func:`w2vtk.decoding.emissions.compute_emissions` and kept in the decode dir as
``emissions.ark`` / ``emissions.scp`` (Kaldi float matrices, kaldiio) with ``emissions.yaml``
(provenance: the checkpoint file and its sha256, the token list's sha256, the features' feats.scp
sha256 and feats.yaml).  Every later search (each tuning trial, a rerun) reads them; a cache made by
another checkpoint or from other features is refused, never silently reused.

Decoders (``--decoder``):

- ``greedy``: best path (argmax per frame, repeats merged, blanks dropped), no LM.
- ``lexicon``: flashlight-text's ``LexiconDecoder`` (wav2letter's beam search) with CTC, a trie of
  the lexicon's spellings smeared with MAX (each trie node carries the best unigram LM score below
  it, as in wav2letter / fairseq), and the KenLM word n-gram. A hypothesis scores::

      sum_t log p_AM(token_t)  +  lm_weight * log10 p_LM(words)  +  word_score * |words|
                               +  sil_score * |silences|           (+ unk_score per unknown word)

  Units: the emissions are natural logs, but flashlight's ``KenLM`` returns KenLM's scores as they
  are, i.e. log10 (``lm::ngram::Model::BaseScore``): flashlight does not convert them.  So
  ``lm_weight`` here (as in wav2letter, fairseq and torchaudio, whose tuned values can therefore be
  reused) weighs log10 probabilities: lm_weight = a is a weight of a / ln(10) = 0.434 a on the
  natural-log LM probability.  ``word_score`` and ``sil_score`` are in the emissions' natural-log
  units.  The silence token is ``|`` for letters (the lexicon spells ``w o r d |``), ``sil`` for
  TIMIT phones, and for sentencepiece (no silence token: ``▁`` starts a word inside its first piece)
  the blank, with ``sil_score`` fixed at 0 and not tuned.
- ``lexfree``: flashlight-text's ``LexiconFreeDecoder`` with a token-level KenLM (``prep lm --unit
  token``): the LM scores every emitted token (``|`` included for letters); ``sil_score`` plays the
  word-insertion role and ``word_score`` is unused.

Parallelism.  A flashlight decode holds the GIL, so several decodes run in worker processes
(``nj``), each loading its own LM, trie and decoder once: utterances are split across workers for
one decode, trials across workers for tuning.

Parameter search (``tune``).  Random search (seeded) or a grid over alpha = lm_weight in [0, 5],
beta = word_score in [-5, 5], gamma = sil_score in [-8, 0] (fairseq's sweep ranges; see
:class:`SearchRanges`), each trial decoding the whole dev set; the trial with the lowest WER (then
LER, then the smaller lm_weight) wins.  The tuning set must not be a test set.

Real-time factor: search (or emissions) seconds divided by audio seconds, the audio being the
feature frames at 10 ms each.
"""

from w2vtk.decoding.config import (DEFAULT_TEST_SETS, FRAME_SECONDS, BeamConfig, DecodeConfig,  # noqa: F401
                                   SearchRanges)
from w2vtk.decoding.pool import DecodeJob, DecodePool  # noqa: F401
from w2vtk.decoding.search import Decoder, Hypothesis, error_rates  # noqa: F401
from w2vtk.decoding.tune import best_table, load_params, sample_trials  # noqa: F401
