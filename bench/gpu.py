#!/usr/bin/env python
"""The figures of bench/gpu.sh, in one process that imports only torch, numpy and w2vtk's own source.

A lent GPU machine may have another Python and torch, no network and none of w2vtk's other
dependencies (PyYAML, rich, soundfile, kaldiio ...), so nothing here needs them
(tests/test_imports.py holds the modules used to that; tests/bench/test_gpu_bench.py runs ``--smoke``
with those packages blocked). Figures, each written to ``OUT/gpu.json`` as soon as it is measured
(a run cut short still leaves what it had):

1. matmul peaks of this device, measured here (CUDA: fp32, TF32, bf16, fp16 at 8192^3; CPU: fp32);
2. pre-training steps of wav2vec base and large (bench/pretrain.py's step: forward, binary
   contrastive loss, backward, fused Adam) at fairseq's per-GPU batch (10 crops of 9.375 s), fp32
   (TF32 convolutions, as ``w2vtk pretrain``) and bf16 autocast: audio-seconds/s, achieved TFLOP/s
   (bench/pretrain.py's analytic FLOP count), MFU against the bf16 matmul peak of the same run and
   the share of the matching precision's peak, peak GPU memory;
3. extraction of ``c``, base and large, fp32 and bf16, per utterance against padded batches as
   ``w2vtk extract`` runs them (utterances of distinct random lengths, 1-15 s): real-time factor of
   each (compute seconds per audio second), their ratio and the largest deviation between the two
   outputs over every utterance, peak memory;
4. an acoustic-model training step (the WSJ GLU model of conf/am/wsj.yaml on 512-dim ``c``, CTC,
   clipping and Adam as ``w2vtk train-am``), fp32 and bf16: ms per step, frames/s, peak memory.

    python bench/gpu.py --out /tmp/gpu            # on a CUDA machine (about 2-3 minutes on an H200)
    python bench/gpu.py --smoke --out /tmp/smoke  # tiny shapes on the CPU: what CI runs, so this never rots

Timings are medians of timed runs after warm-ups; the GPU is synchronised before each clock read.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # w2vtk from this checkout
sys.path.insert(0, str(HERE))  # the sibling benches

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from extract import model_flops  # noqa: E402  (bench/extract.py)
from peaks import cpu_matmul_peak, cuda_matmul_peaks  # noqa: E402
from pretrain import W2vtkStep, make_inputs, training_flops  # noqa: E402  (bench/pretrain.py)
from w2vtk.features.batches import length_batches  # noqa: E402
from w2vtk.features.wav2vec import Wav2VecExtractor  # noqa: E402
from w2vtk.models.am import AMConfig, build_am  # noqa: E402
from w2vtk.models.wav2vec import Wav2VecModel, preset  # noqa: E402
from w2vtk.training import autocast  # noqa: E402

# conf/am/wsj.yaml's model section (tests/bench/test_gpu_bench.py keeps the two equal; no YAML reader here).
WSJ_AM = AMConfig(block="glu", layers=[(100, 13, 1), (100, 3, 1), (100, 3, 1), (125, 5, 1), (125, 5, 1),
                                       (150, 5, 1), (175, 5, 1), (200, 7, 2), (225, 7, 1), (250, 7, 1),
                                       (250, 7, 1), (250, 7, 1), (300, 9, 1), (300, 9, 1), (375, 9, 1),
                                       (500, 1, 1)],
                  dropout=0.25, weight_norm=True)
WSJ_TOKENS = 32  # the paper's 31 graphemes + CTC's blank


class Report:
    """The JSON record, rewritten whole (temporary name, then rename) after every figure."""

    def __init__(self, path: Path, meta: dict):
        self.path, self.data = path, {"meta": meta, "peaks_gflops": {}, "pretrain": [], "extract": [], "am": []}
        self.t0 = time.perf_counter()
        self.write()

    def add(self, section: str, row) -> None:
        if isinstance(self.data[section], list):
            self.data[section].append(row)
        else:
            self.data[section].update(row)
        self.write()

    def write(self, done: bool = False) -> None:
        self.data["meta"]["elapsed_s"] = round(time.perf_counter() - self.t0, 1)
        self.data["meta"]["complete"] = done
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(self.data, indent=1) + "\n")
        os.replace(tmp, self.path)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def gib(value: float | None) -> str:
    return "" if value is None else f", {value:.1f} GiB"


def peak_memory_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else None


def median_time(fn, device: torch.device, warmup: int, runs: int) -> tuple[float, float, float]:
    """(median, min, max) seconds of ``fn()`` over ``runs`` timed calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), max(times)


# ------------------------------------------------------------------------------- 2. pre-training

def bench_pretrain(name: str, precision: str, device: torch.device, batch: int, seconds: float,
                   peaks: dict, warmup: int, runs: int) -> dict:
    cfg = preset(name)
    samples = int(round(seconds * 16000))
    torch.manual_seed(0)
    model = Wav2VecModel(cfg).to(device).train()
    wave, neg = make_inputs(cfg, batch, samples)
    reset_memory(device)
    step = W2vtkStep(model, wave.to(device), neg.to(device), "none" if precision == "fp32" else precision)
    t, t_min, t_max = median_time(step, device, warmup, runs)
    flops = training_flops(cfg, samples, batch)
    own_peak = peaks.get("tf32" if precision == "fp32" else precision, peaks["fp32"])
    return {"model": name, "precision": precision, "batch": batch, "seconds_per_crop": seconds,
            "step_ms": 1e3 * t, "step_ms_min": 1e3 * t_min, "step_ms_max": 1e3 * t_max,
            "audio_s_per_s": batch * seconds / t, "tflops": flops / t / 1e12,
            "mfu_vs_bf16_peak": flops / t / 1e9 / peaks.get("bf16", peaks["fp32"]),
            "share_of_own_peak": flops / t / 1e9 / own_peak, "max_memory_gib": peak_memory_gib(device)}


# --------------------------------------------------------------------------------- 3. extraction

def utterances(count: int, low_s: float, high_s: float, seed: int = 0) -> list[np.ndarray]:
    """``count`` noise utterances of distinct random lengths (every padded batch a new shape)."""
    rng = np.random.default_rng(seed)
    lengths = rng.uniform(low_s, high_s, size=count)
    return [(0.1 * rng.standard_normal(int(s * 16000))).astype(np.float32) for s in lengths]


def bench_extract(name: str, precision: str, device: torch.device, waves: list[np.ndarray],
                  batch_samples: int, peaks: dict, repeats: int) -> dict:
    torch.manual_seed(0)
    model = Wav2VecModel(preset(name)).eval()
    ext = Wav2VecExtractor(model, layer="c", device=device, precision=precision)
    items = [(f"u{i}", w) for i, w in enumerate(waves)]
    batches = length_batches({i: len(w) for i, w in enumerate(waves)}, batch_samples)
    audio_s = sum(len(w) for w in waves) / 16000

    def per_utterance():
        return [ext.extract([it])[0] for it in items]

    def batched():
        out: list = [None] * len(items)
        for b in batches:
            for i, feats in zip(b, ext.extract([items[i] for i in b])):
                out[i] = feats
        return out

    reset_memory(device)
    single, together = per_utterance(), batched()  # also the warm-up
    deviation = max(float(np.abs(a.astype(np.float64) - b).max()) for a, b in zip(single, together))
    scale = max(float(np.abs(a).max()) for a in single)
    t_single, t_batch = [], []
    for r in range(repeats):  # alternate, so a slow patch of the machine hits both
        for fn, times in ((per_utterance, t_single), (batched, t_batch))[::(1 if r % 2 == 0 else -1)]:
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times.append(time.perf_counter() - t0)
    ts, tb = statistics.median(t_single), statistics.median(t_batch)
    flops = sum(model_flops(model, len(w)) for w in waves)
    return {"model": name, "precision": precision, "utterances": len(waves), "audio_s": audio_s,
            "batches": len(batches), "rtf_per_utterance": ts / audio_s, "rtf_batched": tb / audio_s,
            "audio_s_per_s_per_utterance": audio_s / ts, "audio_s_per_s_batched": audio_s / tb,
            "batched_speedup": ts / tb, "max_abs_deviation": deviation, "max_abs_value": scale,
            "batched_tflops": flops / tb / 1e12,
            "batched_mfu_vs_bf16_peak": flops / tb / 1e9 / peaks.get("bf16", peaks["fp32"]),
            "max_memory_gib": peak_memory_gib(device)}


# ------------------------------------------------------------------------------ 4. acoustic model

def am_flops(cfg: AMConfig, input_dim: int, tokens: int, frames: int, batch: int) -> float:
    """Training FLOPs (3 x forward: 2 x multiply-adds of each conv and the projection)."""
    flops, c_in, t = 0.0, input_dim, frames
    for ch, k, s in cfg.layers:
        t = (t + 2 * (k // 2) - k) // s + 1
        c_out = 2 * ch if cfg.block == "glu" else ch
        flops += 2.0 * c_in * c_out * k * t
        c_in = ch
    flops += 2.0 * c_in * tokens * t
    return 3.0 * flops * batch


def bench_am(cfg: AMConfig, label: str, precision: str, device: torch.device, input_dim: int, tokens: int,
             batch: int, frames: int, peaks: dict, warmup: int, runs: int) -> dict:
    torch.manual_seed(0)
    model = build_am(cfg, input_dim, tokens).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(batch, frames, input_dim, generator=gen).to(device)
    lengths = torch.full((batch,), frames, dtype=torch.long)
    lengths[1::2] = frames * 3 // 4  # a padded batch, as bucketing leaves it
    label_len = max(1, frames // (4 * cfg.stride))
    targets = torch.randint(1, tokens, (batch * label_len,), generator=gen).to(device)
    target_lengths = torch.full((batch,), label_len, dtype=torch.long, device=device)
    amp = "none" if precision == "fp32" else precision

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast(device, amp):
            logits, out_lengths = model(feats, lengths)
        log_probs = logits.float().log_softmax(-1).transpose(0, 1)
        loss = F.ctc_loss(log_probs, targets, out_lengths, target_lengths, blank=0, reduction="sum")
        (loss / float(target_lengths.sum())).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        return float(loss.detach())

    reset_memory(device)
    loss = step()
    if not np.isfinite(loss):
        raise SystemExit(f"bench/gpu.py: AM {label} {precision}: non-finite loss {loss}")
    t, t_min, t_max = median_time(step, device, warmup, runs)
    flops = am_flops(cfg, input_dim, tokens, frames, batch)
    return {"model": label, "precision": precision, "batch": batch, "frames": frames,
            "step_ms": 1e3 * t, "step_ms_min": 1e3 * t_min, "step_ms_max": 1e3 * t_max,
            "frames_per_s": batch * frames / t, "tflops": flops / t / 1e12,
            "mfu_vs_bf16_peak": flops / t / 1e9 / peaks.get("bf16", peaks["fp32"]),
            "max_memory_gib": peak_memory_gib(device)}


# ------------------------------------------------------------------------------------------ main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "bench/gpu_out")),
                    help="folder for gpu.json (default: $OUT, else bench/gpu_out)")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU: checks that every figure runs")
    ap.add_argument("--device", default=None, help="default: cuda, or cpu with --smoke")
    args = ap.parse_args()
    device = torch.device(args.device or ("cpu" if args.smoke else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench/gpu.py: torch sees no CUDA GPU (use --smoke for the CPU check)")
    args.out.mkdir(parents=True, exist_ok=True)
    if device.type == "cpu":
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    meta = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "smoke": args.smoke, "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None}
    report = Report(args.out / "gpu.json", meta)
    say = lambda msg: print(msg, flush=True)  # noqa: E731
    say(f"bench/gpu.py on {meta['device']}, torch {meta['torch']}; figures -> {report.path}")

    peaks = cuda_matmul_peaks() if device.type == "cuda" else {"fp32": cpu_matmul_peak()}
    report.add("peaks_gflops", peaks)
    say("matmul peaks, TFLOP/s: " + ", ".join(f"{k} {v / 1e3:.1f}" for k, v in peaks.items()))

    precisions = ["fp32", "bf16"] if device.type == "cuda" else ["fp32"]
    if args.smoke:
        batch, seconds, warmup, runs = 1, 0.5, 1, 1
    else:
        batch, seconds, warmup, runs = 10, 9.375, 3, 10
    for name in ("base", "large"):
        for precision in precisions:
            row = bench_pretrain(name, precision, device, batch, seconds, peaks, warmup, runs)
            report.add("pretrain", row)
            say(f"pretrain {name:5s} {precision}: {row['step_ms']:7.1f} ms/step, {row['audio_s_per_s']:8.0f} audio-s/s, "
                f"{row['tflops']:6.1f} TFLOP/s, MFU {100 * row['mfu_vs_bf16_peak']:.1f}% of bf16 peak, "
                f"{100 * row['share_of_own_peak']:.1f}% of {precision}'s{gib(row['max_memory_gib'])}")

    waves = utterances(3, 0.3, 0.8) if args.smoke else utterances(60, 1.0, 15.0)
    batch_samples = 16000 if args.smoke else 1_600_000  # w2vtk extract's default: 100 s per padded batch
    for name in ("base", "large"):
        for precision in precisions:
            row = bench_extract(name, precision, device, waves, batch_samples, peaks, 1 if args.smoke else 3)
            report.add("extract", row)
            say(f"extract  {name:5s} {precision}: RTF per utterance {row['rtf_per_utterance']:.5f}, batched "
                f"{row['rtf_batched']:.5f} ({row['batched_speedup']:.2f}x, {row['audio_s_per_s_batched']:.0f} audio-s/s), "
                f"max |batched - per utterance| {row['max_abs_deviation']:.2e} (|c| up to {row['max_abs_value']:.2f})"
                f"{gib(row['max_memory_gib'])}")

    if args.smoke:
        cfg, label, dim, tokens, batch, frames = AMConfig(block="glu", layers=[(16, 3, 1), (16, 3, 2)]), "tiny", 8, 5, 2, 60
    else:
        cfg, label, dim, tokens, batch, frames = WSJ_AM, "wsj", 512, WSJ_TOKENS, 32, 1000
    for precision in precisions:
        row = bench_am(cfg, label, precision, device, dim, tokens, batch, frames, peaks, warmup, runs)
        report.add("am", row)
        say(f"train-am {label} {precision}: {row['step_ms']:7.1f} ms/step ({batch} x {frames} frames of {dim}-dim c), "
            f"{row['frames_per_s']:.0f} frames/s, {row['tflops']:.1f} TFLOP/s{gib(row['max_memory_gib'])}")
    report.write(done=True)
    say(f"done in {report.data['meta']['elapsed_s']:.0f} s: {report.path}")


if __name__ == "__main__":
    main()
