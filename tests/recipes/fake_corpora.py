"""Fake TIMIT / WSJ / LibriSpeech trees for the recipe tests.

The layouts come from the corpus tests' builders (tests/corpora/test_*.py, imported, not copied);
their audio is lengthened here to LENGTH_S seconds, because a recipe pre-trains and extracts
wav2vec features, and an utterance shorter than the model's receptive field (0.17 s) is skipped.
"""

from __future__ import annotations

import sys
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf

CORPORA_TESTS = Path(__file__).resolve().parents[1] / "corpora"
if str(CORPORA_TESTS) not in sys.path:
    sys.path.insert(0, str(CORPORA_TESTS))

import test_librispeech as _ls  # noqa: E402
import test_timit as _timit  # noqa: E402
import test_wsj as _wsj  # noqa: E402
from shorten_encoder import write_sphere_pcm, write_sphere_shorten  # noqa: E402

LENGTH_S = 1.5


def _speechy(seed: int, seconds: float = LENGTH_S) -> np.ndarray:
    """(T,) int16 at 16 kHz: a few harmonics gliding in pitch plus noise (not silence, not white)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    t = np.arange(n) / 16000.0
    f0 = 120 + 60 * rng.random() + 30 * np.sin(2 * np.pi * (0.5 + rng.random()) * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000.0
    wave = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t + rng.random() * 6) ** 2
    x = wave * envelope * 5000 + rng.standard_normal(n) * 300
    return x.astype(np.int16)


def _seed(path: Path) -> int:
    """Stable per file (speaker dir + name), unlike hash()."""
    return zlib.crc32(f"{path.parent.name}/{path.name}".lower().encode())


def make_timit(root: Path) -> Path:
    """TIMIT layout (TRAIN/TEST/DR*/<spk>/*.WAV|PHN|WRD|TXT); returns the TIMIT directory."""
    base = _timit.make_timit(root)
    for wav in base.rglob("*.WAV"):
        write_sphere_pcm(wav, _speechy(_seed(wav)))
    return base


def make_wsj(root: Path) -> tuple[Path, Path]:
    """WSJ0 / WSJ1 disc layout with shorten .wv1 files; returns (wsj0, wsj1)."""
    wsj0, wsj1 = _wsj.make_wsj(root)
    for base in (wsj0, wsj1):
        for wv1 in [p for p in base.rglob("*") if p.suffix.lower() == ".wv1"]:
            write_sphere_shorten(wv1, _speechy(_seed(wv1), 2.0))
    return wsj0, wsj1


def make_librispeech(root: Path) -> Path:
    """LibriSpeech layout (subset/reader/chapter/*.flac + trans.txt), no LM files; returns the
    directory holding LibriSpeech/."""
    top = _ls.make_librispeech(root, with_lm=False)
    for flac in (top / "LibriSpeech").rglob("*.flac"):
        sf.write(flac, _speechy(_seed(flac)), 16000, subtype="PCM_16")
    return top
