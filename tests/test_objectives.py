"""Contrastive objective: negatives, loss parity with fairseq, counts, vectorised == brute force."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from w2vtk.models.fairseq import load_wav2vec
from w2vtk.objectives import contrastive_loss, fairseq_flat_logits, make_generator, sample_negatives

FIX = Path(__file__).resolve().parent / "fixtures" / "fairseq_wav2vec"


pytestmark = pytest.mark.usefixtures("one_thread")


def test_negatives_never_the_target_and_uniform():
    gens = [make_generator(1, 5, i) for i in range(3)]
    lengths = [50, 2, 17]
    neg = sample_negatives(gens, lengths, 10)
    assert neg.shape == (3, 10, 50) and neg.dtype == torch.int64
    for b, n in enumerate(lengths):
        part = neg[b, :, :n]
        assert (part != torch.arange(n)).all()
        assert part.min() >= 0 and part.max() < n
        assert (neg[b, :, n:] == 0).all()
    assert (neg[1, :, 0] == 1).all() and (neg[1, :, 1] == 0).all()  # 2 frames: the other one
    # Uniform over the other frames: every other frame turns up, counts near (draws / (n - 1)).
    big = sample_negatives(make_generator(0, 0, 0), [20], 2000)[0]       # (N, T)
    counts = torch.stack([torch.bincount(big[:, s], minlength=20) for s in range(20)])
    assert (counts.diagonal() == 0).all()
    off = counts[~torch.eye(20, dtype=torch.bool)].float()
    assert off.min() > 2000 / 19 * 0.6 and off.max() < 2000 / 19 * 1.4
    with pytest.raises(ValueError, match="at least 2"):
        sample_negatives(make_generator(0, 0, 0), [1], 3)


def test_generators_keyed_and_independent_of_process_split():
    a = sample_negatives([make_generator(7, 3, i) for i in range(4)], [30, 25, 30, 12], 5)
    # Two "processes" each holding half the global batch draw the same negatives.
    lo = sample_negatives([make_generator(7, 3, i) for i in (0, 1)], [30, 25], 5)
    hi = sample_negatives([make_generator(7, 3, i) for i in (2, 3)], [30, 12], 5, max_frames=30)
    assert torch.equal(a[:2], lo) and torch.equal(a[2:], hi)
    b = sample_negatives([make_generator(7, 4, i) for i in range(4)], [30, 25, 30, 12], 5)
    assert not torch.equal(a, b)
    c1 = torch.randint(0, 1000, (5,), generator=make_generator(7, 3, 0, "crop"))
    c2 = torch.randint(0, 1000, (5,), generator=make_generator(7, 3, 0, "negatives"))
    assert not torch.equal(c1, c2)


def test_loss_parity_with_fairseq_fixture():
    fix = np.load(FIX / "small_large_args.loss.npz")
    model, info = load_wav2vec(FIX / "small_large_args.pt")
    assert info.config.dropout == info.config.dropout_features == info.config.dropout_agg == 0.0
    model.train()
    out = model(torch.from_numpy(fix["wave"]))
    assert int(fix["offset"]) == model.offset == 3
    res = contrastive_loss(out.z, model.project_steps(out.c), torch.from_numpy(fix["neg_idx"]),
                           model.offset, keep_logits=True)
    loss_sum = float(fix["loss_sum"])
    assert abs(res.loss.item() - loss_sum) <= 1e-4 * abs(loss_sum)
    assert int(res.num_positives) == 2148 and int(res.num_logits) == 23628
    flat, labels = fairseq_flat_logits(res.logits.detach(), model.offset)
    np.testing.assert_allclose(flat.numpy(), fix["logits"], atol=1e-4, rtol=1e-5)
    np.testing.assert_array_equal(labels.numpy(), fix["labels"])
    # The fixture's logits give the same BCE sum (checks the flat layout end to end).
    bce = F.binary_cross_entropy_with_logits(torch.from_numpy(fix["logits"]),
                                             torch.from_numpy(fix["labels"]), reduction="sum")
    assert abs(bce.item() - loss_sum) <= 1e-4 * loss_sum
    # Targets are not detached: the loss reaches the encoder through z directly too.
    res.loss.backward()
    assert model.encoder.layers[0].conv.weight.grad.abs().sum() > 0


def brute_force(z, pred, neg, offset, lengths, infonce=False):
    B, C, T = z.shape
    K, N = pred.shape[2], neg.shape[1]
    loss, npos, binary, ranking = 0.0, 0, 0, 0
    for b in range(B):
        for s in range(int(lengths[b])):
            for k in range(K):
                t = s - offset - k
                if t < 0:
                    continue
                h = pred[b, t, k]
                cand = [z[b, :, s]] + [z[b, :, int(neg[b, n, s])] for n in range(N)]
                logits = torch.stack([h @ c for c in cand])
                if infonce:
                    loss += float(torch.logsumexp(logits, 0) - logits[0])
                else:
                    loss += float(F.softplus(-logits[0]) + F.softplus(logits[1:]).sum())
                npos += 1
                binary += int(logits[0] > 0) + int((logits[1:] <= 0).sum())
                ranking += int(logits[0] > logits[1:].max())
    return loss, npos, binary, ranking


@pytest.mark.parametrize("infonce", [False, True])
def test_vectorised_equals_brute_force_with_padding(infonce):
    torch.manual_seed(0)
    B, C, T, K, N, offset = 3, 6, 14, 4, 3, 2
    z = torch.randn(B, C, T)
    pred = torch.randn(B, T, K, C)
    lengths = torch.tensor([14, 9, 5])
    neg = sample_negatives([make_generator(0, 0, i) for i in range(B)], lengths, N)
    res = contrastive_loss(z, pred, neg, offset, lengths=lengths, infonce=infonce)
    loss, npos, binary, ranking = brute_force(z, pred, neg, offset, lengths, infonce)
    assert res.loss.item() == pytest.approx(loss, rel=1e-5)
    assert int(res.num_positives) == npos and int(res.num_logits) == npos * (N + 1)
    assert int(res.binary_correct) == binary and int(res.ranking_correct) == ranking
    # Padding frames contribute nothing: each utterance alone gives the same sums.
    alone = sum(contrastive_loss(z[b:b + 1, :, :n], pred[b:b + 1, :n], neg[b:b + 1, :, :n], offset,
                                 infonce=infonce).loss.item() for b, n in enumerate(lengths.tolist()))
    assert res.loss.item() == pytest.approx(alone, rel=1e-5)


def test_ranking_accuracy_of_a_perfect_and_a_constant_model():
    torch.manual_seed(1)
    B, C, T, K, N, offset = 1, 40, 30, 3, 5, 1
    z = torch.nn.functional.normalize(torch.randn(B, C, T), dim=1) * 4
    pred = torch.zeros(B, T, K, C)
    for t in range(T):
        for k in range(K):
            if t + offset + k < T:
                pred[0, t, k] = z[0, :, t + offset + k]
    neg = sample_negatives(make_generator(0, 0, 0), [T], N)
    res = contrastive_loss(z, pred, neg, offset)
    assert int(res.ranking_correct) == int(res.num_positives)
    const = contrastive_loss(z, torch.zeros_like(pred) , neg, offset)
    assert int(const.ranking_correct) == 0                               # ties are not wins
    assert int(const.binary_correct) == int(const.num_positives) * N     # "always negative"
    assert const.loss.item() == pytest.approx(float(const.num_logits) * np.log(2), rel=1e-6)
