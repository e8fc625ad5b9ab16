"""Small learnable feature data dirs for the acoustic-model tests.

Each character has a fixed random prototype vector; an utterance's frames are the prototypes of
its characters (word boundaries get one too), each held 3-5 frames, plus noise. A tiny conv model
learns to read them back within a few dozen updates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

WORDS = ["cab", "bad", "dab", "ace", "bead", "deed", "cede", "add", "bee", "dace"]


def make_texts(n: int, seed: int, prefix: str = "utt") -> dict[str, str]:
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        k = int(rng.integers(1, 4))
        out[f"{prefix}{i:03d}"] = " ".join(WORDS[int(j)] for j in rng.integers(0, len(WORDS), size=k))
    return out


def write_feature_dir(path: Path, texts: dict[str, str], *, dim: int = 16, seed: int = 0,
                      feats_yaml: dict | None = None, extra_feats: dict[str, np.ndarray] | None = None,
                      noise: float = 0.3) -> Path:
    """feats.ark/scp + text (+ utt2num_frames, feats.yaml) under ``path``; returns ``path``."""
    import kaldiio

    path.mkdir(parents=True, exist_ok=True)
    proto_rng = np.random.default_rng(1234)  # same prototypes for every set
    chars = sorted(set("abcdefghijklmnopqrstuvwxyz'.|"))
    protos = {c: proto_rng.normal(size=dim).astype(np.float32) * 2.0 for c in chars}
    rng = np.random.default_rng(seed)
    mats = {}
    for utt, text in texts.items():
        frames = []
        for ch in "|" + "|".join(text.split()) + "|":
            for _ in range(int(rng.integers(3, 6))):
                frames.append(protos.get(ch, protos["|"]) + noise * rng.normal(size=dim).astype(np.float32))
        mats[utt] = np.stack(frames).astype(np.float32) * 3.0 + 5.0  # offset/scale: normalisation matters
    mats.update(extra_feats or {})
    with kaldiio.WriteHelper(f"ark,scp:{path / 'feats.ark'},{path / 'feats.scp'}") as writer:
        for utt in sorted(mats):
            writer(utt, mats[utt])
    (path / "text").write_text("".join(f"{u} {t}\n" for u, t in sorted(texts.items())))
    (path / "utt2num_frames").write_text("".join(f"{u} {m.shape[0]}\n" for u, m in sorted(mats.items())))
    if feats_yaml is not None:
        (path / "feats.yaml").write_text(yaml.safe_dump(feats_yaml))
    return path


W2V_PROV = {"feature_type": "wav2vec", "layer": "c", "checkpoint_sha256": "ab" * 32, "dim": 16}
FBANK_PROV = {"feature_type": "logmel", "dim": 16}


TINY = ["model.layers=[[64,5,1],[64,5,1],[64,5,1]]", "model.dropout=0.0", "optim.name=adam",
        "optim.lr=3e-3", "batch.max_frames=2000", "batch.max_utts=8", "average_last=2", "seed=3", "amp=none",
        "device=cpu"]
