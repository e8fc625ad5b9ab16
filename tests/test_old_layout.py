"""Exp dirs written by an earlier w2vtk still load, resume and decode (issue 15: any refactor of the
trainers or the checkpoint code must keep them working).

tests/fixtures/old_layout/{am,w2v} were made once by make_fixture.py there (w2vtk of 2026-12-04,
before the trainers were restructured into classes, checkpoint layout of that time) and are never
regenerated. Their inputs are rebuilt here, deterministically, by the same functions."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from w2vtk.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "old_layout"
AM_OVERRIDES = ["model.layers=[[16,3,1],[16,3,1]]", "model.dropout=0.0", "max_epochs=1",
                "batch.max_frames=2000", "batch.max_utts=4", "average_last=2", "amp=none", "device=cpu", "seed=3"]
PRETRAIN_OVERRIDES = ["model.conv_feature_layers=[[8,10,5],[8,8,4],[8,4,2],[8,4,2],[8,4,2]]",
                      "model.conv_aggregator_layers=[[8,2,1],[8,3,1]]", "model.num_negatives=3",
                      "model.prediction_steps=2", "optim.max_update=4", "optim.warmup_updates=1",
                      "checkpoint.valid_every=2", "checkpoint.save_every=2", "log_every=1",
                      "data.max_tokens=32000", "data.max_sample_size=16000", "data.num_workers=0",
                      "threads=1", "device=cpu"]


def am_inputs(root: Path) -> tuple[Path, Path, Path]:
    """(lang, train, dev) of the AM fixture: am_synth's learnable 16-dim features."""
    sys.path.insert(0, str(REPO / "tests" / "am"))
    from am_synth import W2V_PROV, make_texts, write_feature_dir

    from w2vtk.tokens import build_lang

    train = write_feature_dir(root / "train", make_texts(16, seed=1, prefix="tr"), seed=3, feats_yaml=W2V_PROV)
    dev = write_feature_dir(root / "dev", make_texts(4, seed=2, prefix="dv"), seed=4, feats_yaml=W2V_PROV)
    build_lang(train / "text", root / "lang", "letters")
    return root / "lang", train, dev


def audio_dir(path: Path) -> Path:
    """Six seconds of band-limited noise in three 16 kHz files: the pre-training fixture's audio."""
    import soundfile as sf

    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, seconds in enumerate((1.5, 2.0, 2.5)):
        wave = np.convolve(rng.normal(size=int(seconds * 16000)), np.ones(4) / 4, mode="same") * 0.1
        sf.write(path / f"utt{i}.wav", wave.astype(np.float32), 16000, subtype="PCM_16")
    return path


def _w2vtk(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "w2vtk", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_old_am_exp_dir_resumes_and_decodes(tmp_path):
    lang, train, dev = am_inputs(tmp_path / "in")
    exp = tmp_path / "am"
    shutil.copytree(FIXTURE / "am", exp)
    before = _records(exp / "metrics.jsonl")
    assert [r["epoch"] for r in before] == [1]  # the fixture trained one epoch (max_epochs=1)
    old = load_checkpoint(exp / "checkpoint_last.pt")
    assert "train_state" not in old and len(old["rng_per_rank"]) == 1  # the layout before the shared one
    proc = _w2vtk("train-am", "--conf", str(exp / "config.yaml"), "--lang", str(lang), "--train", str(train),
                  "--valid", str(dev), "--exp", str(exp), "max_epochs=2", "--allow-changes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"resuming {exp} at epoch 2, update {before[0]['updates']}" in " ".join((proc.stdout + proc.stderr).split())
    after = _records(exp / "metrics.jsonl")
    assert [r["epoch"] for r in after] == [1, 2] and after[0] == before[0]
    assert after[1]["updates"] > before[0]["updates"]
    assert (exp / "config.1.yaml").is_file()  # the old config kept beside the changed one
    new = load_checkpoint(exp / "checkpoint_last.pt")  # rewritten in the shared layout
    assert "rng_per_rank" not in new and len(new["rng"]) == 1 and new["train_state"]["best_epoch"] in (1, 2)
    for which in ("avg", "best"):
        out = tmp_path / f"decode_{which}"
        proc = _w2vtk("decode", "--am", str(exp), "--decoder", "greedy", "--data", str(dev), "--out", str(out),
                      f"checkpoint={which}")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert len((out / "hyp.txt").read_text().splitlines()) == 4


def test_old_am_checkpoints_decode_as_they_are(tmp_path):
    """The fixture's own best / average models (never resumed) decode with the current code."""
    _, _, dev = am_inputs(tmp_path / "in")
    exp = tmp_path / "am"
    shutil.copytree(FIXTURE / "am", exp)
    for which in ("avg", "best", "last"):
        out = tmp_path / which
        proc = _w2vtk("decode", "--am", str(exp), "--decoder", "greedy", "--data", str(dev), "--out", str(out),
                      f"checkpoint={which}")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        hyps = (out / "hyp.txt").read_text().splitlines()
        assert [h.split()[0] for h in hyps] == ["dv000", "dv001", "dv002", "dv003"]


def test_old_pretrain_exp_dir_resumes_and_extracts(tmp_path):
    audio = audio_dir(tmp_path / "audio")
    exp = tmp_path / "w2v"
    shutil.copytree(FIXTURE / "w2v", exp)
    before = [r for r in _records(exp / "metrics.jsonl") if r.get("split") == "train"]
    assert before[-1]["update"] == 2  # the fixture stopped at --stop-at-update 2 of 4
    proc = _w2vtk("pretrain", "--conf", str(exp / "config.yaml"), "--data", str(audio), "--valid", str(audio),
                  "--exp", str(exp))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "resuming at update 2" in proc.stdout + proc.stderr
    train = [r for r in _records(exp / "metrics.jsonl") if r.get("split") == "train"]
    assert [r["update"] for r in train] == [1, 2, 3, 4] and train[:2] == before
    out = tmp_path / "feats"
    proc = _w2vtk("extract", "--type", "wav2vec", "--checkpoint", str(exp / "checkpoint_last.pt"), "--in",
                  str(audio), "--out", str(out / "feats.ark"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = _w2vtk("extract", "--type", "wav2vec", "--checkpoint", str(FIXTURE / "w2v" / "checkpoint_best.pt"),
                  "--in", str(audio), "--out", str(tmp_path / "old_feats.ark"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "old_feats.ark").stat().st_size > 0
