"""ASG (w2vtk.am.asg) against a brute-force enumeration of every frame-level path, and its contract."""

from __future__ import annotations

import itertools

import pytest
import torch

from w2vtk.am.asg import asg_loss, diagonal_init, linear_targets, linseg_loss
from w2vtk.am.viterbi import decoder_transitions, viterbi


def _collapse(path):
    out = []
    for tok in path:
        if not out or out[-1] != tok:
            out.append(tok)
    return out


def _path_score(x, trans, path):
    return sum(x[t, p] for t, p in enumerate(path)) + sum(trans[a, b] for a, b in zip(path, path[1:]))


def _brute_force(x, trans, target):
    """-log p(target) over all N^T paths of x (T, N)."""
    T, N = x.shape
    every, good = [], []
    for path in itertools.product(range(N), repeat=T):
        s = _path_score(x, trans, path)
        every.append(s)
        if _collapse(path) == list(target):
            good.append(s)
    return torch.logsumexp(torch.stack(every), 0) - torch.logsumexp(torch.stack(good), 0)


CASES = [  # (N, emission lengths, targets): repeats of a token with another between, one-token
    # targets, targets as long as their frames, utterances shorter than the batch's T
    (3, [4, 4], [[0, 1, 0], [2]]),
    (4, [6, 5, 3], [[1, 2, 1], [3, 0], [0, 1, 2]]),
    (2, [6, 6], [[0, 1, 0, 1, 0, 1], [1, 0]]),
    (4, [5, 2, 4], [[3], [2, 1], [0, 3, 0, 3]]),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_loss_and_gradients_equal_brute_force(case):
    n, lengths, targets = CASES[case]
    gen = torch.Generator().manual_seed(case)
    B, T = len(lengths), max(lengths)
    x = torch.randn(B, T, n, generator=gen, dtype=torch.float64).requires_grad_()
    trans = torch.randn(n, n, generator=gen, dtype=torch.float64).requires_grad_()
    L = max(len(t) for t in targets)
    padded = torch.tensor([t + [n - 1] * (L - len(t)) for t in targets])  # padding must be ignored
    tlen, elen = torch.tensor([len(t) for t in targets]), torch.tensor(lengths)
    got = asg_loss(x, trans, padded, tlen, elen)
    want = torch.stack([_brute_force(x[b, :lengths[b]], trans, targets[b]) for b in range(B)])
    assert got.dtype == torch.float64 and torch.allclose(got, want, atol=1e-9)
    w = torch.randn(B, generator=gen, dtype=torch.float64)
    gx, gt = torch.autograd.grad((got * w).sum(), [x, trans])
    wx, wt = torch.autograd.grad((want * w).sum(), [x, trans])
    assert torch.allclose(gx, wx, atol=1e-9) and torch.allclose(gt, wt, atol=1e-9)
    assert gx[0, lengths[0]:].abs().sum() == 0 if lengths[0] < T else True  # padded frames get nothing


def test_batching_and_padding_do_not_change_an_utterance():
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(1, 9, 5, generator=gen)
    trans = torch.randn(5, 5, generator=gen)
    alone = asg_loss(x, trans, torch.tensor([[1, 2, 3]]), torch.tensor([3]), torch.tensor([9]))
    other = torch.randn(1, 9, 5, generator=gen)
    batch = torch.cat([torch.cat([x, torch.randn(1, 4, 5, generator=gen)], 1), torch.cat([other, other[:, :4]], 1)])
    both = asg_loss(batch, trans, torch.tensor([[1, 2, 3, 0, 0], [4, 0, 4, 1, 2]]), torch.tensor([3, 5]),
                    torch.tensor([9, 13]))
    assert torch.allclose(both[0], alone[0], atol=1e-5)


def test_scaling_modes_and_reductions():
    gen = torch.Generator().manual_seed(3)
    x, trans = torch.randn(2, 8, 4, generator=gen), torch.randn(4, 4, generator=gen)
    tg, tlen, elen = torch.tensor([[1, 2, 1, 0], [3, 0, 0, 0]]), torch.tensor([4, 1]), torch.tensor([8, 5])
    raw = asg_loss(x, trans, tg, tlen, elen)
    assert (raw > 0).all()
    assert torch.allclose(asg_loss(x, trans, tg, tlen, elen, scaling="input"), raw / elen)
    assert torch.allclose(asg_loss(x, trans, tg, tlen, elen, scaling="input-sqrt"), raw / elen.float().sqrt())
    assert torch.allclose(asg_loss(x, trans, tg, tlen, elen, scaling="target"), raw / tlen)
    assert torch.allclose(asg_loss(x, trans, tg, tlen, elen, scaling="target-sqrt"), raw / tlen.float().sqrt())
    assert torch.allclose(asg_loss(x, trans, tg, tlen, elen, reduction="sum"), raw.sum())
    assert torch.allclose(asg_loss(x, trans, tg, tlen, elen, reduction="mean"), raw.mean())


@pytest.mark.parametrize("targets,tlen,match", [
    ([[1, 1, 2]], [3], "utt-a: token 1 repeats at index 1"),
    ([[1, 2, 3, 1, 2, 3, 1]], [7], "utt-a: target of 7 tokens is longer than its 6 frames"),
    ([[1, 9]], [2], "utt-a: token id 9 at index 1"),
])
def test_bad_targets_are_refused_naming_the_utterance(targets, tlen, match):
    with pytest.raises(ValueError, match=match):
        asg_loss(torch.zeros(1, 6, 4), torch.zeros(4, 4), torch.tensor(targets), torch.tensor(tlen),
                 torch.tensor([6]), names=["utt-a"])


def test_long_utterances_in_fp32_match_float64():
    """T = 3,000 frames with large scores: fp32 (renormalised every frame) against the same recursion in
    float64, where each frame's emission gradient p_full - p_target sums to 0 over the tokens."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3000, 30, generator=gen) * 5
    tg, tlen, elen = torch.tensor([[1 + (i % 29) for i in range(400)]]), torch.tensor([400]), torch.tensor([3000])
    out = {}
    for dtype in (torch.float32, torch.float64):
        xx = x.to(dtype).detach().requires_grad_()
        trans = diagonal_init(30, 5.0).to(dtype).requires_grad_()
        loss = asg_loss(xx, trans, tg, tlen, elen)
        loss.sum().backward()
        assert loss.dtype == dtype and torch.isfinite(xx.grad).all() and torch.isfinite(trans.grad).all()
        out[dtype] = (loss.double(), xx.grad.double(), trans.grad.double())
    (l32, gx32, gt32), (l64, gx64, gt64) = out[torch.float32], out[torch.float64]
    assert gx64.sum(-1).abs().max() < 1e-8
    assert abs(l32 - l64).max() / l64.abs().max() < 1e-6
    assert (gx32 - gx64).abs().max() < 5e-3 and (gt32 - gt64).abs().max() < 1e-2 * gt64.abs().max()


def test_viterbi_is_the_best_path_and_decoder_transitions_are_transposed():
    gen = torch.Generator().manual_seed(5)
    x, trans = torch.randn(5, 3, generator=gen), torch.randn(3, 3, generator=gen)
    best = max(itertools.product(range(3), repeat=5), key=lambda p: float(_path_score(x, trans, p)))
    assert viterbi(x, trans) == list(best)
    assert viterbi(x, trans, length=3) == list(max(itertools.product(range(3), repeat=3),
                                                   key=lambda p: float(_path_score(x[:3], trans, p))))
    flat = decoder_transitions(trans)
    assert flat[2 * 3 + 1] == pytest.approx(float(trans[1, 2]))  # [next * N + prev]
    assert torch.equal(diagonal_init(3, 5.0), torch.eye(3) * 5)


def test_linear_targets_stretch_each_target_evenly_like_wav2letter():
    # frame t takes token t * L // T of its own utterance (wav2letter's getLinearTarget)
    got = linear_targets(torch.tensor([[4, 5, 6], [7, 8, 0], [1, 2, 3]]), torch.tensor([3, 2, 3]),
                         torch.tensor([7, 4, 2]))
    assert got[0].tolist() == [4, 4, 4, 5, 5, 6, 6]
    assert got[1, :4].tolist() == [7, 7, 8, 8]
    assert got[2, :2].tolist() == [1, 2]  # a target longer than its frames is cut to them


def test_linseg_loss_is_log_z_minus_the_linear_paths_score():
    gen = torch.Generator().manual_seed(11)
    n, lengths, targets = 3, [5, 4], [[0, 2, 1], [1, 0]]
    x = torch.randn(2, 5, n, generator=gen, dtype=torch.float64).requires_grad_()
    trans = torch.randn(n, n, generator=gen, dtype=torch.float64).requires_grad_()
    padded, tlen = torch.tensor([[0, 2, 1], [1, 0, 0]]), torch.tensor([3, 2])
    got = linseg_loss(x, trans, padded, tlen, torch.tensor(lengths))
    want = []
    for b, (T, tgt) in enumerate(zip(lengths, targets)):
        every = [_path_score(x[b], trans, p) for p in itertools.product(range(n), repeat=T)]
        path = [tgt[t * len(tgt) // T] for t in range(T)]  # the one alignment linseg allows
        want.append(torch.logsumexp(torch.stack(every), 0) - _path_score(x[b], trans, path))
    want = torch.stack(want)
    assert torch.allclose(got, want, atol=1e-9)
    gx, gt = torch.autograd.grad(got.sum(), [x, trans])
    wx, wt = torch.autograd.grad(want.sum(), [x, trans])
    assert torch.allclose(gx, wx, atol=1e-9) and torch.allclose(gt, wt, atol=1e-9)
    # never below ASG's own loss: the linear path is one of the paths ASG sums over
    assert (got >= asg_loss(x, trans, padded, tlen, torch.tensor(lengths)) - 1e-9).all()
    # target-size scalings divide by the segmented target's length: the frames
    scaled = linseg_loss(x, trans, padded, tlen, torch.tensor(lengths), scaling="target")
    assert torch.allclose(scaled, got / torch.tensor(lengths, dtype=torch.float64))
    with pytest.raises(ValueError, match="utt-b: a token id is outside"):
        linseg_loss(x, trans, torch.tensor([[0, 2, 1], [1, 9, 0]]), tlen, torch.tensor(lengths), names=["a", "utt-b"])
