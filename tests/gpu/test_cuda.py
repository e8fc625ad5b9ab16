"""The CUDA paths on a real GPU: fairseq parity, padded batches, NCCL + AMP pre-training, AM training.

Skipped where torch sees no GPU (CI, the 2-core development machines); ``bench/gpu.sh`` runs them on
a GPU machine before it times anything. Everything here also runs on CPU elsewhere in the suite: these
tests hold the CUDA results to the CPU / fairseq ones, so a kernel or precision mistake shows up as a
number, not as a crash.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (bench/gpu.sh runs these on one)")

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures" / "fairseq_wav2vec"
sys.path[:0] = [str(ROOT / "tests" / "pretrain"), str(ROOT / "tests" / "am")]


@pytest.fixture(autouse=True)
def _fp32_means_fp32():
    """TF32 would make fp32 results differ from fairseq's by ~1e-3; these tests compare fp32 to fp32."""
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def _wave(name: str) -> torch.Tensor:
    import soundfile as sf

    wave, rate = sf.read(FIX / f"{name}.wav", dtype="float32")
    assert rate == 16000
    return torch.from_numpy(wave)[None]


@pytest.mark.parametrize("name", ["small_base_args", "small_large_args", "small_large_cfg"])
def test_fairseq_checkpoints_give_fairseqs_z_and_c_on_cuda(name):
    from w2vtk.models.fairseq import load_wav2vec

    model, _ = load_wav2vec(FIX / f"{name}.pt")
    model = model.cuda().eval()
    expected = np.load(FIX / f"{name}.expected.npz")
    for sig in ("chirp", "buzz", "short"):
        with torch.no_grad():
            out = model(_wave(sig).cuda())
        np.testing.assert_allclose(out.z[0].T.cpu().numpy(), expected[f"{sig}.z"], atol=2e-5, rtol=0)
        np.testing.assert_allclose(out.c[0].T.cpu().numpy(), expected[f"{sig}.c"], atol=2e-5, rtol=0)


def test_contrastive_loss_on_cuda_is_fairseqs_and_its_gradients_are_the_cpus():
    from w2vtk.models.fairseq import load_wav2vec
    from w2vtk.objectives import contrastive_loss

    fix = np.load(FIX / "small_large_args.loss.npz")
    losses, grads = [], []
    for device in ("cpu", "cuda"):
        model, _ = load_wav2vec(FIX / "small_large_args.pt")
        model = model.to(device).train()
        out = model(torch.from_numpy(fix["wave"]).to(device))
        res = contrastive_loss(out.z, model.project_steps(out.c), torch.from_numpy(fix["neg_idx"]).to(device),
                               model.offset)
        res.loss.backward()
        losses.append(res.loss.item())
        grads.append(torch.cat([p.grad.flatten().cpu() for p in model.parameters()]))
    loss_sum = float(fix["loss_sum"])
    assert abs(losses[1] - loss_sum) <= 1e-4 * abs(loss_sum), (losses, loss_sum)
    rel = float((grads[1] - grads[0]).norm() / grads[0].norm())
    assert torch.isfinite(grads[1]).all() and rel < 1e-4, rel


def test_padded_cuda_batches_match_cpu_per_utterance_and_bf16_stays_close():
    from w2vtk.features.wav2vec import Wav2VecExtractor
    from w2vtk.models.fairseq import load_wav2vec

    model, _ = load_wav2vec(FIX / "small_large_args.pt")
    rng = np.random.default_rng(0)
    batch = [(f"u{i}", (0.1 * rng.standard_normal(n)).astype(np.float32))
             for i, n in enumerate([16000, 23100, 9000, 40000, 12345])]
    cpu = Wav2VecExtractor(copy.deepcopy(model), device="cpu").extract(batch)  # one utterance at a time
    gpu = Wav2VecExtractor(copy.deepcopy(model), device="cuda").extract(batch)  # one padded batch
    for (utt, _), a, b in zip(batch, cpu, gpu):
        assert a.shape == b.shape, utt
        np.testing.assert_allclose(b, a, atol=1e-4, rtol=0, err_msg=utt)
    bf16 = Wav2VecExtractor(copy.deepcopy(model), device="cuda", precision="bf16").extract(batch)
    for (utt, _), a, b in zip(batch, cpu, bf16):
        assert a.shape == b.shape and np.isfinite(b).all(), utt
        rel = float(np.abs(b - a).mean() / np.abs(a).mean())
        assert rel < 0.05, (utt, rel)
    # the exact chunked path (long audio) on CUDA equals the whole-utterance CPU result
    long = [("long", (0.1 * rng.standard_normal(80000)).astype(np.float32))]
    whole = Wav2VecExtractor(copy.deepcopy(model), device="cpu").extract(long)[0]
    chunked = Wav2VecExtractor(copy.deepcopy(model), device="cuda", long_chunk_seconds=1.0).extract(long)[0]
    np.testing.assert_allclose(chunked, whole, atol=1e-4, rtol=0)


def _pretrain(audio: Path, exp: Path, *overrides: str) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 1 -m w2vtk pretrain``: the NCCL process group, as on a cluster."""
    from pretrain_helpers import SMALL

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m", "w2vtk",
           "pretrain", "--data", str(audio), "--exp", str(exp), *SMALL, *overrides]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_pretrain_under_torchrun_on_cuda_bf16_fp16_and_fp32_against_cpu(tmp_path):
    from pretrain_helpers import write_audio

    from w2vtk.checkpoint import load_checkpoint
    from w2vtk.training import read_metrics

    audio = tmp_path / "audio"
    write_audio(audio, [1.0, 1.2, 1.4, 1.5, 1.6, 1.7, 1.9, 2.0], seed=1)
    # bf16 (the default on CUDA), then a resumed continuation of the same run
    proc = _pretrain(audio, tmp_path / "bf16", "device=cuda", "optim.max_update=4")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    start = read_metrics(tmp_path / "bf16" / "metrics.jsonl")[0]
    assert start["device"].startswith("cuda") and start["amp"] == "bf16", start
    proc = _pretrain(audio, tmp_path / "bf16", "device=cuda", "optim.max_update=6", "--allow-changes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ckpt = load_checkpoint(tmp_path / "bf16" / "checkpoint_last.pt")
    assert ckpt["train_state"]["num_updates"] == 6
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert all(v.device.type == "cpu" for v in ckpt["model"].values())  # loadable without a GPU
    # fp16 keeps its loss scaler in the checkpoint
    proc = _pretrain(audio, tmp_path / "fp16", "device=cuda", "amp=fp16", "optim.max_update=3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    scaler = load_checkpoint(tmp_path / "fp16" / "checkpoint_last.pt")["scaler"]
    assert scaler and scaler["scale"] > 0, scaler
    # fp32 on CUDA follows the CPU run: the same first loss, close after 4 updates (the trainer keeps torch's
    # default of TF32 convolutions on CUDA, ~1e-3 relative per layer, hence not 1e-6)
    runs = {}
    for device in ("cpu", "cuda"):
        proc = _pretrain(audio, tmp_path / device, f"device={device}", "amp=none", "optim.max_update=4")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        runs[device] = [r["loss"] for r in read_metrics(tmp_path / device / "metrics.jsonl") if r["split"] == "train"]
    assert len(runs["cpu"]) == len(runs["cuda"]) == 4
    assert abs(runs["cuda"][0] - runs["cpu"][0]) <= 3e-3 * abs(runs["cpu"][0]), runs
    assert abs(runs["cuda"][-1] - runs["cpu"][-1]) <= 3e-2 * abs(runs["cpu"][-1]), runs


def test_acoustic_model_trains_on_cuda_fp32_and_bf16(tmp_path):
    from am_synth import TINY, W2V_PROV, make_texts, write_feature_dir

    from w2vtk.am.config import TrainAMConfig
    from w2vtk.decoding.emissions import compute_emissions
    from w2vtk.am.train import train_am
    from w2vtk.config import load_config
    from w2vtk.tokens import build_lang

    train = write_feature_dir(tmp_path / "train", make_texts(24, seed=1, prefix="tr"), seed=3, feats_yaml=W2V_PROV)
    build_lang(train / "text", tmp_path / "lang", "letters")
    cfg = load_config(TrainAMConfig, None, TINY + ["max_epochs=40", "optim.lr=5e-3", "device=cuda", "amp=none"])
    res = train_am(cfg, lang_dir=tmp_path / "lang", train_dir=train, valid_dir=train, exp_dir=tmp_path / "fp32")
    assert res.best_error is not None and res.best_error <= 2.0, res
    cfg = load_config(TrainAMConfig, None, TINY + ["max_epochs=40", "optim.lr=5e-3", "device=cuda", "amp=bf16"])
    res = train_am(cfg, lang_dir=tmp_path / "lang", train_dir=train, valid_dir=train, exp_dir=tmp_path / "bf16")
    assert res.best_error is not None and res.best_error <= 10.0, res
    # emissions on CUDA are the CPU's
    on_cpu = dict(compute_emissions(tmp_path / "fp32", train, device="cpu"))
    on_gpu = dict(compute_emissions(tmp_path / "fp32", train, device="cuda"))
    assert on_cpu.keys() == on_gpu.keys() and len(on_cpu) == 24
    for utt in on_cpu:
        np.testing.assert_allclose(on_gpu[utt], on_cpu[utt], atol=1e-3, rtol=0, err_msg=utt)


def test_extract_command_on_cuda_writes_the_cpus_features(tmp_path):
    import kaldiio
    import yaml
    from pretrain_helpers import write_audio

    audio = tmp_path / "audio"
    write_audio(audio, [1.0, 2.5, 0.7, 4.0], seed=2)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    feats = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / device / "feats.ark"
        proc = subprocess.run([sys.executable, "-m", "w2vtk", "extract", "--in", str(audio), "--out", str(out),
                               "--checkpoint", str(FIX / "small_large_args.pt"), "--device", device],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        feats[device] = dict(kaldiio.load_scp(str(out.parent / "feats.scp")))
    assert feats["cpu"].keys() == feats["cuda"].keys() and len(feats["cpu"]) == 4
    for utt, mat in feats["cpu"].items():
        np.testing.assert_allclose(feats["cuda"][utt], mat, atol=1e-4, rtol=0, err_msg=utt)
    prov = yaml.safe_load((tmp_path / "cuda" / "feats.yaml").read_text())
    assert prov["precision"] == "fp32" and prov["layer"] == "c", prov
