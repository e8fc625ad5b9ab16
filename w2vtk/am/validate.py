"""Dev-set evaluation of an acoustic model during ``train-am`` and the per-epoch table it prints."""

from __future__ import annotations

import time
from typing import Any

from w2vtk import dist
from w2vtk.am.data import FeatureDir, Normaliser, pad_batch, prefetch
from w2vtk.am.metrics import DevScorer
from w2vtk.progress import console
from w2vtk.training import autocast


def evaluate(model, criterion, fd: FeatureDir, labels: dict[str, list[int]], batches: list[list[str]],
             norm: Normaliser, tokens, device, amp: str, info) -> dict[str, Any]:
    """Dev loss (per token, over utterances the criterion can align) and greedy error rates (all
    utterances), computed on this rank's share of ``batches`` and summed over ranks. ``criterion``:
    :mod:`w2vtk.am.criterion` (CTC or ASG); ``labels`` are token ids before any packing."""
    import torch

    t0 = time.perf_counter()
    model.eval()
    scorer = DevScorer(tokens)
    loss_sum, tok_sum = 0.0, 0.0
    mine = batches[info.rank::info.world_size]
    with torch.no_grad():
        for utts, (feats, lengths) in prefetch(mine, lambda b: pad_batch(fd, b, norm)):
            with autocast(device, amp):
                logits, out_lengths = model(feats.to(device), lengths.to(device))
            logits = logits.float()
            cpu_logits, out_cpu = logits.cpu(), out_lengths.cpu()
            ok, targets = [], []
            for i, utt in enumerate(utts):
                lab = labels[utt]
                n = int(out_cpu[i])
                scorer.add(lab, criterion.greedy(model, cpu_logits[i], n))
                target = criterion.targets(lab)
                if n >= criterion.min_frames(target) and n > 0:
                    ok.append(i)
                    targets.append(target)
            if ok:
                labs = [labels[utts[i]] for i in ok]
                loss = criterion.loss(model, logits[ok], out_lengths[ok], targets, [utts[i] for i in ok])
                loss_sum += float(loss)
                tok_sum += criterion.norm_size(labs)
    totals = scorer.totals()
    names = sorted(totals)
    packed = torch.tensor([loss_sum, tok_sum] + [v for k in names for v in (totals[k].errors, totals[k].ref_len)],
                          dtype=torch.float64)
    if info.distributed:
        packed = dist.reduce_to_cpu(packed, device)
    loss_sum, tok_sum = float(packed[0]), float(packed[1])
    rates = {}
    for i, k in enumerate(names):
        e, n = float(packed[2 + 2 * i]), float(packed[3 + 2 * i])
        rates[k] = 100.0 * e / n if n > 0 else 0.0
    unit = scorer.unit_name
    model.train()
    return {"loss": loss_sum / tok_sum if tok_sum > 0 else None, "unit": unit, "error": rates[unit],
            "wer": rates.get("WER"), "time_s": time.perf_counter() - t0}


EPOCH_COLUMNS = ("epoch", "upd", "lr", "train loss", "dev loss", "dev {unit}", "dev WER", "time", "audio-s/s", "best")
EPOCH_WIDTHS = (9, 6, 8, 10, 9, 8, 7, 6, 9, 4)


def print_epoch_table(rec: dict, unit: str, max_epochs: int, header: bool) -> None:
    """One fixed-width row per epoch (74 columns: fits an 80-column terminal, and a redirected log
    reads as one table), the header only before the first row this run prints; the full record is
    in metrics.jsonl. Losses are CTC per target token; error rates in percent; time is the epoch's
    training time; best is the best dev epoch so far."""
    def f(x, fmt):
        return "-" if x is None else format(x, fmt)

    def row(cells) -> str:
        return " ".join(str(c).rjust(w) for c, w in zip(cells, EPOCH_WIDTHS))

    if header:
        console.print(row(c.format(unit=unit) for c in EPOCH_COLUMNS), highlight=False, markup=False)
    console.print(row((f"{rec['epoch']}/{max_epochs}", rec["updates"], f(rec["lr"], ".2g"), f(rec["train_loss"], ".4f"),
                       f(rec["dev_loss"], ".4f"), f(rec[unit.lower()], ".2f"), f(rec["wer"], ".2f"),
                       f"{rec['time_s']:.0f}s", f(rec["audio_s_per_s"], ".0f"), rec["best_epoch"])),
                  highlight=False, markup=False)
