"""Decoding CTC emissions: the emissions cache, greedy search, flashlight-text beam search with a
KenLM, parameter search on a dev set (``w2vtk decode``).

Emissions cache.  The AM's (T', V) natural-log probabilities are computed once per (AM checkpoint,
feature data dir) with :func:`w2vtk.am.emissions.compute_emissions` and kept in the decode dir as
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

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence

import numpy as np
import yaml

from w2vtk.data.kaldi_dir import TEST_SET_NAMES
from w2vtk.errors import W2vtkError
from w2vtk import faults
from w2vtk.io import atomic_write_text, sha256_file

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


# --- emissions cache ----------------------------------------------------------------------------

@dataclass
class Emissions:
    """Per-utterance (T', V) float32 natural-log probabilities, the token list and where they came from."""

    mats: dict[str, np.ndarray]
    tokens: Any                      # w2vtk.tokens.TokenSet of the AM
    provenance: dict
    input_frames: dict[str, int]     # feature frames per utterance (10 ms each)
    path: Path | None = None

    @property
    def audio_seconds(self) -> float:
        return FRAME_SECONDS * sum(self.input_frames.values())


def _tokens_sha(tokens: Sequence[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(tokens).encode("utf-8")).hexdigest()


def emissions_provenance(am_checkpoint: Path, tokens: Sequence[str], feats_dir: Path) -> dict:
    """What identifies a set of emissions: checkpoint (path, sha256), tokens and features (sha256)."""
    feats_yaml = feats_dir / "feats.yaml"
    return {"am_checkpoint": str(am_checkpoint), "am_checkpoint_sha256": sha256_file(am_checkpoint),
            "tokens_sha256": _tokens_sha(tokens), "feats_dir": str(feats_dir),
            "feats_scp_sha256": sha256_file(feats_dir / "feats.scp"),
            "feats_yaml_sha256": sha256_file(feats_yaml) if feats_yaml.is_file() else None}


def load_or_compute_emissions(am_dir: str | Path, feats_dir: str | Path, cache_dir: str | Path, *,
                              which: str = "auto", device: str = "cpu", batch_frames: int = 40000,
                              allow_feature_mismatch: bool = False, log: Callable[[str], None] = print,
                              progress_enabled: bool | None = None) -> Emissions:
    """Emissions of ``feats_dir`` under the AM of ``am_dir``, from ``cache_dir`` when it holds them.

    A cache from another checkpoint or other features is a :class:`W2vtkError` (use a new decode
    dir, or delete ``emissions.*``).  The ark and scp are written under temporary names and renamed,
    ``emissions.yaml`` last, so an interrupted computation leaves no cache that looks whole.
    """
    from w2vtk.am.data import load_feature_dir
    from w2vtk.am.emissions import compute_emissions, load_am
    from w2vtk.progress import progress

    am_dir, feats_dir, cache_dir = Path(am_dir), Path(feats_dir), Path(cache_dir)
    am = load_am(am_dir, which=which, device=device)
    fd = load_feature_dir(feats_dir, need_text=False)
    prov = emissions_provenance(am.checkpoint, am.tokens.tokens, feats_dir)
    yaml_path = cache_dir / "emissions.yaml"
    if yaml_path.is_file():
        try:
            cached = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            raise W2vtkError(f"{yaml_path}: not valid YAML (delete emissions.* to recompute)") from None
        if cached.get("am_checkpoint_sha256") != prov["am_checkpoint_sha256"]:
            raise W2vtkError(f"{cache_dir}/emissions.ark was computed by another acoustic model "
                             f"({cached.get('am_checkpoint')}, sha256 {str(cached.get('am_checkpoint_sha256'))[:12]}) "
                             f"than {am.checkpoint} (sha256 {prov['am_checkpoint_sha256'][:12]}): decode into "
                             f"a new --out dir or delete {cache_dir}/emissions.*")
        if cached.get("feats_scp_sha256") != prov["feats_scp_sha256"] or cached.get("tokens_sha256") != prov["tokens_sha256"]:
            raise W2vtkError(f"{cache_dir}/emissions.ark was computed from other features "
                             f"({cached.get('feats_dir')}) or tokens than {feats_dir}: decode into a new "
                             f"--out dir or delete {cache_dir}/emissions.*")
        mats = read_emissions(cache_dir)
        log(f"emissions: reusing {cache_dir}/emissions.ark ({len(mats)} utterances, {am.checkpoint.name})")
        return Emissions(mats, am.tokens, cached, dict(fd.frames), cache_dir)

    import kaldiio

    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp_ark, tmp_scp = cache_dir / ".emissions.ark.tmp", cache_dir / ".emissions.scp.tmp"
    mats: dict[str, np.ndarray] = {}
    total_s = FRAME_SECONDS * sum(fd.frames.values())
    t0 = time.perf_counter()
    try:
        with progress("emissions", total=total_s, unit="audio-s", enabled=progress_enabled) as bar:
            with kaldiio.WriteHelper(f"ark,scp:{tmp_ark},{tmp_scp}") as writer:
                for utt, em in compute_emissions(am, fd, batch_frames=batch_frames,
                                                 allow_feature_mismatch=allow_feature_mismatch):
                    if not np.all(np.isfinite(em)):
                        raise W2vtkError(f"{am.checkpoint}: non-finite emissions for utterance {utt!r}")
                    writer(utt, em)
                    faults.hit("ark_write", tmp_ark)
                    mats[utt] = em
                    bar.advance(FRAME_SECONDS * fd.frames[utt])
    except BaseException as err:
        # no half cache left behind (a kill leaves the hidden temporaries; the next run replaces them)
        tmp_ark.unlink(missing_ok=True)
        tmp_scp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise W2vtkError(f"{cache_dir / 'emissions.ark'}: no space left on device (disk or quota full) "
                             f"while writing the emissions cache; nothing was cached") from None
        raise
    seconds = time.perf_counter() - t0
    os.replace(tmp_ark, cache_dir / "emissions.ark")
    # the scp names the temporary ark: rewrite it with the final name
    scp_text = tmp_scp.read_text(encoding="utf-8").replace(str(tmp_ark), str(cache_dir / "emissions.ark"))
    atomic_write_text(cache_dir / "emissions.scp", scp_text)
    tmp_scp.unlink(missing_ok=True)
    from w2vtk import __version__

    prov.update({"which": am.which, "source": am.source, "utterances": len(mats),
                 "frames": int(sum(m.shape[0] for m in mats.values())), "num_tokens": len(am.tokens.tokens),
                 "audio_seconds": round(total_s, 2), "seconds": round(seconds, 3),
                 "rtf": round(seconds / total_s, 5) if total_s else None, "w2vtk_version": __version__})
    atomic_write_text(yaml_path, yaml.safe_dump(prov, sort_keys=False))
    log(f"emissions: {len(mats)} utterances, {total_s:.1f} audio-s in {seconds:.1f} s "
        f"(RTF {seconds / max(total_s, 1e-9):.4f}) -> {cache_dir}/emissions.ark")
    return Emissions(mats, am.tokens, prov, dict(fd.frames), cache_dir)


def read_emissions(cache_dir: str | Path) -> dict[str, np.ndarray]:
    """All matrices of ``cache_dir/emissions.scp`` as C-contiguous float32 arrays."""
    from w2vtk.features.archive import ScpReader

    scp = Path(cache_dir) / "emissions.scp"
    if not scp.is_file():
        raise W2vtkError(f"{scp}: no such file")
    table: dict[str, str] = {}
    try:
        lines = scp.read_bytes().decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        raise W2vtkError(f"{scp}: unreadable; delete {cache_dir}/emissions.* to recompute") from None
    for num, line in enumerate(lines, 1):
        fields = line.split(maxsplit=1)
        if len(fields) != 2 or fields[0] in table:
            raise W2vtkError(f"{scp}:{num}: expected '<utterance> <ark>:<offset>' with a new utterance id; "
                             f"delete {cache_dir}/emissions.* to recompute")
        table[fields[0]] = fields[1]
    # w2vtk's own reader (Kaldi matrices and NPY records only): kaldiio.load_scp would unpickle a
    # PKL record planted in the ark
    reader = ScpReader(scp, table)
    out = {}
    for utt in reader:
        try:
            out[utt] = np.ascontiguousarray(reader[utt], dtype=np.float32)
        except W2vtkError as err:
            raise W2vtkError(f"{err}; delete {cache_dir}/emissions.* to recompute") from None
    return out


# --- decoders -----------------------------------------------------------------------------------

def greedy_ids(emission: np.ndarray, blank: int = 0) -> list[int]:
    """Best path of (T', V) emissions: argmax per frame, repeats merged, blanks dropped."""
    best = emission.argmax(axis=1)
    out, prev = [], -1
    for t in best.tolist():
        if t != prev and t != blank:
            out.append(t)
        prev = t
    return out


def collapse(ids: Iterable[int], blank: int = 0) -> list[int]:
    """CTC label sequence of a frame-level token path: repeats merged, blanks dropped."""
    out, prev = [], -1
    for t in ids:
        t = int(t)
        if t != prev and t != blank:
            out.append(t)
        prev = t
    return out


@dataclass
class Hypothesis:
    """One decoding result: words, the collapsed token ids and the scores flashlight reports."""

    words: list[str]
    tokens: list[int]
    score: float = 0.0
    am_score: float = 0.0
    lm_score: float = 0.0


class LMResources:
    """The lexicon, word dictionary, KenLM and trie of an LM dir, built once and shared by decoders
    with different weights (the trie holds LM scores; the weight is applied by the decoder)."""

    def __init__(self, lm_dir: str | Path, tokens, decoder: str, check_overlap: bool = True):
        from flashlight.lib.text.decoder import SmearingMode, Trie
        from flashlight.lib.text.decoder.kenlm import KenLM
        from flashlight.lib.text.dictionary import Dictionary

        from w2vtk.lm import read_lexicon, silence_token, vocab_overlap

        self.lm_dir = Path(lm_dir)
        self.tokens = tokens
        self.decoder = decoder
        lm_file = self.lm_dir / "lm.bin"
        if not lm_file.is_file():
            lm_file = self.lm_dir / "lm.arpa"
        if not lm_file.is_file():
            raise W2vtkError(f"{self.lm_dir}: no lm.bin or lm.arpa (make it with `w2vtk prep lm`)")
        _check_lm_tokens(self.lm_dir, tokens)
        meta = _read_lm_yaml(self.lm_dir)
        unit = meta.get("unit", "word")
        if decoder == "lexfree" and unit != "token":
            raise W2vtkError(f"{self.lm_dir}: the lexicon-free decoder needs a token-level LM "
                             f"(`w2vtk prep lm --unit token`), this one is a {unit} LM")
        if decoder == "lexicon" and unit != "word":
            raise W2vtkError(f"{self.lm_dir}: the lexicon decoder needs a word LM, this one is a {unit} LM")
        self.token_dict = Dictionary(list(tokens.tokens))
        sil = silence_token(tokens)
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
        from w2vtk.lm import arpa_unigrams

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
                self.trie.insert(ids, w_idx, score)
        self.trie.smear(SmearingMode.MAX)


def _read_lm_yaml(lm_dir: Path) -> dict:
    path = lm_dir / "lm.yaml"
    if not path.is_file():
        return {}
    from w2vtk.config import read_yaml_file

    data = read_yaml_file(path, "LM description") or {}
    if not isinstance(data, dict):
        raise W2vtkError(f"{path}: expected a mapping (written by `w2vtk prep lm`)")
    return data


def _check_lm_tokens(lm_dir: Path, tokens) -> None:
    from w2vtk.tokens import read_tokens_txt

    path = lm_dir / "tokens.txt"
    if path.is_file() and read_tokens_txt(path) != list(tokens.tokens):
        raise W2vtkError(f"{path} differs from the acoustic model's tokens.txt: the LM dir was built for "
                         f"another token set (rebuild it with `w2vtk prep lm --lang` of the AM's lang)")


class Decoder:
    """One decoder (greedy, lexicon or lexfree) with fixed options; :meth:`decode` one utterance."""

    def __init__(self, kind: str, tokens, beam: BeamConfig, resources: LMResources | None = None):
        self.kind, self.tokens, self.beam, self.res = kind, tokens, beam, resources
        if kind == "greedy":
            return
        from flashlight.lib.text.decoder import (CriterionType, LexiconDecoder, LexiconDecoderOptions,
                                                 LexiconFreeDecoder, LexiconFreeDecoderOptions)

        if resources is None:
            raise W2vtkError(f"the {kind} decoder needs an LM dir (--lang)")
        v = len(tokens.tokens)
        bst = beam.beam_size_token if beam.beam_size_token > 0 else v
        sil = beam.sil_score if resources.has_silence else 0.0
        if kind == "lexicon":
            opts = LexiconDecoderOptions(beam_size=beam.beam_size, beam_size_token=bst,
                                         beam_threshold=beam.beam_threshold, lm_weight=beam.lm_weight,
                                         word_score=beam.word_score, unk_score=beam.unk_score, sil_score=sil,
                                         log_add=beam.log_add, criterion_type=CriterionType.CTC)
            self._dec = LexiconDecoder(opts, resources.trie, resources.lm, resources.sil_idx, tokens.blank,
                                       resources.unk_word, [], False)
        elif kind == "lexfree":
            opts = LexiconFreeDecoderOptions(beam_size=beam.beam_size, beam_size_token=bst,
                                             beam_threshold=beam.beam_threshold, lm_weight=beam.lm_weight,
                                             sil_score=sil, log_add=beam.log_add,
                                             criterion_type=CriterionType.CTC)
            self._dec = LexiconFreeDecoder(opts, resources.lm, resources.sil_idx, tokens.blank, [])
        else:
            raise W2vtkError(f"unknown decoder {kind!r} (greedy, lexicon, lexfree)")

    def decode(self, emission: np.ndarray) -> list[Hypothesis]:
        """(T', V) natural-log probabilities -> up to ``beam.nbest`` hypotheses, best first."""
        if emission.ndim != 2 or emission.shape[1] != len(self.tokens.tokens):
            raise W2vtkError(f"emissions of shape {emission.shape} do not match {len(self.tokens.tokens)} tokens")
        if self.kind == "greedy":
            ids = greedy_ids(emission, self.tokens.blank)
            return [Hypothesis(self.tokens.decode(ids).split(), ids)]
        if emission.shape[0] == 0:
            return [Hypothesis([], [])]
        em = np.ascontiguousarray(emission, dtype=np.float32)
        results = self._dec.decode(em.ctypes.data, em.shape[0], em.shape[1])
        hyps = []
        for r in results[: max(1, self.beam.nbest)]:
            ids = collapse(r.tokens, self.tokens.blank)
            if self.kind == "lexicon":
                words = [self.res.word_dict.get_entry(w) for w in r.words if w >= 0]
            else:
                words = self.tokens.decode(ids).split()
            hyps.append(Hypothesis(words, ids, float(r.score), float(r.emittingModelScore), float(r.lmScore)))
        return hyps or [Hypothesis([], [])]


# --- scoring helpers ----------------------------------------------------------------------------

def error_rates(refs: dict[str, str], hyps: dict[str, list[str]], case_fold: bool = False) -> dict[str, float]:
    """{"wer": %, "ler": %} over the utterances of ``refs`` (a missing hypothesis is empty)."""
    from w2vtk.scoring import error_counts, letters_of, normalise

    r_words = [normalise(refs[u], case_fold=case_fold) for u in refs]
    h_words = [normalise(" ".join(hyps.get(u, [])), case_fold=case_fold) for u in refs]
    wer = error_counts(r_words, h_words)
    ler = error_counts([letters_of(w) for w in r_words], [letters_of(w) for w in h_words])
    if wer.ref_len == 0:
        raise W2vtkError("no reference words to score (every transcript is empty)")
    return {"wer": round(wer.rate, 4), "ler": round(ler.rate, 4) if ler.rate is not None else None,
            "word_errors": wer.errors, "ref_words": wer.ref_len}


# --- worker processes ---------------------------------------------------------------------------

@dataclass
class _Job:
    """What a worker needs to rebuild the decoding state (picklable: paths and plain values)."""

    kind: str
    am_tokens_dir: str
    lm_dir: str | None
    emissions_dir: str


_STATE: dict[str, Any] = {}


def _exit_with_parent(parent: int) -> None:
    """Exit this worker once ``parent`` is gone: a SIGKILLed decode (OOM killer, scheduler
    pre-emption) cannot shut its pool down, and its workers would otherwise wait for work for ever,
    holding an LM in memory and the parent's stdout open."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="w2vtk-parent-watch", daemon=True).start()


def _worker_init(job: _Job, parent: int | None = None) -> None:
    from w2vtk.tokens import TokenSet

    if parent is not None:
        _exit_with_parent(parent)
    try:
        tokens = TokenSet.load(job.am_tokens_dir)
        _STATE["tokens"] = tokens
        _STATE["mats"] = read_emissions(job.emissions_dir)
        _STATE["res"] = LMResources(job.lm_dir, tokens, job.kind, check_overlap=False) if job.kind != "greedy" else None
        _STATE["kind"] = job.kind
    except W2vtkError as err:
        if parent is None:
            raise
        # an initializer's exception would only be printed (with a traceback) by the pool, which
        # then breaks; keep it and raise it from the first task so the user sees its one line
        _STATE["init_error"] = err


def _check_init() -> None:
    if "init_error" in _STATE:
        raise _STATE["init_error"]


def _result(future):
    """``future.result()`` with a worker that died (SIGKILL, the OOM killer) as a one-line error."""
    from concurrent.futures.process import BrokenProcessPool

    try:
        return future.result()
    except BrokenProcessPool:
        raise W2vtkError("a decoder worker process died unexpectedly (killed, or out of memory: each "
                         "holds the LM; lower --nj)") from None


def _decode_utts(utts: list[str], beam: BeamConfig) -> tuple[dict[str, list[Hypothesis]], float]:
    _check_init()
    dec = Decoder(_STATE["kind"], _STATE["tokens"], beam, _STATE["res"])
    out = {}
    t0 = time.perf_counter()
    for u in utts:
        out[u] = dec.decode(_STATE["mats"][u])
    return out, time.perf_counter() - t0


def _run_trial(index: int, beam: BeamConfig, utts: list[str]) -> tuple[int, dict[str, list[str]], float]:
    hyps, seconds = _decode_utts(utts, beam)
    return index, {u: h[0].words for u, h in hyps.items()}, seconds


def _ping() -> bool:
    _check_init()
    time.sleep(0.05)  # long enough that the pool starts a new worker for the next task
    return True


class DecodePool:
    """``nj`` worker processes (spawned: no inherited torch / OpenMP state), each holding one copy of
    the emissions, LM and trie; with ``nj == 1`` everything runs in this process."""

    def __init__(self, job: _Job, nj: int, *, tokens=None, mats: dict | None = None,
                 resources: LMResources | None = None):
        """With ``nj == 1``, ``tokens`` / ``mats`` / ``resources`` already in memory are used as they
        are (a big LM is not loaded twice)."""
        self.job, self.nj = job, max(1, nj)
        self._pool = None
        if self.nj == 1:
            if tokens is not None and mats is not None and (resources is not None or job.kind == "greedy"):
                _STATE.update(tokens=tokens, mats=mats, res=resources, kind=job.kind)
            else:
                _worker_init(job)
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(self.nj, mp_context=mp.get_context("spawn"),
                                             initializer=_worker_init, initargs=(job, os.getpid()))
            # start every worker (LM and trie loading) now, so that timings measure the search only
            try:
                for f in [self._pool.submit(_ping) for _ in range(self.nj)]:
                    _result(f)
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self) -> "DecodePool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def decode(self, utts: list[str], beam: BeamConfig, frames: dict[str, int],
               on_done: Callable[[int], None] | None = None) -> tuple[dict[str, list[Hypothesis]], float]:
        """Decode ``utts`` (split into balanced shards by frames); returns hypotheses and summed
        worker search seconds."""
        if self._pool is None:
            dec = Decoder(_STATE["kind"], _STATE["tokens"], beam, _STATE["res"])
            out, secs = {}, 0.0
            for u in utts:
                t0 = time.perf_counter()
                out[u] = dec.decode(_STATE["mats"][u])
                secs += time.perf_counter() - t0
                if on_done:
                    on_done(frames[u])
            return out, secs
        shards = _shards(utts, frames, self.nj * 4)
        futures = [self._pool.submit(_decode_utts, shard, beam) for shard in shards]
        out, secs = {}, 0.0
        from concurrent.futures import as_completed

        index = {f: s for f, s in zip(futures, shards)}
        for f in as_completed(futures):
            h, s = _result(f)
            out.update(h)
            secs += s
            if on_done:
                on_done(sum(frames[u] for u in index[f]))
        return out, secs

    def trials(self, beams: list[BeamConfig], utts: list[str], on_done: Callable[[int, dict, float], None]) -> None:
        """Decode the whole set once per beam config (one trial per task), calling ``on_done``."""
        if self._pool is None:
            for i, b in enumerate(beams):
                on_done(*_run_trial(i, b, utts))
            return
        from concurrent.futures import as_completed

        futures = [self._pool.submit(_run_trial, i, b, utts) for i, b in enumerate(beams)]
        for f in as_completed(futures):
            on_done(*_result(f))


def _shards(utts: list[str], frames: dict[str, int], n: int) -> list[list[str]]:
    """Longest-first greedy split of utterances into up to ``n`` shards of similar frame totals."""
    n = max(1, min(n, len(utts)))
    shards: list[list[str]] = [[] for _ in range(n)]
    load = [0] * n
    for u in sorted(utts, key=lambda u: -frames.get(u, 0)):
        k = load.index(min(load))
        shards[k].append(u)
        load[k] += frames.get(u, 0)
    return [s for s in shards if s]


# --- parameter search ---------------------------------------------------------------------------

def sample_trials(ranges: SearchRanges, trials: int, search: str, seed: int, base: BeamConfig,
                  tune_word_score: bool = True, tune_sil: bool = True) -> list[BeamConfig]:
    """Trial configurations.  ``random`` draws each tuned parameter uniformly in its range (seeded);
    ``grid`` takes k evenly spaced values per tuned parameter, k the largest with k^d <= trials
    (d tuned parameters).  A parameter whose range is one point (low == high) is fixed there; one
    not tuned (word_score for lexfree, sil_score without a silence token) keeps ``base``'s value."""
    if trials < 1:
        raise W2vtkError(f"--trials must be >= 1, got {trials}")
    names = ["lm_weight"] + (["word_score"] if tune_word_score else []) + (["sil_score"] if tune_sil else [])
    fixed: dict[str, float] = {}
    for n in list(names):
        lo, hi = getattr(ranges, n)
        if lo > hi:
            raise W2vtkError(f"ranges.{n}: low {lo} > high {hi}")
        if lo == hi:
            fixed[n] = float(lo)
            names.remove(n)
    points: list[dict[str, float]] = []
    if not names:
        points = [dict(fixed)]
    elif search == "grid":
        k = max(1, int(math.floor(trials ** (1.0 / len(names)) + 1e-9)))
        axes = [np.linspace(*getattr(ranges, n), k) if k > 1 else np.array([np.mean(getattr(ranges, n))])
                for n in names]
        for combo in np.array(np.meshgrid(*axes, indexing="ij")).reshape(len(names), -1).T:
            points.append({**fixed, **{n: float(round(v, 6)) for n, v in zip(names, combo)}})
    elif search == "random":
        rng = np.random.default_rng(seed)
        for _ in range(trials):
            points.append({**fixed, **{n: float(round(rng.uniform(*getattr(ranges, n)), 4)) for n in names}})
    else:
        raise W2vtkError(f"search must be random or grid, not {search!r}")
    return [dataclasses.replace(base, nbest=1, **p) for p in points]


FEATURE_SUFFIXES = ("_w2v", "_fbank", "_logmel", "_mfcc", "_feats", "_hires", "_c", "_z")


def set_name(data_dir: str | Path) -> str:
    """A data dir's set name: its directory name without feature suffixes (``test_eval92_w2v`` ->
    ``test_eval92``; Kaldi's ``test_dev93`` stays ``test_dev93``)."""
    name = Path(data_dir).resolve().name
    changed = True
    while changed:
        changed = False
        for sfx in FEATURE_SUFFIXES:
            if name.endswith(sfx) and len(name) > len(sfx):
                name, changed = name[: -len(sfx)], True
    return name


def check_not_test_set(data_dir: Path, test_sets: Sequence[str]) -> None:
    """Refuse tuning on a test set: the data dir's recorded role (``DIR/role``, written by the
    corpus preps and kept by extract, subset and combine) is ``test``, or its set name
    (:func:`set_name`) or directory name is one of ``test_sets`` (names, or paths whose last
    component is compared)."""
    from w2vtk.data.kaldi_dir import read_role

    if read_role(data_dir) == "test":
        raise W2vtkError(f"--tune on {data_dir}: this data dir is a test set (its 'role' file, written when "
                         f"the corpus was prepared); tune on a dev set and apply the result with --params")
    names = {Path(data_dir).resolve().name, set_name(data_dir)}
    for t in test_sets:
        t = Path(t).name
        if t in names:
            raise W2vtkError(f"--tune on {data_dir}: {t!r} is a test set; tune on a dev set and apply the "
                             f"result with --params (test sets: {', '.join(test_sets)})")


# Files :func:`decode_dir` writes into its out dir (glob patterns; scoring adds per-metric files).
DECODE_OUTPUTS = ("decode.yaml", "emissions.ark", "emissions.scp", "emissions.yaml", "trials.json", "trials.tsv",
                  "best.yaml", "hyp.txt", "nbest.txt", "nbest.tsv", "wer.txt", "alignments*.txt", "score.json",
                  "per_speaker.tsv", "decode.json")


# --- the command --------------------------------------------------------------------------------

@dataclass
class DecodeResult:
    """What :func:`decode_dir` did: the chosen parameters, rates, timings and files."""

    out_dir: Path
    decoder: str
    params: dict
    wer: float | None
    ler: float | None
    utterances: int
    audio_seconds: float
    search_seconds: float
    wall_seconds: float
    rtf: float
    emissions_rtf: float | None
    trials: list[dict] | None = None
    warnings: list[str] = field(default_factory=list)


def _params_of(beam: BeamConfig) -> dict:
    d = dataclasses.asdict(beam)
    if math.isinf(d["unk_score"]):
        d["unk_score"] = "-inf"
    return d


def load_params(path: str | Path) -> dict:
    """best.yaml -> {"lm_weight", "word_score", "sil_score"} (its ``params`` mapping; a plain mapping of
    :class:`BeamConfig` keys is read as it is).  The tuned values only: the beam used while tuning is
    recorded under ``beam`` but not applied, so a wider beam can be applied to the test set."""
    from w2vtk.config import from_dict, read_yaml_file, to_dict

    path = Path(path)
    if not path.is_file():
        raise W2vtkError(f"--params {path}: no such file")
    data = read_yaml_file(path, "--params file") or {}
    params = data.get("params", data) if isinstance(data, dict) else None
    if not isinstance(params, dict):
        raise W2vtkError(f"--params {path}: expected a mapping")
    known = {f.name for f in dataclasses.fields(BeamConfig)}
    unknown = sorted((k for k in params if k not in known), key=str)
    if unknown:
        raise W2vtkError(f"--params {path}: unknown key(s) {', '.join(map(str, unknown))}")
    # the types of every value checked as the config loader does (a string "-inf" is a float)
    checked = from_dict(BeamConfig, {**to_dict(BeamConfig()), **params}, where=f"--params {path}")
    return {k: getattr(checked, k) for k in params}


def decode_dir(cfg: DecodeConfig, *, am_dir: str | Path, data_dir: str | Path, out_dir: str | Path,
               lang_dir: str | Path | None = None, tune: bool = False, params: str | Path | None = None,
               log: Callable[[str], None] = print, progress_enabled: bool | None = None) -> DecodeResult:
    """``w2vtk decode``: emissions (cached), then tuning (``tune``) or one decode, hyp.txt and scoring.

    ``data_dir``: a feature data dir (feats.scp, text). ``lang_dir``: an LM dir (``prep lm``) for
    the lexicon / lexfree decoders. ``params``: a best.yaml whose values override ``cfg.beam``.
    Writes into ``out_dir``: emissions.{ark,scp,yaml}, (tuning) trials.tsv and best.yaml, hyp.txt
    (+ nbest.txt with ``beam.nbest`` > 1), wer.txt / alignments.txt / score.json (w2vtk.scoring),
    decode.json (parameters, rates, real-time factors) and the resolved decode.yaml.
    """
    from w2vtk.config import save_config
    from w2vtk.progress import progress
    from w2vtk.scoring import score_files
    from w2vtk.tokens import read_transcripts

    t_start = time.perf_counter()
    am_dir, data_dir, out_dir = Path(am_dir), Path(data_dir), Path(out_dir)
    if tune and params is not None:
        raise W2vtkError("--tune and --params exclude each other (tune on dev, then apply with --params)")
    if tune and cfg.decoder == "greedy":
        raise W2vtkError("--tune needs an LM decoder (lexicon or lexfree); greedy has nothing to tune")
    if tune:
        check_not_test_set(data_dir, cfg.test_sets)
    if cfg.decoder != "greedy" and lang_dir is None:
        raise W2vtkError(f"the {cfg.decoder} decoder needs --lang (an LM dir from `w2vtk prep lm`)")
    if not data_dir.is_dir():
        raise W2vtkError(f"{data_dir}: data dir not found")
    if not (data_dir / "text").is_file():
        raise W2vtkError(f"{data_dir}: no text file (decode scores against it)")
    refs = read_transcripts(data_dir / "text")
    if not refs:
        raise W2vtkError(f"{data_dir}/text: no utterances (empty set)")
    if tune and not any(t.strip() for t in refs.values()):
        raise W2vtkError(f"{data_dir}/text: every transcript is empty; nothing to tune on")
    beam = cfg.beam
    if params is not None:
        beam = dataclasses.replace(beam, **load_params(params))
    for name in ("beam_size", "nbest"):
        if getattr(beam, name) < 1:
            raise W2vtkError(f"beam.{name} must be >= 1")
    out_dir.mkdir(parents=True, exist_ok=True)
    from w2vtk.training import remove_stale_temporaries

    # temporaries of a killed run are never valid; without this they would stay for ever
    remove_stale_temporaries(out_dir, DECODE_OUTPUTS)
    save_config(cfg, out_dir / "decode.yaml")

    em = load_or_compute_emissions(am_dir, data_dir, out_dir, which=cfg.checkpoint, device=cfg.device,
                                   batch_frames=cfg.batch_frames, log=log, progress_enabled=progress_enabled)
    utts = sorted(u for u in em.mats if u in refs)
    missing = sorted(set(refs) - set(em.mats))
    if not utts:
        raise W2vtkError(f"{data_dir}: no utterance has both features and a transcript")
    if missing:
        log(f"warning: {len(missing)} utterance(s) of {data_dir}/text have no features and score as empty")
    refs_scored = {u: refs[u] for u in utts}
    frames = {u: em.mats[u].shape[0] for u in utts}
    audio_s = FRAME_SECONDS * sum(em.input_frames.get(u, frames[u]) for u in utts)

    nj = cfg.nj if cfg.nj > 0 else max(1, len(os.sched_getaffinity(0)))
    job = _Job(cfg.decoder, str(am_dir), str(lang_dir) if lang_dir else None, str(out_dir))
    warnings: list[str] = []
    res = None
    if cfg.decoder != "greedy":
        res = LMResources(lang_dir, em.tokens, cfg.decoder)  # validates the LM dir before any worker starts
        warnings += res.warnings
        for w in res.warnings:
            log(f"warning: {w}")
        tune_sil = res.has_silence
    else:
        tune_sil = False
    trial_rows = None
    nj = 1 if cfg.decoder == "greedy" else min(nj, cfg.trials if tune else len(utts))
    if nj > 1:
        res = None  # each worker loads its own; free this copy first
    with DecodePool(job, nj, tokens=em.tokens, mats=em.mats, resources=res) as pool:
        if tune:
            beams = sample_trials(cfg.ranges, cfg.trials, cfg.search, cfg.seed, beam,
                                  tune_word_score=cfg.decoder == "lexicon", tune_sil=tune_sil)
            # Finished trials are kept (trials.json, rewritten after each one): a rerun of the same
            # search on the same emissions and LM resumes instead of starting over.
            signature = {"decoder": cfg.decoder, "lang": str(Path(lang_dir).resolve()),
                         "emissions_sha256": sha256_file(out_dir / "emissions.ark"),
                         "trials": [_params_of(b) for b in beams], "case_fold": cfg.case_fold}
            trial_rows = _resume_trials(out_dir / "trials.json", signature, len(beams), log)
            todo = [i for i, r in enumerate(trial_rows) if r is None]
            with progress("tune", total=len(beams), unit="trial", enabled=progress_enabled) as bar:
                bar.advance(len(beams) - len(todo))

                def done(i: int, hyps: dict, secs: float) -> None:
                    rates = error_rates(refs_scored, hyps, cfg.case_fold)
                    b = beams[todo[i]]
                    trial_rows[todo[i]] = {"trial": todo[i], "lm_weight": b.lm_weight, "word_score": b.word_score,
                                           "sil_score": b.sil_score, "wer": rates["wer"], "ler": rates["ler"],
                                           "seconds": round(secs, 3)}
                    atomic_write_text(out_dir / "trials.json", json.dumps(
                        {"signature": signature, "rows": trial_rows}, indent=1) + "\n")
                    faults.hit("decode_trial", out_dir / "trials.json")
                    bar.advance(1)
                    bar.update(info=f"best WER {min(r['wer'] for r in trial_rows if r):.2f}")
                pool.trials([beams[i] for i in todo], utts, done)
            _write_trials(out_dir / "trials.tsv", trial_rows)
            best = min(trial_rows, key=lambda r: (r["wer"], r["ler"] if r["ler"] is not None else 0,
                                                  r["lm_weight"], r["trial"]))
            beam = dataclasses.replace(beam, lm_weight=best["lm_weight"], word_score=best["word_score"],
                                       sil_score=best["sil_score"])
            atomic_write_text(out_dir / "best.yaml", yaml.safe_dump(
                {"params": {"lm_weight": best["lm_weight"], "word_score": best["word_score"],
                            "sil_score": best["sil_score"]},
                 "beam": _params_of(beam), "decoder": cfg.decoder, "tuned_on": str(data_dir),
                 "lang": str(lang_dir), "trials": len(beams), "search": cfg.search, "seed": cfg.seed,
                 "wer": best["wer"], "ler": best["ler"], "trial": best["trial"]}, sort_keys=False))
        total_frames = sum(frames.values())
        with progress(f"decode ({cfg.decoder})", total=total_frames * FRAME_SECONDS, unit="audio-s",
                      enabled=progress_enabled) as bar:
            t0 = time.perf_counter()
            hyps, search_s = pool.decode(utts, beam, frames, on_done=lambda f: bar.advance(f * FRAME_SECONDS))
            wall_decode = time.perf_counter() - t0

    _write_hyps(out_dir, hyps, beam.nbest)
    result = score_files(data_dir / "text", out_dir / "hyp.txt", cfg.metrics, out_dir=out_dir,
                         case_fold=cfg.case_fold, check_tokens=False)
    wer = result.metrics["wer"].counts.rate if "wer" in result.metrics else None
    ler = result.metrics["ler"].counts.rate if "ler" in result.metrics else None
    rtf = wall_decode / audio_s if audio_s else float("nan")
    out = DecodeResult(out_dir=out_dir, decoder=cfg.decoder, params=_params_of(beam), wer=wer, ler=ler,
                       utterances=len(utts), audio_seconds=round(audio_s, 3),
                       search_seconds=round(search_s, 3), wall_seconds=round(time.perf_counter() - t_start, 3),
                       rtf=round(rtf, 6), emissions_rtf=em.provenance.get("rtf"), trials=trial_rows,
                       warnings=warnings)
    summary = dataclasses.asdict(out)
    summary["out_dir"] = str(out_dir)
    summary["lines"] = result.lines()
    summary["nj"] = nj
    summary["search_rtf_per_process"] = round(search_s / audio_s, 6) if audio_s else None
    atomic_write_text(out_dir / "decode.json", json.dumps(summary, indent=2) + "\n")
    return out


def _resume_trials(path: Path, signature: dict, n: int, log: Callable[[str], None]) -> list:
    """Rows of an interrupted identical search (None for trials still to run)."""
    rows: list = [None] * n
    if not path.is_file():
        return rows
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return rows
    if data.get("signature") != json.loads(json.dumps(signature)):
        return rows
    for r in data.get("rows", []):
        if isinstance(r, dict) and 0 <= r.get("trial", -1) < n:
            rows[r["trial"]] = r
    done = sum(r is not None for r in rows)
    if done:
        log(f"tune: resuming, {done} of {n} trials already done ({path})")
    return rows


def _write_trials(path: Path, rows: list[dict]) -> None:
    cols = ["trial", "lm_weight", "word_score", "sil_score", "wer", "ler", "seconds"]
    lines = ["\t".join(cols)]
    for r in sorted(rows, key=lambda r: r["trial"]):
        lines.append("\t".join(str(r[c]) for c in cols))
    atomic_write_text(path, "\n".join(lines) + "\n")


def _write_hyps(out_dir: Path, hyps: dict[str, list[Hypothesis]], nbest: int) -> None:
    lines = []
    for u in sorted(hyps):
        words = " ".join(hyps[u][0].words)
        lines.append(f"{u} {words}".rstrip())
    atomic_write_text(out_dir / "hyp.txt", "\n".join(lines) + "\n")
    if nbest > 1:
        nb, tsv = [], ["utt\trank\tscore\tam_score\tlm_score\twords"]
        for u in sorted(hyps):
            for k, h in enumerate(hyps[u], start=1):
                nb.append(f"{u}-{k} {' '.join(h.words)}".rstrip())
                tsv.append(f"{u}\t{k}\t{h.score:.4f}\t{h.am_score:.4f}\t{h.lm_score:.4f}\t{' '.join(h.words)}")
        atomic_write_text(out_dir / "nbest.txt", "\n".join(nb) + "\n")
        atomic_write_text(out_dir / "nbest.tsv", "\n".join(tsv) + "\n")


def best_table(rows: list[dict], k: int = 5):
    """A rich Table of the ``k`` best trials (lowest WER, then LER)."""
    from rich.table import Table

    table = Table(title=f"best {min(k, len(rows))} of {len(rows)} trials")
    for col in ("trial", "lm_weight (alpha)", "word_score (beta)", "sil_score (gamma)", "WER %", "LER %"):
        table.add_column(col, justify="right")
    for r in sorted(rows, key=lambda r: (r["wer"], r["ler"] or 0, r["lm_weight"]))[:k]:
        table.add_row(str(r["trial"]), f"{r['lm_weight']:.3f}", f"{r['word_score']:.3f}", f"{r['sil_score']:.3f}",
                      f"{r['wer']:.2f}", "-" if r["ler"] is None else f"{r['ler']:.2f}")
    return table
