"""wav2vec 1.0 contrastive objective: negative sampling and the K-step loss (pure tensor functions).

Objective (Schneider et al. 2019; fairseq's Wav2VecPredictionsModel + binary_cross_entropy):
step k = 1..K scores the target z at frame ``t + offset + k - 1`` against the prediction
``h_k(c_t)`` (:meth:`w2vtk.models.wav2vec.Wav2VecModel.project_steps`); each target comes with N
negatives, other frames z of the same utterance.  Logit = dot product; the binary loss is the
cross-entropy with logits summed over all positives (label 1) and negatives (label 0); the optional
InfoNCE loss is the cross-entropy of a softmax over the positive and its N negatives.  Targets z
are not detached (as in fairseq).

Negatives (:func:`sample_negatives`): for a target at frame s of an utterance with T valid frames,
N frames drawn uniformly, with replacement, from the T - 1 frames other than s (never s itself).
This is the intent of later fairseq (whose exclusion is mis-indexed, fairseq issue 4826); the 2019
code that trained the released model did not exclude s.  The negatives of a target are shared by
all K steps that score it (as in fairseq).

Randomness is keyed by (seed, update, utterance index) through :func:`make_generator`, so the
negatives of an utterance do not depend on how the global batch is split over processes.

Normalisation: :func:`contrastive_loss` returns the SUM and the counts; the training loop divides
by the global (all-reduced) count it reports against (w2vtk logs the loss per positive).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def make_generator(seed: int, update: int, index: int, stream: str = "negatives",
                   device: str | torch.device = "cpu") -> torch.Generator:
    """A torch.Generator seeded from (seed, update, utterance index, stream) by a stable hash.

    ``index`` is the utterance's position in the GLOBAL batch; ``stream`` separates independent uses
    (e.g. "negatives", "crop") of the same key.
    """
    key = f"{int(seed)}:{int(update)}:{int(index)}:{stream}".encode()
    value = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") & ((1 << 63) - 1)
    gen = torch.Generator(device=device)
    gen.manual_seed(value)
    return gen


def sample_negatives(generators: torch.Generator | Sequence[torch.Generator],
                     num_frames: Sequence[int] | Tensor, num_negatives: int,
                     max_frames: int | None = None) -> Tensor:
    """Negative frame indices (B, N, T_max), int64: ``neg[b, n, s]`` is the n-th negative of the
    target at frame s of utterance b, uniform over that utterance's frames other than s.

    ``generators``: one per utterance (from :func:`make_generator`, process-count independent) or a
    single generator used for the whole batch in order.  ``num_frames`` (B,) valid frames per
    utterance (each >= 2); frames beyond them are filled with 0.  Drawn on the CPU.
    """
    lengths = [int(n) for n in (num_frames.tolist() if isinstance(num_frames, Tensor) else num_frames)]
    B = len(lengths)
    T = max(lengths) if max_frames is None else int(max_frames)
    if isinstance(generators, torch.Generator):
        generators = [generators] * B
    if len(generators) != B:
        raise ValueError(f"{len(generators)} generators for {B} utterances")
    out = torch.zeros(B, num_negatives, T, dtype=torch.int64)
    for b, n in enumerate(lengths):
        if n < 2:
            raise ValueError(f"utterance {b} has {n} frames; negatives need at least 2")
        draw = torch.randint(0, n - 1, (num_negatives, n), generator=generators[b])
        # Skipping over the target's own frame keeps the draw uniform over the other n - 1 frames.
        draw += (draw >= torch.arange(n)).to(torch.int64)
        out[b, :, :n] = draw
    return out


@dataclass
class ContrastiveOutput:
    """Sums and counts over the valid (frame, step) pairs of a batch (0-dim tensors).

    loss: summed loss (with grad); num_positives: scored (frame, step) pairs; num_logits:
    positives x (1 + N); binary_correct: logits on the right side of 0 (chance is NOT 1/2: always
    saying "negative" gets N / (N + 1)); ranking_correct: pairs whose positive outscores all N
    negatives (chance 1 / (N + 1)).  logits (B, T, K, 1 + N) and mask (B, T, K), indexed by the
    TARGET frame, column 0 the positive, are kept when asked for.
    """

    loss: Tensor
    num_positives: Tensor
    num_logits: Tensor
    binary_correct: Tensor
    ranking_correct: Tensor
    logits: Tensor | None = None
    mask: Tensor | None = None


def contrastive_loss(z: Tensor, predictions: Tensor, neg_idx: Tensor, offset: int,
                     lengths: Tensor | None = None, infonce: bool = False,
                     keep_logits: bool = False) -> ContrastiveOutput:
    """The K-step contrastive loss, vectorised over utterances, frames and steps.

    z: (B, C, T) targets (encoder output, not detached); predictions: (B, T, K, C) with
    ``predictions[b, t, k-1] = h_k(c_t)`` (:meth:`Wav2VecModel.project_steps`); neg_idx: (B, N, T)
    from :func:`sample_negatives` (indexed by target frame); offset: frames between c_t and step
    1's target (fairseq's offset, 3); lengths: (B,) valid frames or None (all T).

    Target frame s is scored for step k when ``s - offset - k + 1 >= 0`` and ``s < lengths[b]``.
    """
    B, C, T = z.shape
    K = predictions.shape[2]
    N = neg_idx.shape[1]
    device = z.device
    s = torch.arange(T, device=device)
    k = torch.arange(K, device=device)
    src = s[:, None] - offset - k[None, :]                          # (T, K) prediction frame
    valid = src >= 0
    mask = valid[None].expand(B, T, K)
    if lengths is not None:
        mask = mask & (s[None, :, None] < lengths.to(device)[:, None, None])

    # Candidates per target frame: the positive (itself) then its N negatives -> (B, T, 1 + N, C).
    zt = z.transpose(1, 2).reshape(B * T, C)
    cand = torch.cat([s.expand(B, 1, T), neg_idx.to(device)], dim=1)   # (B, 1 + N, T)
    cand = (cand + (torch.arange(B, device=device) * T)[:, None, None]).transpose(1, 2)
    targets = zt.index_select(0, cand.reshape(-1)).view(B, T, 1 + N, C)

    # Prediction aimed at target s by step k: predictions[b, s - offset - k, k] -> (B, T, K, C).
    rows = (src.clamp(min=0) * K + k[None, :]).reshape(-1)            # into (T * K) rows
    rows = (rows[None, :] + (torch.arange(B, device=device) * (T * K))[:, None]).reshape(-1)
    aligned = predictions.reshape(B * T * K, -1).index_select(0, rows).view(B, T, K, C)

    logits = torch.matmul(aligned, targets.transpose(2, 3))         # (B, T, K, 1 + N)
    maskf = mask.to(logits.dtype)
    if infonce:
        per_pair = torch.logsumexp(logits, dim=-1) - logits[..., 0]
        loss = (per_pair * maskf).sum()
    else:
        labels = torch.zeros_like(logits)
        labels[..., 0] = 1.0
        loss = F.binary_cross_entropy_with_logits(logits, labels, weight=maskf[..., None].expand_as(logits),
                                                  reduction="sum")
    with torch.no_grad():
        num_pos = mask.sum()
        pos = logits[..., 0]
        binary = ((pos > 0) & mask).sum() + ((logits[..., 1:] <= 0) & mask[..., None]).sum()
        ranking = ((pos > logits[..., 1:].amax(dim=-1)) & mask).sum()
    return ContrastiveOutput(loss=loss, num_positives=num_pos, num_logits=num_pos * (1 + N),
                             binary_correct=binary, ranking_correct=ranking,
                             logits=logits if keep_logits else None, mask=mask if keep_logits else None)


def fairseq_flat_logits(logits: Tensor, offset: int) -> tuple[Tensor, Tensor]:
    """(B, T, K, 1 + N) logits (by target frame, all utterances T frames long) -> fairseq's flat
    layout: for each step k, positives of all (utterance, frame), then negative 1, ..., N;
    returns (logits, labels), both 1-D."""
    B, T, K, M = logits.shape
    flat, labels = [], []
    for step in range(K):
        first = offset + step
        if first >= T:
            break
        block = logits[:, first:, step, :].permute(2, 0, 1).reshape(M, -1)   # (1 + N, B * T_k)
        flat.append(block.reshape(-1))
        lab = torch.zeros_like(block)
        lab[0] = 1.0
        labels.append(lab.reshape(-1))
    return torch.cat(flat), torch.cat(labels)
