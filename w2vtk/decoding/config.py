"""``conf/decode/*.yaml``: the decoder, its beam options (fairseq / wav2letter names) and the tuning ranges."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from w2vtk.data.kaldi_dir import TEST_SET_NAMES

FRAME_SECONDS = 0.01
# Test sets of the corpora w2vtk prepares (TIMIT, WSJ in Kaldi and wav2letter names, LibriSpeech, mini);
# --test-sets replaces the list.  WSJ's dev set is test_dev93: it is not in the list.
DEFAULT_TEST_SETS = list(TEST_SET_NAMES)


# --- configuration ------------------------------------------------------------------------------

@dataclass
class BeamConfig:
    """flashlight-text options (the fairseq / wav2letter names in brackets).

    ``lm_weight`` (--lm-weight, alpha: weight of the log10 LM probability), ``word_score``
    (--word-score, beta: natural-log bonus per word), ``sil_score`` (--sil-weight, gamma: per
    silence token), ``unk_score`` (--unk-weight: per unknown word; -inf forbids them),
    ``beam_size`` (--beam), ``beam_size_token`` (--beam-size-token: tokens tried per frame; 0 =
    all), ``beam_threshold`` (--beam-threshold: hypotheses further than this below the best are
    dropped), ``log_add`` (merge equal hypotheses by log-sum-exp instead of max), ``nbest``.
    """

    lm_weight: float = 2.0
    word_score: float = 0.0
    sil_score: float = 0.0
    unk_score: float = float("-inf")
    beam_size: int = 500
    beam_size_token: int = 0
    beam_threshold: float = 25.0
    log_add: bool = False
    nbest: int = 1


@dataclass
class SearchRanges:
    """Tuning ranges [low, high] (fairseq's sweeper: lm weight 0-5, word score -5..5, silence -8..0)."""

    lm_weight: tuple[float, float] = (0.0, 5.0)
    word_score: tuple[float, float] = (-5.0, 5.0)
    sil_score: tuple[float, float] = (-8.0, 0.0)


@dataclass
class DecodeConfig:
    """``conf/decode/*.yaml``: the decoder, its beam options, the search and the test-set guard."""

    decoder: Literal["greedy", "lexicon", "lexfree"] = "lexicon"
    beam: BeamConfig = field(default_factory=BeamConfig)
    ranges: SearchRanges = field(default_factory=SearchRanges)
    trials: int = 64
    search: Literal["random", "grid"] = "random"
    seed: int = 0
    nj: int = 0                       # worker processes; 0 = usable CPU cores
    test_sets: list[str] = field(default_factory=lambda: list(DEFAULT_TEST_SETS))
    metrics: list[str] = field(default_factory=lambda: ["wer", "ler"])
    case_fold: bool = False           # scoring
    checkpoint: Literal["auto", "avg", "best", "last"] = "auto"
    device: str = "cpu"               # for the emissions
    batch_frames: int = 40000
