"""Shared pytest fixtures.

``mini_corpus``: the prepared data root of a tiny synthesized corpus, built once per test session::

    mini_corpus / {train, dev, test}/     Kaldi data dirs (wav.scp -> 16 kHz FLAC, text, utt2spk,
                                          spk2utt, utt2dur, spk2gender)
    mini_corpus / local / lm_text.txt     train transcripts + 5000 extra grammar sentences
    mini_corpus / corpus /                the synthesized audio in the LibriSpeech layout

Six espeak-ng pseudo-speakers (4 train, 1 dev, 1 test), about 100 seconds of speech (train ~70 s,
dev and test ~16 s each; 28 utterances of 1.5-8 s), seed 0; built in about 2-4 s.  Treat it as
read-only: every test of the session shares it; copy what a test must modify (shutil.copytree).
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mini_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from w2vtk.corpora.mini import synthesize_mini

    root = tmp_path_factory.mktemp("mini_corpus")
    return synthesize_mini(root / "data", minutes=1.5, seed=0, speakers=6, lm_sentences=5000,
                           quiet=True)


@pytest.fixture
def one_thread():
    """Tiny models: one intra-op thread is as fast, and immune to OpenMP spinning on a shared machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _restore_process_float_state():
    """Constructing a Wav2VecModel (and training.setup_cpu) turns on flush-to-zero for denormals in
    the whole process, on purpose (speed); tests share one process, so put the flag and the
    intra-op thread count back after each test - a later test (e.g. hypothesis' float strategies)
    must not inherit them."""
    import sys

    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    yield
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_flush_denormal(False)
        if threads is not None and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
