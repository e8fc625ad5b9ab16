"""The pre-training loop: exact resume (in-process and after a real kill), 2-process gloo DDP equal to
one process with the same global batch, non-finite losses, bad input, checkpoints loadable."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from pretrain_helpers import SMALL

from w2vtk.checkpoint import load_checkpoint
from w2vtk.errors import W2vtkError
from w2vtk.pretrain import load_pretrain_config, pretrain
from w2vtk.training import read_metrics

REPO = Path(__file__).resolve().parents[2]


def _params(exp: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(exp / "checkpoint_last.pt")["model"]


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_stop_and_resume_reaches_the_same_parameters(audio_set, tmp_path):
    cfg = load_pretrain_config(None, SMALL + ["optim.max_update=6", "model.dropout=0.1"])
    full = pretrain(cfg, audio_set, tmp_path / "full", valid=audio_set)
    assert full.num_updates == 6 and full.train_data["skipped_short"] == 1
    first = pretrain(cfg, audio_set, tmp_path / "split", valid=audio_set, stop_at=3)
    assert first.num_updates == 3
    second = pretrain(cfg, audio_set, tmp_path / "split", valid=audio_set)  # resumes by default
    assert second.resumed_from == 3 and second.num_updates == 6
    # Bit-exact on CPU: same data, negatives, dropout masks (RNG restored), Adam state and lr.
    assert _max_diff(_params(tmp_path / "full"), _params(tmp_path / "split")) == 0.0
    a = load_checkpoint(tmp_path / "full" / "checkpoint_last.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoint_last.pt")
    for key in a["optimizer"]["state"]:
        assert torch.equal(a["optimizer"]["state"][key]["exp_avg_sq"], b["optimizer"]["state"][key]["exp_avg_sq"])
    # metrics: no update logged twice, valid records present
    recs = [r for r in read_metrics(tmp_path / "split" / "metrics.jsonl") if r["split"] == "train"]
    assert [r["update"] for r in recs] == [1, 2, 3, 4, 5, 6]
    # keep_last=2 numbered checkpoints, plus last and best
    names = sorted(p.name for p in (tmp_path / "split").glob("checkpoint_*.pt"))
    assert names == ["checkpoint_4.pt", "checkpoint_6.pt", "checkpoint_best.pt", "checkpoint_last.pt"]
    assert (tmp_path / "split" / "config.yaml").is_file()


def test_checkpoint_loads_as_a_wav2vec_model(audio_set, tmp_path):
    from w2vtk.models.fairseq import load_wav2vec

    cfg = load_pretrain_config(None, SMALL + ["optim.max_update=2"])
    pretrain(cfg, audio_set, tmp_path / "exp")
    model, info = load_wav2vec(tmp_path / "exp" / "checkpoint_last.pt")
    assert info.source == "w2vtk" and info.num_updates == 2
    assert info.config.norm == "channel" and len(model.context.layers) == 2
    ckpt = load_checkpoint(tmp_path / "exp" / "checkpoint_last.pt")
    assert ckpt["train_config"]["optim"]["max_update"] == 2 and ckpt["train_state"]["step"] == 2
    assert {"optimizer", "scheduler", "scaler", "rng", "train_state"} <= set(ckpt)


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(audio_set, tmp_path):
    """torchrun-style env, 2 processes x update_freq 1 vs 1 process x update_freq 2.

    Tolerance: 1e-6 absolute on every parameter after 4 updates (the only difference is the order of
    a two-term gradient sum; measured 0.0 here)."""
    overrides = SMALL + ["optim.max_update=4"]
    one = load_pretrain_config(None, overrides + ["optim.update_freq=2"])
    pretrain(one, audio_set, tmp_path / "one")
    port = _free_port()
    procs = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                   LOCAL_WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                   OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "w2vtk", "pretrain", "--data", str(audio_set), "--exp",
             str(tmp_path / "two"), *overrides], env=env, cwd=REPO,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert "2 process(es)" in outs[0] and outs[1].strip() == ""  # only rank 0 logs
    ts = load_checkpoint(tmp_path / "two" / "checkpoint_last.pt")["train_state"]
    assert ts["world_size"] == 2 and ts["num_slots"] == 2 and ts["num_updates"] == 4
    assert _max_diff(_params(tmp_path / "one"), _params(tmp_path / "two")) <= 1e-6


def test_killed_run_resumes_to_the_uninterrupted_result(audio_set, tmp_path):
    overrides = SMALL + ["optim.max_update=40", "checkpoint.save_every=1", "log_every=10"]
    exp = tmp_path / "killed"
    cmd = [sys.executable, "-m", "w2vtk", "pretrain", "--data", str(audio_set), "--exp", str(exp), *overrides]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not (exp / "checkpoint_last.pt").exists():
        time.sleep(0.02)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # mid-run: the first checkpoint has just been written
    except ProcessLookupError:
        pass
    proc.wait()
    done = load_checkpoint(exp / "checkpoint_last.pt")["train_state"]["num_updates"]
    assert 1 <= done < 40, "the run finished before it could be killed"
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
    pretrain(load_pretrain_config(None, overrides), audio_set, tmp_path / "straight")
    assert _max_diff(_params(exp), _params(tmp_path / "straight")) == 0.0


def test_nonfinite_losses_are_skipped_then_stop_the_run(audio_set, tmp_path, monkeypatch):
    import w2vtk.objectives as objectives

    real = objectives.contrastive_loss
    calls = {"n": 0, "bad": {2, 3}}

    def flaky(*args, **kwargs):
        out = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] in calls["bad"]:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(objectives, "contrastive_loss", flaky)
    cfg = load_pretrain_config(None, SMALL + ["optim.max_update=4", "max_nonfinite=3"])
    res = pretrain(cfg, audio_set, tmp_path / "exp")
    assert res.num_updates == 4 and res.skipped_nonfinite == 2 and res.step == 6
    assert all(torch.isfinite(v).all() for v in _params(tmp_path / "exp").values())

    before = (tmp_path / "exp" / "checkpoint_last.pt").read_bytes()
    calls.update(n=0, bad=set(range(1, 100)))
    cfg = load_pretrain_config(None, SMALL + ["optim.max_update=10", "max_nonfinite=3"])
    with pytest.raises(W2vtkError, match="3 consecutive non-finite"):
        pretrain(cfg, audio_set, tmp_path / "exp", allow_changes=True)
    assert (tmp_path / "exp" / "checkpoint_last.pt").read_bytes() == before  # last good checkpoint intact


@pytest.mark.parametrize("overrides, fragment", [
    (["data.max_tokens=1000"], "max_tokens=1000 samples per GPU is smaller than one crop"),
    (["data.min_sample_size=10000000"], "shorter than 10000000 samples"),
])
def test_bad_input_writes_nothing(audio_set, tmp_path, overrides, fragment):
    cfg = load_pretrain_config(None, SMALL + overrides)
    with pytest.raises(W2vtkError, match=fragment):
        pretrain(cfg, audio_set, tmp_path / "exp")
    assert not (tmp_path / "exp").exists()


def test_resume_with_a_different_model_is_refused(audio_set, tmp_path):
    cfg = load_pretrain_config(None, SMALL + ["optim.max_update=1"])
    pretrain(cfg, audio_set, tmp_path / "exp")
    before = (tmp_path / "exp" / "checkpoint_last.pt").read_bytes()
    other = load_pretrain_config(None, SMALL + ["optim.max_update=2", "model.prediction_steps=4"])
    with pytest.raises(W2vtkError, match="model config differs"):
        pretrain(other, audio_set, tmp_path / "exp")
    assert (tmp_path / "exp" / "checkpoint_last.pt").read_bytes() == before
    with pytest.raises(W2vtkError, match="no checkpoint_last.pt"):
        pretrain(cfg, audio_set, tmp_path / "fresh", resume=True)
