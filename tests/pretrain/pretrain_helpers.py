"""Shared helpers of the pre-training tests (a uniquely named module: importable from any test file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# A 16-channel, 2-context-layer model: the loop's arithmetic at a fraction of tiny.yaml's cost.
SMALL = ["model.conv_feature_layers=[[16,10,5],[16,8,4],[16,4,2],[16,4,2],[16,4,2]]",
         "model.conv_aggregator_layers=[[16,3,1],[16,3,1]]", "model.norm=channel",
         "data.max_tokens=48000", "data.max_sample_size=16000", "data.num_workers=0", "optim.warmup_updates=2",
         "optim.lr=1e-3", "log_every=1", "checkpoint.save_every=2", "checkpoint.keep_last=2",
         "checkpoint.valid_every=100", "checkpoint.validate_at_start=false",
         "threads=1"]


def write_audio(directory: Path, durations: list[float], seed: int = 0) -> list[Path]:
    """Chirps with a wandering pitch plus noise, one WAV per duration (seconds), 16 kHz."""
    import soundfile as sf

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i, dur in enumerate(durations):
        n = int(round(dur * 16000))
        t = np.arange(n) / 16000
        f0 = rng.uniform(100, 300)
        x = 0.3 * np.sin(2 * np.pi * f0 * t * (1 + 0.5 * t)) + 0.05 * rng.standard_normal(n)
        path = directory / f"utt{i:02d}.wav"
        sf.write(path, x.astype(np.float32), 16000)
        paths.append(path)
    return paths
