"""w2vtk.training: schedules, checkpoint rotation, RNG state, metrics, non-finite guard."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from w2vtk.checkpoint import load_checkpoint
from w2vtk.errors import W2vtkError
from w2vtk.training import (CheckpointManager, LRSchedule, MetricsLog, NonFiniteGuard, capture_rng_state,
                            derive_seed, read_metrics, restore_rng_state)


def test_paper_schedule_warmup_then_cosine():
    s = LRSchedule(peak_lr=5e-3, max_update=400_000, warmup_updates=500, warmup_init_lr=1e-7, min_lr=1e-6)
    assert s.lr_at(0) == pytest.approx(1e-7)
    assert s.lr_at(250) == pytest.approx((1e-7 + 5e-3) / 2)
    assert s.lr_at(500) == pytest.approx(5e-3)
    mid = 500 + (400_000 - 500) // 2
    assert s.lr_at(mid) == pytest.approx((5e-3 + 1e-6) / 2, rel=1e-4)
    assert s.lr_at(400_000) == pytest.approx(1e-6)
    lrs = [s.lr_at(u) for u in range(500, 400_001, 1000)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    lin = LRSchedule(peak_lr=1.0, max_update=10, warmup_updates=0, min_lr=0.0, kind="linear")
    assert lin.lr_at(5) == pytest.approx(0.5)
    with pytest.raises(W2vtkError):
        LRSchedule(peak_lr=1.0, max_update=10, kind="step")


def test_checkpoint_rotation_keeps_last_k_and_best(tmp_path):
    mgr = CheckpointManager(tmp_path, keep_last=2)
    for update in range(1, 6):
        mgr.save({"update": update}, update, is_best=update == 3, numbered=True)
    assert [u for u, _ in mgr.numbered()] == [4, 5]
    assert load_checkpoint(mgr.last_path)["update"] == 5
    assert load_checkpoint(mgr.best_path)["update"] == 3
    # rewriting last never changes best (hard links are replaced, never written through)
    mgr.save({"update": 6}, 6)
    assert load_checkpoint(mgr.best_path)["update"] == 3
    assert not list(tmp_path.glob(".*.tmp"))


def test_rng_state_round_trip():
    state = capture_rng_state()
    a = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    restore_rng_state(state)
    b = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    assert a == b


def test_rng_state_in_safe_checkpoint(tmp_path):
    from w2vtk.checkpoint import save_checkpoint

    state = capture_rng_state()
    save_checkpoint({"rng": state}, tmp_path / "c.pt")
    x = torch.rand(3)
    restore_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    assert torch.equal(torch.rand(3), x)


def test_metrics_truncate_after_resume(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for u in range(1, 6):
        log.write({"update": u, "loss": 1.0 / u})
    with open(log.path, "a") as fh:
        fh.write('{"update": 6, "lo')  # a record cut by a kill
    log.truncate_after(3)
    assert [r["update"] for r in read_metrics(log.path)] == [1, 2, 3]
    MetricsLog(tmp_path / "other.jsonl", enabled=False).write({"update": 1})
    assert not (tmp_path / "other.jsonl").exists()


def test_nonfinite_guard_counts_and_stops():
    g = NonFiniteGuard(max_consecutive=3)
    assert g.ok(True) and not g.ok(False) and not g.ok(False) and g.ok(True)
    assert g.skipped == 2 and g.consecutive == 0
    g.ok(False)
    g.ok(False)
    with pytest.raises(W2vtkError, match="3 consecutive non-finite"):
        g.ok(False, "update 9")
    h = NonFiniteGuard()
    h.load_state_dict(g.state_dict())
    assert h.skipped == 5


def test_derived_seeds_differ_per_key():
    seeds = {derive_seed(1, "crop", step, utt) for step in range(20) for utt in range(20)}
    assert len(seeds) == 400 and all(0 <= s < 2 ** 63 for s in seeds)
    assert derive_seed(1, 2) == derive_seed(1, 2) != derive_seed(2, 1)
