"""Measured matmul ceilings that the benchmarks quote their shares of (the same run, the same machine)."""

from __future__ import annotations

import time

import torch


def cpu_matmul_peak(n: int = 2048, reps: int = 5) -> float:
    """Best fp32 sgemm GFLOP/s over ``reps`` n x n x n products (current thread count)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = 0.0
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2.0 * n ** 3 / (time.perf_counter() - t0) / 1e9)
    return best


def cuda_matmul_peaks(n: int = 8192, reps: int = 10) -> dict[str, float]:
    """GFLOP/s of an n^3 matmul on the current GPU per precision, timed with CUDA events over ``reps``
    products after 3 warm-ups: fp32 (TF32 off), tf32, bf16, fp16."""
    out = {}
    before = torch.backends.cuda.matmul.allow_tf32
    try:
        for name, dtype, tf32 in (("fp32", torch.float32, False), ("tf32", torch.float32, True),
                                  ("bf16", torch.bfloat16, False), ("fp16", torch.float16, False)):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            a = torch.randn(n, n, device="cuda", dtype=dtype)
            b = torch.randn(n, n, device="cuda", dtype=dtype)
            for _ in range(3):
                torch.mm(a, b)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(reps):
                torch.mm(a, b)
            end.record()
            torch.cuda.synchronize()
            out[name] = 2.0 * n ** 3 * reps / (start.elapsed_time(end) / 1e3) / 1e9
            del a, b
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
    return out
