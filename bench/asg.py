"""The ASG loss's share of a WSJ-size training step, against CTC's.

    python bench/asg.py [--batch 4] [--seconds 10] [--runs 5] [--device cpu|cuda] [--threads N]

The model is conf/am/wsj.yaml's 17-layer gated ConvNet (bench/gpu.py's WSJ_AM) on 512-dim inputs,
32 outputs (the paper's 31 graphemes and tokens.txt's index 0); ``--batch`` utterances of
``--seconds`` s (100 frames/s in, 50 out at stride 2), half of them 3/4 as long (a padded batch),
targets of one letter per 4 output frames without adjacent repeats (ASG's packed targets). For each
criterion it times, as the median of ``--runs`` after one warm-up:

- ``step``: the whole training step (forward, loss, backward, clip, SGD update);
- ``loss``: the loss's forward and backward alone, on the same logits (detached), i.e. its share.

Measured (2026-12-04, the 2-core VM with a recipe running beside it, 1 thread, batch 4 x 10 s =
500 output frames, 125 target tokens, medians of 3):

    criterion   step ms   loss fwd+bwd ms   loss share
    CTC          1,773          15              0.9%
    ASG          2,040         175              8.6%      (ASG step / CTC step 1.15)

The ASG recursions are a Python loop over output frames (two small ops each way per frame), so on a
GPU, where the model's step is ~50 ms (bench/GPU.md), launch overhead may dominate: not measured
(no GPU was lent in that session).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu import WSJ_AM, WSJ_TOKENS  # noqa: E402
from w2vtk.am.asg import asg_loss  # noqa: E402
from w2vtk.models.am import build_am  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _median_ms(fn, device: torch.device, runs: int) -> float:
    fn()
    _sync(device)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    frames = int(args.seconds * 100)
    b, n = args.batch, WSJ_TOKENS
    lengths = torch.full((b,), frames, dtype=torch.long)
    lengths[1::2] = frames * 3 // 4
    feats = torch.randn(b, frames, 512, generator=gen).to(device)
    out = {"batch": b, "seconds": args.seconds, "device": str(device), "threads": torch.get_num_threads(),
           "torch": torch.__version__}
    for criterion in ("ctc", "asg"):
        cfg = WSJ_AM.__class__(**{**WSJ_AM.__dict__, "criterion": criterion, "transdiag": 5.0})
        model = build_am(cfg, 512, n).to(device).train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        out_len = model.output_lengths(lengths)
        label_len = (out_len // 4).clamp(min=1)
        width = int(label_len.max())
        # letters 1..n-1 cycling: no two equal neighbours (as packed ASG targets)
        targets = (torch.arange(width)[None, :] + torch.arange(b)[:, None]) % (n - 1) + 1

        def loss_of(logits, lens):
            if criterion == "ctc":
                flat = torch.cat([targets[i, :label_len[i]] for i in range(b)]).to(device)
                lp = logits.float().log_softmax(-1).transpose(0, 1)
                return F.ctc_loss(lp, flat, lens, label_len.to(device), blank=0, reduction="sum")
            return asg_loss(logits.float(), model.transitions, targets, label_len, lens, reduction="sum",
                            scaling="target-sqrt")

        def step():
            opt.zero_grad(set_to_none=True)
            logits, lens = model(feats, lengths.to(device))
            loss_of(logits, lens).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

        with torch.no_grad():
            fixed, fixed_lens = model(feats, lengths.to(device))

        def loss_only():
            logits = fixed.detach().requires_grad_()
            loss_of(logits, fixed_lens).backward()

        step_ms = _median_ms(step, device, args.runs)
        loss_ms = _median_ms(loss_only, device, args.runs)
        out[criterion] = {"step_ms": round(step_ms, 1), "loss_ms": round(loss_ms, 1),
                          "loss_share": round(loss_ms / step_ms, 3), "output_frames": int(out_len.max()),
                          "target_tokens": int(label_len.max())}
        print(f"{criterion}: step {step_ms:8.1f} ms, loss fwd+bwd {loss_ms:7.1f} ms = "
              f"{100 * loss_ms / step_ms:4.1f}% of the step ({b} x {args.seconds:g} s, "
              f"{int(out_len.max())} output frames, {int(label_len.max())} target tokens, {device})")
    print(f"ASG step / CTC step: {out['asg']['step_ms'] / out['ctc']['step_ms']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
