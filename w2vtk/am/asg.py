"""The Auto Segmentation Criterion (ASG; Collobert, Puhrsch & Synnaeve 2016), wav2letter's acoustic-model
loss and the one the wav2vec paper trained its TIMIT and WSJ models with.

A path is one token per frame (no blank). Its score is the sum of the frames' emission scores plus a
transition score for every pair of consecutive frames. For an utterance with emissions ``x`` (T, N)
and transitions ``A`` (N, N), ``A[prev, next]`` the score of token ``next`` at frame t after ``prev``
at frame t-1 (none on the first frame)::

    -log p(target) = logsumexp over all N^T paths  -  logsumexp over the paths whose
                     repeat-collapse equals the target

Both terms are forward recursions (wav2letter's ``FullConnectionCriterion`` and ``ForceAlignmentCriterion``):

    full:  a_0(j) = x_0(j),  a_t(j) = x_t(j) + logsumexp_i (a_{t-1}(i) + A[i, j])
    target (tokens y_0..y_{L-1}, each held one or more frames, in order):
           b_0(0) = x_0(y_0),
           b_t(l) = x_t(y_l) + logsumexp (b_{t-1}(l) + A[y_l, y_l], b_{t-1}(l-1) + A[y_{l-1}, y_l])
    loss = logsumexp_j a_{T-1}(j) - b_{T-1}(L-1)

A target with two equal adjacent tokens could not be told from one token held longer: it is refused
(wav2letter packs such repeats into repetition labels first, :func:`w2vtk.tokens.pack_replabels`).

Orientation: w2vtk's ``transitions[prev, next]``; wav2letter stores the transpose (``trans[next][prev]``)
and flashlight-text's decoder reads ``transitions[next * N + prev]``: pass ``transitions.T``
flattened (:func:`w2vtk.am.viterbi.decoder_transitions`; the best path is :func:`w2vtk.am.viterbi.viterbi`). Otherwise the definition is wav2letter's: unnormalised
emissions (no log-softmax), no transition score on the first frame, none to an end state.

The backward pass runs the same recursions backwards (forward-backward) instead of autograd through
T steps, so memory is O(B T (N + L)) and both directions cost O(B T N^2). Both recursions are
renormalised every frame (the subtracted amounts summed in float64), so fp32 holds for any T.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from w2vtk.errors import W2vtkError

Scaling = Literal["none", "input", "input-sqrt", "target", "target-sqrt"]
SCALINGS = ("none", "input", "input-sqrt", "target", "target-sqrt")


def check_targets(targets: torch.Tensor, target_lengths: torch.Tensor, emission_lengths: torch.Tensor,
                  num_tokens: int, names: list[str] | None = None) -> None:
    """ValueError naming the utterance (``names[b]`` or its batch index) for a target ASG cannot
    score: a token out of range, two equal adjacent tokens, or more tokens than frames."""
    tl, el = target_lengths.tolist(), emission_lengths.tolist()
    rows = targets.tolist()
    for b, (row, n, t) in enumerate(zip(rows, tl, el)):
        who = names[b] if names is not None else f"utterance {b}"
        ids = row[:n]
        if n < 1:
            raise ValueError(f"{who}: empty target (ASG needs at least one token)")
        if n > t:
            raise ValueError(f"{who}: target of {n} tokens is longer than its {t} frames")
        for i, tok in enumerate(ids):
            if not 0 <= tok < num_tokens:
                raise ValueError(f"{who}: token id {tok} at index {i} is outside 0..{num_tokens - 1}")
            if i and tok == ids[i - 1]:
                raise ValueError(f"{who}: token {tok} repeats at index {i}; pack repeats into repetition "
                                 f"labels first (pack_replabels)")


def _renorm(a: torch.Tensor, live: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Subtract each row's max (rows of live utterances only) so the recursions stay near 0 in fp32
    however long the utterance; returns (a', the subtracted amounts (B,))."""
    c = torch.where(live, a.max(dim=1).values, torch.zeros_like(a[:, 0]))
    return a - c[:, None], c


def _forward(x: torch.Tensor, trans: torch.Tensor, tgt: torch.Tensor, tlen: torch.Tensor, elen: torch.Tensor):
    """Forward recursions. x (B, T, N), trans (N, N), tgt (B, L) (padding clamped to valid ids).

    The alphas are kept renormalised per frame: ``fa[t] + fa_off[t]`` is the true a_t (``fa_off``
    the cumulative amounts subtracted, float64), likewise ``ta`` / ``ta_off`` for the target chain.
    Returns (log Z (B,) f64, target score (B,) f64, fa (T, B, N), fa_off (T, B), ta (T, B, L),
    ta_off (T, B), x_t(y_l) (B, T, L), stay (B, L), move (B, L))."""
    B, T, N = x.shape
    L = tgt.shape[1]
    neg = torch.finfo(x.dtype).min / 4
    xt = x.gather(2, tgt[:, None, :].expand(B, T, L))  # (B, T, L): x_t(y_l)
    stay = trans[tgt, tgt]  # (B, L): A[y_l, y_l]
    move = torch.full_like(stay, neg)
    move[:, 1:] = trans[tgt[:, :-1], tgt[:, 1:]]  # (B, L): A[y_{l-1}, y_l]; none into l = 0
    fa, ta = x.new_empty(T, B, N), x.new_empty(T, B, L)
    fa_off = torch.zeros(T, B, dtype=torch.float64, device=x.device)
    ta_off = torch.zeros(T, B, dtype=torch.float64, device=x.device)
    always = torch.ones(B, dtype=torch.bool, device=x.device)
    first = x.new_full((B, L), neg)
    first[:, 0] = xt[:, 0, 0]
    fa[0], c = _renorm(x[:, 0], always)
    fa_off[0] = c.double()
    ta[0], c = _renorm(first, always)
    ta_off[0] = c.double()
    for t in range(1, T):
        live = t < elen
        full = x[:, t] + torch.logsumexp(fa[t - 1][:, :, None] + trans[None], dim=1)
        fa[t], c = _renorm(torch.where(live[:, None], full, fa[t - 1]), live)
        fa_off[t] = fa_off[t - 1] + c.double()
        prev = ta[t - 1]
        shifted = torch.cat([prev.new_full((B, 1), neg), prev[:, :-1]], dim=1)
        tg = xt[:, t] + torch.logaddexp(prev + stay, shifted + move)
        ta[t], c = _renorm(torch.where(live[:, None], tg, prev), live)
        ta_off[t] = ta_off[t - 1] + c.double()
    log_z = fa_off[T - 1] + torch.logsumexp(fa[T - 1], dim=1).double()
    last = (tlen - 1).clamp(min=0)
    score = ta_off[T - 1] + ta[T - 1].gather(1, last[:, None])[:, 0].double()
    return log_z, score, fa, fa_off, ta, ta_off, xt, stay, move


class _ASG(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, trans, tgt, tlen, elen):
        # fp32 (fp16 / bf16 emissions of autocast too); float64 inputs are computed in float64
        work = torch.float64 if torch.float64 in (x.dtype, trans.dtype) else torch.float32
        xw, trw = x.to(work), trans.to(work)
        log_z, score, fa, fa_off, ta, ta_off, xt, stay, move = _forward(xw, trw, tgt, tlen, elen)
        ctx.save_for_backward(xw, trw, tgt, tlen, elen, fa, fa_off, ta, ta_off, xt, stay, move, log_z, score)
        ctx.dtypes = (x.dtype, trans.dtype)
        return (log_z - score).to(work)

    @staticmethod
    def backward(ctx, grad):
        x, trans, tgt, tlen, elen, fa, fa_off, ta, ta_off, xt, stay, move, log_z, score = ctx.saved_tensors
        B, T, N = x.shape
        L = tgt.shape[1]
        neg = torch.finfo(x.dtype).min / 4
        g = grad.to(x.dtype)
        gx = torch.zeros_like(x)
        gtrans = torch.zeros_like(trans)
        # betas, renormalised like the alphas: fb + fb_off is the true beta_t (0 at an utterance's
        # last frame; beta_t(i) = logsumexp_j (A[i, j] + x_{t+1}(j) + beta_{t+1}(j)))
        fb, fb_off = x.new_zeros(B, N), torch.zeros(B, dtype=torch.float64, device=x.device)
        tb = x.new_full((B, L), neg)
        tb.scatter_(1, (tlen - 1).clamp(min=0)[:, None], 0.0)
        tb_off = torch.zeros_like(fb_off)
        xt_grad, stay_grad, move_grad = torch.zeros_like(xt), torch.zeros_like(stay), torch.zeros_like(move)
        for t in range(T - 1, -1, -1):
            live = t < elen
            lv = live[:, None]
            # frame posteriors, the float64 offsets folded in first so exp() sees small numbers
            k_full = (fa_off[t] + fb_off - log_z).to(x.dtype)[:, None]
            k_tgt = (ta_off[t] + tb_off - score).to(x.dtype)[:, None]
            gx[:, t] += g[:, None] * torch.exp(fa[t] + fb + k_full) * lv
            xt_grad[:, t] += torch.exp(ta[t] + tb + k_tgt) * lv
            if t == 0:
                break
            # transitions between frames t-1 and t
            w = fb + x[:, t]  # x_t(j) + beta_t(j) - fb_off
            k_pair = (fa_off[t - 1] + fb_off - log_z).to(x.dtype)[:, None, None]
            pair = fa[t - 1][:, :, None] + trans[None] + w[:, None, :] + k_pair
            gtrans += (torch.exp(pair) * (g * live)[:, None, None]).sum(0)
            wt = tb + xt[:, t]
            k_tp = (ta_off[t - 1] + tb_off - score).to(x.dtype)[:, None]
            prev = ta[t - 1]
            shifted = torch.cat([prev.new_full((B, 1), neg), prev[:, :-1]], dim=1)
            stay_grad += torch.exp(prev + stay + wt + k_tp) * lv
            move_grad += torch.exp(shifted + move + wt + k_tp) * lv
            # betas of frame t-1 (frames past an utterance's end keep its terminal betas)
            new_fb = torch.logsumexp(trans[None] + w[:, None, :], dim=2)
            nxt = torch.cat([wt[:, 1:] + move[:, 1:], wt.new_full((B, 1), neg)], dim=1)
            new_tb = torch.logaddexp(wt + stay, nxt)
            fb, c = _renorm(torch.where(lv, new_fb, fb), live)
            fb_off = fb_off + c.double()
            tb, c = _renorm(torch.where(lv, new_tb, tb), live)
            tb_off = tb_off + c.double()
        # the target term enters the loss with a minus sign
        gx.scatter_add_(2, tgt[:, None, :].expand(B, T, L), -g[:, None, None] * xt_grad)
        gflat = gtrans.view(-1)
        gflat.index_add_(0, (tgt * N + tgt).reshape(-1), (-g[:, None] * stay_grad).reshape(-1))
        gflat.index_add_(0, (tgt[:, :-1] * N + tgt[:, 1:]).reshape(-1),
                         (-g[:, None] * move_grad[:, 1:]).reshape(-1))
        return gx.to(ctx.dtypes[0]), gtrans.to(ctx.dtypes[1]), None, None, None


def asg_loss(emissions: torch.Tensor, transitions: torch.Tensor, targets: torch.Tensor,
             target_lengths: torch.Tensor, emission_lengths: torch.Tensor, reduction: str = "none",
             scaling: Scaling = "none", names: list[str] | None = None, check: bool = True) -> torch.Tensor:
    """ASG loss, ``-log p(target)`` per utterance (see the module docstring).

    ``emissions`` (B, T, N) unnormalised frame scores; ``transitions`` (N, N), ``[prev, next]``;
    ``targets`` (B, L) token ids, padded (values past ``target_lengths`` are ignored);
    ``target_lengths`` / ``emission_lengths`` (B,). ``scaling`` (wav2letter's loss scaling):
    ``none``, ``input`` (/ T), ``input-sqrt`` (/ sqrt T), ``target`` (/ L), ``target-sqrt``
    (/ sqrt L), per utterance. ``reduction``: ``none`` (B,), ``sum`` or ``mean``. Computed in fp32
    (float64 when an input is float64).
    ``check`` refuses targets ASG cannot score (:func:`check_targets`; ValueError naming ``names[b]``).
    """
    if emissions.dim() != 3:
        raise ValueError(f"emissions must be (B, T, N), got {tuple(emissions.shape)}")
    B, T, N = emissions.shape
    if transitions.shape != (N, N):
        raise ValueError(f"transitions must be ({N}, {N}), got {tuple(transitions.shape)}")
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {', '.join(SCALINGS)}, got {scaling!r}")
    dev = emissions.device
    targets = targets.to(dev).long()
    tlen = target_lengths.to(dev).long()
    elen = emission_lengths.to(dev).long()
    if targets.dim() != 2 or targets.shape[0] != B or tlen.shape != (B,) or elen.shape != (B,):
        raise ValueError("targets must be (B, L) with target_lengths and emission_lengths (B,)")
    if int(elen.max()) > T or int(elen.min()) < 1:
        raise ValueError(f"emission_lengths must be in 1..{T}")
    if check:
        check_targets(targets, tlen, elen, N, names)
    L = max(1, int(tlen.max()))
    tgt = targets[:, :L]
    # padding positions point at the last real token: never reached, but a valid index
    pos = torch.arange(L, device=dev)[None, :]
    last_tok = tgt.gather(1, (tlen - 1).clamp(min=0)[:, None])
    tgt = torch.where(pos < tlen[:, None], tgt, last_tok).clamp(0, N - 1)
    loss = _ASG.apply(emissions, transitions, tgt, tlen, elen)
    if scaling != "none":
        size = (elen if scaling.startswith("input") else tlen).to(loss.dtype)
        loss = loss / (size.sqrt() if scaling.endswith("sqrt") else size)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    raise ValueError(f"reduction must be none, sum or mean, got {reduction!r}")


def linear_targets(targets: torch.Tensor, target_lengths: torch.Tensor,
                   emission_lengths: torch.Tensor) -> torch.Tensor:
    """wav2letter's linear segmentation: each utterance's target stretched evenly over its frames,
    frame t taking token ``targets[b, t * L // T]`` (L target tokens, T frames; L is cut to T).
    (B, L) -> (B, max T); frames past an utterance's end repeat its last token (never read)."""
    B = targets.shape[0]
    t_max = int(emission_lengths.max())
    frames = torch.arange(t_max, device=targets.device)[None, :].expand(B, t_max)
    T = emission_lengths.to(targets.device).long()[:, None]
    L = torch.minimum(target_lengths.to(targets.device).long()[:, None], T)
    idx = torch.minimum(frames, T - 1) * L // T
    return targets.long().gather(1, idx.clamp(max=targets.shape[1] - 1))


def linseg_loss(emissions: torch.Tensor, transitions: torch.Tensor, targets: torch.Tensor,
                target_lengths: torch.Tensor, emission_lengths: torch.Tensor, reduction: str = "none",
                scaling: Scaling = "none", names: list[str] | None = None) -> torch.Tensor:
    """wav2letter's ``LinSegCriterion`` (``--linseg``): ASG's loss with the alignment fixed to the
    linear segmentation (:func:`linear_targets`), ``log Z - score(that one path)`` per utterance,
    the path's self-transitions included. Warms up emissions and transitions before ASG proper
    lets the alignment move. Arguments as :func:`asg_loss`; as in wav2letter the target-size
    scalings divide by the segmented target's length, i.e. the utterance's frames."""
    if emissions.dim() != 3:
        raise ValueError(f"emissions must be (B, T, N), got {tuple(emissions.shape)}")
    tlen = target_lengths.to(emissions.device).long()
    elen = emission_lengths.to(emissions.device).long()
    if int(elen.min()) < 1:
        raise ValueError("emission_lengths must be >= 1")
    N = emissions.shape[2]
    for b, (n, t) in enumerate(zip(tlen.tolist(), elen.tolist())):
        who = names[b] if names is not None else f"utterance {b}"
        if n < 1:
            raise ValueError(f"{who}: empty target (ASG needs at least one token)")
        row = targets[b, :n]
        if int(row.min()) < 0 or int(row.max()) >= N:
            raise ValueError(f"{who}: a token id is outside 0..{N - 1}")
    lin = linear_targets(targets.to(emissions.device), tlen, elen)
    # one target token per frame: the target chain has exactly one complete path
    return asg_loss(emissions[:, :lin.shape[1]], transitions, lin, elen, elen, reduction=reduction,
                    scaling=scaling, names=names, check=False)


def diagonal_init(num_tokens: int, diagonal: float) -> torch.Tensor:
    """wav2letter's ``transdiag``: zeros with ``diagonal`` on the diagonal (N, N)."""
    if not math.isfinite(diagonal):
        raise W2vtkError(f"transdiag: must be finite, got {diagonal}")
    return torch.eye(num_tokens) * float(diagonal)
