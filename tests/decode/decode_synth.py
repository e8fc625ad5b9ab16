"""Synthetic CTC emissions and a throw-away acoustic model for the decoding tests.

``emissions_for(labels, V)``: a (T', V) natural-log probability matrix whose best path reads
``labels``: each label peaks for ``hold`` frames followed by one blank frame.  ``confuse`` moves the
peak of chosen label positions to another token by a margin, so the best path reads a wrong token
there while the right one stays close behind (what a beam search with an LM can repair).

``make_am``: an AM exp dir trained for one update on random features (via w2vtk.am's public
``train_am``).  Its emissions are meaningless; tests compute its cache once through
``load_or_compute_emissions`` and then replace the matrices (:func:`inject_emissions`), keeping the
provenance, so ``decode_dir`` runs end to end on emissions whose right answer is known.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TEXT = """THE CAT SAT ON THE MAT
THE DOG SAT ON THE LOG
A CAT AND A DOG SAT
THE CAT SAW THE DOG
THE DOG SAW A CAT ON THE MAT
"""
DEV = {"dv1": "the cat sat on the mat", "dv2": "the cat saw on the mat", "dv3": "a dog sat on the log"}


def emissions_for(labels: list[int], num_tokens: int, *, hold: int = 2, peak: float = 8.0,
                  confuse: dict[int, tuple[int, float]] | None = None, noise: float = 0.0,
                  rng: np.random.Generator | None = None, blank: int = 0) -> np.ndarray:
    """(T', V) float32 log-probabilities; ``confuse[i] = (token, margin)`` makes label position i
    peak on ``token``, ``margin`` nats above the true label."""
    confuse = confuse or {}
    rows = []
    for i, lab in enumerate(labels):
        for _ in range(hold):
            row = np.zeros(num_tokens, dtype=np.float64)
            if i in confuse:
                other, margin = confuse[i]
                row[lab] = peak
                row[other] = peak + margin
            else:
                row[lab] = peak
            rows.append(row)
        row = np.zeros(num_tokens)
        row[blank] = peak
        rows.append(row)
    logits = np.stack(rows)
    if noise and rng is not None:
        logits = logits + noise * rng.normal(size=logits.shape)
    logits -= logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return logp.astype(np.float32)


def write_feature_dir(path: Path, texts: dict[str, str], dim: int = 8, frames: int = 30, seed: int = 0) -> Path:
    """feats.ark/scp (random (frames, dim) matrices), text and utt2num_frames."""
    import kaldiio

    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with kaldiio.WriteHelper(f"ark,scp:{path / 'feats.ark'},{path / 'feats.scp'}") as writer:
        for utt in sorted(texts):
            writer(utt, rng.normal(size=(frames, dim)).astype(np.float32))
    (path / "text").write_text("".join(f"{u} {t}\n" for u, t in sorted(texts.items())))
    (path / "utt2num_frames").write_text("".join(f"{u} {frames}\n" for u in sorted(texts)))
    return path


def make_am(root: Path, lang: Path, texts: dict[str, str], seed: int = 0) -> Path:
    """An AM exp dir (one update of a one-layer conv model on random 8-dim features)."""
    import torch

    from w2vtk.am.config import TrainAMConfig
    from w2vtk.am.train import train_am
    from w2vtk.config import load_config

    torch.set_num_threads(1)
    feats = write_feature_dir(root / f"am_train_{seed}", texts, seed=seed)
    cfg = load_config(TrainAMConfig, None, [
        "model.layers=[[16,3,1]]", "model.dropout=0.0", "optim.lr=1e-3", "max_epochs=1", "optim.max_update=1",
        "batch.max_frames=2000", "batch.max_utts=64", "average_last=0", "amp=none", "device=cpu", f"seed={seed}"])
    exp = root / f"am_exp_{seed}"
    train_am(cfg, lang_dir=lang, train_dir=feats, valid_dir=feats, exp_dir=exp)
    return exp


def inject_emissions(cache_dir: Path, mats: dict[str, np.ndarray]) -> None:
    """Replace the matrices of an existing emissions cache (emissions.yaml kept)."""
    import kaldiio

    with kaldiio.WriteHelper(f"ark,scp:{cache_dir / 'emissions.ark'},{cache_dir / 'emissions.scp'}") as writer:
        for utt in sorted(mats):
            writer(utt, mats[utt])
