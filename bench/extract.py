"""Benchmark of wav2vec feature extraction: audio-seconds per second, against the measured matmul peak.

    python bench/extract.py [--models base,large] [--repeats 5] [--threads N]
        w2vtk per-utterance (one utterance per forward, as fairseq's wav2vec featurize does) vs
        batched-exact as `w2vtk extract` runs it (batches sorted by length; on CUDA padded with
        GroupNorm over valid frames only; on CPU one utterance at a time inside the batch, since
        padded CPU batches measured 0.81x (base) / 0.91x (large)), run alternately; median speeds,
        and the median, min and max of the per-round ratio.

    /work/fsvenv/bin/python bench/extract.py --vs-fairseq
        from a venv with fairseq-fixed (never a w2vtk dependency): fairseq's Wav2VecModel built from
        the same config and weights, per utterance (feature_extractor then feature_aggregator, as in
        the fixtures), alternating with w2vtk's per-utterance forward.

Models are randomly initialised (speed does not depend on the weights).  The fp32 matmul peak is
measured here (a 2048^3 matmul, best of several) so the figures are comparable across machines; the
model's FLOPs are counted exactly from its convolutions (2 * C_in * C_out * k per output frame).
Every core is used (torch's default thread count) unless --threads says otherwise.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from peaks import cpu_matmul_peak, cuda_matmul_peaks  # noqa: E402  (bench/peaks.py)

# Utterance lengths in seconds, in pairs of near neighbours as sorting a real corpus by length gives
# (kept short: the shared 2-core machine runs base at a few audio-seconds per second).
LENGTHS_S = [8.1, 1.9, 7.9, 3.4, 3.3, 1.8]


def model_flops(model, num_samples: int) -> float:
    """FLOPs of z and c for one utterance (convolutions only: they are > 99% of the work)."""
    from w2vtk.models.frames import conv_output_length

    flops, n, c_in = 0.0, num_samples, 1
    for dim, k, s in model.cfg.conv_feature_layers:
        n = conv_output_length(n, k, s)
        flops += 2.0 * c_in * dim * k * n
        c_in = dim
    for dim, k, _ in model.cfg.conv_aggregator_layers:
        flops += 2.0 * c_in * dim * k * n
        c_in = dim
    return flops


def workload_lengths(scale: int = 1, random_lengths: bool = False, seed: int = 0) -> list[float]:
    """Seconds per utterance: LENGTHS_S repeated ``scale`` times (a GPU needs minutes of audio to be
    timed), or as many lengths drawn uniformly from 1-15 s, all distinct, as a real corpus gives a GPU
    (every padded batch a new shape: what cuDNN's per-shape algorithm choice sees in practice)."""
    if not random_lengths:
        return LENGTHS_S * scale
    rng = np.random.default_rng(seed + 1)
    return [float(x) for x in rng.uniform(1.0, 15.0, size=len(LENGTHS_S) * scale).round(4)]


def workload(seed: int = 0, scale: int = 1, random_lengths: bool = False) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(int(s * 16000))).astype(np.float32)
            for s in workload_lengths(scale, random_lengths, seed)]


def build(name: str):
    from w2vtk.models.wav2vec import Wav2VecModel, preset

    torch.manual_seed(0)
    return Wav2VecModel(preset(name)).eval()


def time_it(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def summarize(label: str, seconds_audio: float, times_a: list[float], times_b: list[float],
              name_a: str, name_b: str, flops: float, peak: float) -> dict:
    speed_a = [seconds_audio / t for t in times_a]
    speed_b = [seconds_audio / t for t in times_b]
    ratios = [ta / tb for ta, tb in zip(times_a, times_b)]  # speed of b relative to a
    row = {"model": label, name_a: statistics.median(speed_a), name_b: statistics.median(speed_b),
           f"{name_a}_peak_pct": 100 * flops / statistics.median(times_a) / 1e9 / peak,
           f"{name_b}_peak_pct": 100 * flops / statistics.median(times_b) / 1e9 / peak,
           "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}
    print(f"{label}: {name_a} {row[name_a]:.1f} audio-s/s ({row[name_a + '_peak_pct']:.0f}% of peak), "
          f"{name_b} {row[name_b]:.1f} audio-s/s ({row[name_b + '_peak_pct']:.0f}% of peak); "
          f"{name_b}/{name_a} median {row['ratio_median']:.3f} (min {row['ratio_min']:.3f}, "
          f"max {row['ratio_max']:.3f}) over {len(ratios)} alternating rounds", flush=True)
    return row


def bench_w2vtk(models: list[str], repeats: int, batch_samples: int, peak: float, device: str = "cpu",
                precision: str = "fp32", scale: int = 1, random_lengths: bool = False) -> list[dict]:
    from w2vtk.features.batches import length_batches
    from w2vtk.features.wav2vec import Wav2VecExtractor

    waves = workload(scale=scale, random_lengths=random_lengths)
    audio_s = sum(len(w) for w in waves) / 16000
    rows = []
    for name in models:
        model = build(name)
        ext = Wav2VecExtractor(model, layer="c", device=device, precision=precision)
        items = [(f"u{i}", w) for i, w in enumerate(waves)]
        batches = length_batches({i: len(w) for i, w in enumerate(waves)}, batch_samples)

        # Same numbers either way (the point of the padding-aware forward).
        one = ext.extract([items[0]])[0]
        both = ext.extract([items[0], items[1]])[0]
        diff = float(np.abs(one - both).max())
        # Alternate at the granularity of one batch, so load changes on a shared machine hit both.
        t_single, t_batch = [], []
        for r in range(repeats):
            ts = tb = 0.0
            for batch in batches:
                single = lambda: [ext.extract([items[i]]) for i in batch]  # noqa: E731
                together = lambda: ext.extract([items[i] for i in batch])  # noqa: E731
                if r % 2:  # who goes first alternates too
                    tb += time_it(together)
                    ts += time_it(single)
                else:
                    ts += time_it(single)
                    tb += time_it(together)
            t_single.append(ts)
            t_batch.append(tb)
        flops = sum(model_flops(model, len(w)) for w in waves)
        row = summarize(f"{name} {device} {precision}", audio_s, t_single, t_batch, "per_utterance", "batched_exact",
                        flops, peak)
        row.update(device=device, precision=precision, audio_s=audio_s)
        row["batched_vs_single_max_abs_diff"] = diff
        row["batches"] = [len(b) for b in batches]
        rows.append(row)
    return rows


def bench_vs_fairseq(models: list[str], repeats: int, peak: float) -> list[dict]:
    from fairseq.models.wav2vec.wav2vec import Wav2VecModel as FairseqWav2Vec

    from w2vtk.models.fairseq import fairseq_args_from_config, to_fairseq_state_dict

    waves = workload()
    audio_s = sum(len(w) for w in waves) / 16000
    rows = []
    for name in models:
        model = build(name)
        args = fairseq_args_from_config(model.cfg)
        fs = FairseqWav2Vec.build_model(args, None).eval()
        fs.load_state_dict(to_fairseq_state_dict(model.state_dict()), strict=True)
        tensors = [torch.from_numpy(w)[None] for w in waves]

        from w2vtk.features.wav2vec import Wav2VecExtractor

        ext = Wav2VecExtractor(model, layer="c")  # what `w2vtk extract` runs, numpy in and out

        def run_fairseq(x):
            with torch.inference_mode():
                fs.feature_aggregator(fs.feature_extractor(x))

        with torch.inference_mode():
            ref = fs.feature_aggregator(fs.feature_extractor(tensors[1]))[0].T
        ours = ext.extract([("u1", waves[1])])[0]
        diff = float((ref - torch.from_numpy(ours)).abs().max())
        # Alternate utterance by utterance, so load changes on a shared machine hit both.
        t_fs, t_w = [], []
        for r in range(repeats):
            tf = tw = 0.0
            for i, (x, w) in enumerate(zip(tensors, waves)):
                if r % 2:  # who goes first alternates too
                    tw += time_it(lambda: ext.extract([(f"u{i}", w)]))
                    tf += time_it(lambda: run_fairseq(x))
                else:
                    tf += time_it(lambda: run_fairseq(x))
                    tw += time_it(lambda: ext.extract([(f"u{i}", w)]))
            t_fs.append(tf)
            t_w.append(tw)
        flops = sum(model_flops(model, len(w)) for w in waves)
        row = summarize(name, audio_s, t_fs, t_w, "fairseq_per_utterance", "w2vtk_per_utterance", flops, peak)
        row["max_abs_diff_c"] = diff
        rows.append(row)
    return rows


def profile_extract(name: str, device: str, precision: str, batch_samples: int, rows: int) -> None:
    """Profiler tables (by self device time) of one pass over the workload, batched then per utterance."""
    from torch.profiler import ProfilerActivity, profile as tprofile

    from w2vtk.features.batches import length_batches
    from w2vtk.features.wav2vec import Wav2VecExtractor

    waves = workload()
    items = [(f"u{i}", w) for i, w in enumerate(waves)]
    ext = Wav2VecExtractor(build(name), layer="c", device=device, precision=precision)
    batches = length_batches({i: len(w) for i, w in enumerate(waves)}, batch_samples)
    runs = {"batched": lambda: [ext.extract([items[i] for i in b]) for b in batches],
            "per utterance": lambda: [ext.extract([it]) for it in items]}
    cuda = device == "cuda"
    for label, fn in runs.items():
        fn()
        with tprofile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
            fn()
        print(f"== {name} {device} {precision} {label}: batches {[len(b) for b in batches]}")
        print(prof.key_averages().table(sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total",
                                        row_limit=rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="base,large")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, all cores)")
    ap.add_argument("--batch-samples", type=int, default=1_600_000)
    ap.add_argument("--vs-fairseq", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"],
                    help="w2vtk extract --precision (bf16: CUDA only)")
    ap.add_argument("--scale", type=int, default=1, help="repeat the workload this many times (GPU: 20)")
    ap.add_argument("--cudnn-benchmark", action="store_true", help="let cuDNN time its algorithms per shape")
    ap.add_argument("--random-lengths", action="store_true", help="distinct lengths of 1-15 s (see workload_lengths)")
    ap.add_argument("--profile", help="MODEL: print profiler tables (each --precision) instead of timing")
    ap.add_argument("--rows", type=int, default=20, help="profiler rows")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no CUDA GPU")
    if args.device == "cpu" and args.precision != ["fp32"]:
        ap.error("--precision bf16 is for --device cuda")
    if args.device == "cuda" and args.vs_fairseq:
        ap.error("--vs-fairseq times fairseq on CPU only")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    if args.profile:
        for prec in args.precision:
            profile_extract(args.profile, args.device, prec, args.batch_samples, args.rows)
        return
    if args.device == "cuda":
        peaks = cuda_matmul_peaks()  # extraction turns TF32 off: fp32 means fp32
        where = f"{torch.cuda.get_device_name()}; matmul peaks (GFLOP/s): " + ", ".join(
            f"{k} {v:,.0f}" for k, v in peaks.items())
    else:
        peaks = {"fp32": cpu_matmul_peak()}
        where = f"{torch.get_num_threads()} threads; fp32 matmul peak {peaks['fp32']:.1f} GFLOP/s"
    lengths = workload_lengths(args.scale, args.random_lengths)
    audio_s = sum(lengths)
    print(f"torch {torch.__version__}, {where}; cudnn.benchmark {args.cudnn_benchmark}; workload {len(lengths)} "
          f"utterances{' of random lengths' if args.random_lengths else ''}, "
          f"{audio_s:.1f} s of audio", flush=True)
    models = [m for m in args.models.split(",") if m]
    if args.vs_fairseq:
        rows = bench_vs_fairseq(models, args.repeats, peaks["fp32"])
    else:
        rows = [row for prec in args.precision
                for row in bench_w2vtk(models, args.repeats, args.batch_samples, peaks[prec], args.device, prec,
                                       args.scale, args.random_lengths)]
    if args.json is not None:
        import json

        args.json.write_text(json.dumps({"peak_gflops": peaks["fp32"], "peaks_gflops": peaks, "device": args.device,
                                         "threads": torch.get_num_threads(), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
