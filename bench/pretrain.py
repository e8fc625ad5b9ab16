#!/usr/bin/env python
"""Pre-training throughput of w2vtk's wav2vec (and, with --vs-fairseq, of fairseq's own model).

What is timed: one training step = forward (encoder, context network, step projections), the
binary contrastive loss with fixed negatives (K = 12, N = 10), backward and an Adam step, fp32,
on a batch of ``--batch`` x ``--seconds`` of audio (default 2 x 2 s), ``--threads`` intra-op
threads (default: all cores).

Figures printed (and written as JSON with --json):

* audio-seconds per second of training;
* achieved GFLOP/s, counted analytically from the config (2 x multiply-adds of every conv, the
  step projection and the valid (frame, step, candidate) dot products of the loss; training =
  3 x forward except the first conv, whose input needs no gradient: 2 x), and that as a share of
  the machine's fp32 matmul peak measured here (best of a few square sgemm's with the same threads).

--vs-fairseq (run it with the interpreter of a separate venv holding fairseq-fixed==0.12.3.1, never
a w2vtk dependency): builds fairseq 0.12's Wav2VecModel from the same config with the same weights,
replaces its negative sampler by the same fixed indices, checks the two losses agree, then times
both in the same process: 3 warm-up runs each, then --runs (>= 7) alternating timed runs; prints
the median of the per-run ratios fairseq time / w2vtk time (> 1: w2vtk faster) with min and max.

    python -m venv /work/fsvenv && /work/fsvenv/bin/pip install torch==2.13.0 fairseq-fixed==0.12.3.1
    python bench/pretrain.py                      # base and large, w2vtk only
    /work/fsvenv/bin/python bench/pretrain.py --vs-fairseq --json bench_pretrain.json
    python bench/pretrain.py --profile large      # where the time goes (torch profiler table)

On a GPU (bench/gpu.sh runs this): ``--device cuda --amp none bf16 fp16`` times the step as ``w2vtk
pretrain`` runs it there (autocast, fp16 with a loss scaler, fused Adam; fp32 keeps torch's default of
TF32 convolutions, as the trainer does), against the matmul peak measured on the same GPU for the
matching precision (TF32 for fp32 steps, bf16, fp16). A realistic GPU batch is fairseq's: 1.5M samples
per GPU as 10 crops of 150000 (``--batch 10 --seconds 9.375``).

    python bench/pretrain.py --device cuda --amp none bf16 fp16 --batch 10 --seconds 9.375 --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # w2vtk from this checkout

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from w2vtk.models.wav2vec import Wav2VecConfig, Wav2VecModel, num_frames, preset  # noqa: E402
from w2vtk.objectives import contrastive_loss, make_generator, sample_negatives  # noqa: E402

from peaks import cpu_matmul_peak, cuda_matmul_peaks  # noqa: E402  (bench/peaks.py)


# ------------------------------------------------------------------------------------------ FLOPs

def forward_flops(cfg: Wav2VecConfig, num_samples: int, batch: int) -> dict[str, float]:
    """Forward FLOPs (2 x multiply-adds) of one batch, by component."""
    out: dict[str, float] = {"encoder_first": 0.0, "encoder": 0.0, "context": 0.0, "projection": 0.0,
                             "loss": 0.0}
    length, c_in = num_samples, 1
    for i, (dim, k, s) in enumerate(cfg.conv_feature_layers):
        length = (length - k) // s + 1
        out["encoder_first" if i == 0 else "encoder"] += 2.0 * c_in * k * dim * length * batch
        c_in = dim
    T, cz = length, c_in
    for dim, k, _ in cfg.conv_aggregator_layers:
        out["context"] += 2.0 * c_in * k * dim * T * batch
        if cfg.skip_connections_agg and c_in != dim:
            out["context"] += 2.0 * c_in * dim * T * batch
        c_in = dim
    K, N = cfg.prediction_steps, cfg.num_negatives
    out["projection"] = 2.0 * c_in * K * cz * T * batch
    offset = cfg.resolved_offset
    pairs = sum(max(0, T - offset - k) for k in range(K))
    out["loss"] = 2.0 * cz * (1 + N) * pairs * batch
    return out


def training_flops(cfg: Wav2VecConfig, num_samples: int, batch: int) -> float:
    f = forward_flops(cfg, num_samples, batch)
    return 3.0 * sum(f.values()) - f["encoder_first"]


# ------------------------------------------------------------------------------------ the steps

def make_inputs(cfg: Wav2VecConfig, batch: int, num_samples: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    # Band-limited noise with a slow envelope: speech-like levels, no denormal-prone silence.
    wave = torch.randn(batch, num_samples, generator=gen) * 0.1
    wave = F.avg_pool1d(wave[:, None], 3, 1, 1)[:, 0]
    T = num_frames(num_samples, cfg.conv_feature_layers)
    neg = sample_negatives([make_generator(seed, 0, b) for b in range(batch)], [T] * batch, cfg.num_negatives)
    return wave, neg


class W2vtkStep:
    """One update as ``w2vtk pretrain`` runs it: autocast for amp on CUDA, a loss scaler for fp16."""

    def __init__(self, model: Wav2VecModel, wave, neg, amp: str = "none"):
        from w2vtk.training import make_grad_scaler

        self.model, self.wave, self.neg, self.amp = model, wave, neg, amp
        self.device = wave.device
        self.opt = torch.optim.Adam(model.parameters(), lr=1e-5, fused=True)  # as w2vtk pretrain
        self.scaler = make_grad_scaler(amp)

    def loss(self):
        from w2vtk.training import autocast

        with autocast(self.device, self.amp):
            out = self.model(self.wave)
            pred = self.model.project_steps(out.c)
            return contrastive_loss(out.z, pred, self.neg, self.model.offset).loss

    def __call__(self) -> float:
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss()
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            loss.backward()
            self.opt.step()
        return float(loss.detach())  # also waits for the GPU: the step is over when this returns


class FairseqStep:
    """fairseq 0.12's Wav2VecModel + its criterion's BCE (sum), negatives fixed to ``neg``."""

    def __init__(self, cfg: Wav2VecConfig, w2v_model: Wav2VecModel, wave, neg):
        from fairseq.models.wav2vec.wav2vec import Wav2VecConfig as FsConfig
        from fairseq.models.wav2vec.wav2vec import Wav2VecModel as FsModel

        from w2vtk.models.fairseq import to_fairseq_state_dict
        from w2vtk.models.layer_spec import format_layer_spec

        fcfg = FsConfig(conv_feature_layers=format_layer_spec(cfg.conv_feature_layers),
                        conv_aggregator_layers=format_layer_spec(cfg.conv_aggregator_layers),
                        skip_connections_agg=cfg.skip_connections_agg, residual_scale=cfg.residual_scale,
                        log_compression=cfg.log_compression, prediction_steps=cfg.prediction_steps,
                        num_negatives=cfg.num_negatives, offset="auto", dropout=0.0,
                        dropout_features=0.0, dropout_agg=0.0, infonce=False)  # infonce defaults to an interpolation
        self.model = FsModel.build_model(fcfg, None)
        self.model.load_state_dict(to_fairseq_state_dict(w2v_model.state_dict()), strict=True)
        self.model.train()
        B, N, T = neg.shape
        # fairseq's own sampler ends in y[..., flat_idx] on the (C, B*T) view; same op, fixed indices.
        flat = (neg + (torch.arange(B) * T)[:, None, None]).reshape(-1)

        def fixed_negatives(y):
            bsz, fsz, tsz = y.shape
            yv = y.transpose(0, 1).contiguous().view(fsz, -1)
            negs = yv[..., flat].view(fsz, bsz, N, tsz).permute(2, 1, 0, 3)
            return negs

        self.model.wav2vec_predictions.sample_negatives = fixed_negatives
        self.wave = wave
        # What fairseq's FairseqAdam runs on CPU (its FusedAdam is CUDA-only).
        from fairseq.optim.adam import Adam as FsAdam

        self.opt = FsAdam(self.model.parameters(), lr=1e-5)

    def loss(self):
        net = self.model(source=self.wave)
        logits, target = net["cpc_logits"], net["cpc_targets"]
        return F.binary_cross_entropy_with_logits(logits, target.float(), reduction="sum")

    def __call__(self) -> float:
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss()
        loss.backward()
        self.opt.step()
        return float(loss.detach())


def time_run(step, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


# ------------------------------------------------------------------------------------------ main

def bench_model(name: str, args, peak: float, amp: str = "none") -> dict:
    cfg = preset(name)
    num_samples = int(round(args.seconds * 16000))
    torch.manual_seed(0)
    model = Wav2VecModel(cfg).to(args.device)
    model.train()
    wave, neg = make_inputs(cfg, args.batch, num_samples)
    wave, neg = wave.to(args.device), neg.to(args.device)
    flops = training_flops(cfg, num_samples, args.batch)
    audio = args.batch * args.seconds
    w2v = W2vtkStep(model, wave, neg, amp)
    res: dict = {"model": name, "batch": args.batch, "seconds": args.seconds, "threads": torch.get_num_threads(),
                 "device": args.device, "amp": amp, "train_gflop_per_step": flops / 1e9}
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if args.vs_fairseq:
        fs = FairseqStep(cfg, model, wave, neg)
        with torch.no_grad():
            a, b = float(w2v.loss()), float(fs.loss())
        res["loss_w2vtk"], res["loss_fairseq"] = a, b
        res["loss_rel_diff"] = abs(a - b) / abs(b)
        if res["loss_rel_diff"] > 1e-4:
            raise SystemExit(f"{name}: losses differ: w2vtk {a} vs fairseq {b} (not the same computation)")
        for _ in range(args.warmup):
            time_run(w2v, args.steps)
            time_run(fs, args.steps)
        tw, tf = [], []
        for r in range(args.runs):
            order = [(w2v, tw), (fs, tf)] if r % 2 == 0 else [(fs, tf), (w2v, tw)]
            for step, out in order:
                out.append(time_run(step, args.steps))
        ratios = [f / w for f, w in zip(tf, tw)]
        res.update({"step_s_w2vtk": statistics.median(tw), "step_s_fairseq": statistics.median(tf),
                    # least-disturbed runs: robust when other jobs share the cores in bursts
                    "best_step_s_w2vtk": min(tw), "best_step_s_fairseq": min(tf),
                    "ratio_of_best": min(tf) / min(tw),
                    "ratio_median": statistics.median(ratios), "ratio_min": min(ratios),
                    "ratio_max": max(ratios), "runs": args.runs,
                    "fairseq_audio_s_per_s": audio / statistics.median(tf),
                    "fairseq_gflops": flops / statistics.median(tf) / 1e9,
                    "fairseq_peak_share": flops / statistics.median(tf) / 1e9 / peak})
        t = statistics.median(tw)
    else:
        for _ in range(args.warmup):
            time_run(w2v, args.steps)
        t = statistics.median(time_run(w2v, args.steps) for _ in range(args.runs))
        res["step_s_w2vtk"] = t
    res["audio_s_per_s"] = audio / t
    res["gflops"] = flops / t / 1e9
    res["peak_share"] = res["gflops"] / peak
    if args.device == "cuda":
        res["max_memory_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30
    return res


def profile(name: str, args) -> None:
    from torch.profiler import ProfilerActivity, profile as tprofile

    cfg = preset(name)
    torch.manual_seed(0)
    model = Wav2VecModel(cfg).to(args.device).train()
    wave, neg = make_inputs(cfg, args.batch, int(round(args.seconds * 16000)))
    wave, neg = wave.to(args.device), neg.to(args.device)
    steps = [(f"w2vtk {amp}", W2vtkStep(model, wave, neg, amp)) for amp in args.amp]
    if args.vs_fairseq:
        steps.append(("fairseq", FairseqStep(cfg, model, wave, neg)))
    cuda = args.device == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    for label, step in steps:
        for _ in range(2):
            step()
        with tprofile(activities=activities) as prof:
            for _ in range(args.steps):
                step()
        print(f"== {label} {name}: {args.steps} steps")
        print(prof.key_averages().table(sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total",
                                        row_limit=args.rows))


def main() -> None:
    import logging

    logging.getLogger("fairseq").setLevel(logging.WARNING)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["base", "large"], choices=["base", "large"])
    p.add_argument("--batch", type=int, default=2, help="utterances per step")
    p.add_argument("--seconds", type=float, default=2.0, help="seconds of 16 kHz audio per utterance")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="intra-op threads (default: all cores)")
    p.add_argument("--steps", type=int, default=2, help="training steps per timed run")
    p.add_argument("--warmup", type=int, default=3, help="untimed warm-up runs (each implementation)")
    p.add_argument("--runs", type=int, default=7, help="timed runs (each implementation, alternating)")
    p.add_argument("--vs-fairseq", action="store_true", help="also time fairseq's model (needs fairseq)")
    p.add_argument("--profile", choices=["base", "large"], help="print a profiler table instead (each --amp)")
    p.add_argument("--rows", type=int, default=25, help="profiler rows")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--amp", nargs="+", default=["none"], choices=["none", "bf16", "fp16"],
                   help="precisions to time (CUDA only; the trainer's amp)")
    p.add_argument("--cudnn-benchmark", action="store_true", help="let cuDNN time its algorithms per shape")
    args = p.parse_args()
    if args.vs_fairseq and args.runs < 7:
        p.error("--vs-fairseq needs --runs >= 7")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA GPU")
    if args.device == "cpu" and args.amp != ["none"]:
        p.error("--amp is for --device cuda (w2vtk pretrain runs fp32 on CPU)")
    if args.device == "cuda" and args.vs_fairseq:
        p.error("--vs-fairseq times fairseq on CPU only")
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    if args.profile:
        profile(args.profile, args)
        return
    if args.device == "cuda":
        peaks = cuda_matmul_peaks()
        # fp32 steps: the trainer keeps torch's default of TF32 convolutions, so TF32 is their ceiling
        peak_of = {"none": peaks["tf32" if torch.backends.cudnn.allow_tf32 else "fp32"], "bf16": peaks["bf16"],
                   "fp16": peaks["fp16"]}
        peak = peaks["fp32"]
        print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}; measured matmul peaks (GFLOP/s): "
              + ", ".join(f"{k} {v:,.0f}" for k, v in peaks.items()), flush=True)
    else:
        peak = cpu_matmul_peak()
        peaks, peak_of = {"fp32": peak}, {"none": peak}
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32 matmul peak {peak:.1f} GFLOP/s")
    results = []
    for name, amp in [(n, a) for n in args.models for a in args.amp]:
        r = bench_model(name, args, peak_of[amp], amp)
        results.append(r)
        label = {"none": "fp32", "bf16": "bf16", "fp16": "fp16"}[amp]
        line = (f"{name:5s} {label} {r['batch']} x {r['seconds']:g} s: w2vtk {r['step_s_w2vtk'] * 1e3:7.1f} ms/step "
                f"{r['audio_s_per_s']:8.2f} audio-s/s {r['gflops']:9.1f} GFLOP/s ({100 * r['peak_share']:.0f}% of "
                f"the {label if amp != 'none' or args.device == 'cpu' else 'fp32/tf32'} peak)")
        if "max_memory_gib" in r:
            line += f", {r['max_memory_gib']:.1f} GiB peak memory"
        if args.vs_fairseq:
            line += (f" | fairseq {r['step_s_fairseq'] * 1e3:7.1f} ms/step {100 * r['fairseq_peak_share']:.0f}% of peak"
                     f" | ratio fairseq/w2vtk median {r['ratio_median']:.3f} (min {r['ratio_min']:.3f}, "
                     f"max {r['ratio_max']:.3f}, {r['runs']} runs; best-run ratio {r['ratio_of_best']:.3f}; "
                     f"loss rel diff {r['loss_rel_diff']:.1e})")
        print(line, flush=True)
    if args.json:
        args.json.write_text(json.dumps({"peak_gflops": peak, "peaks_gflops": peaks, "device": args.device,
                                         "torch": torch.__version__, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
