import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from w2vtk.am.config import TrainAMConfig
from w2vtk.am.train import train_am
from w2vtk.checkpoint import load_checkpoint
from w2vtk.cli import app
from w2vtk.config import load_config
from w2vtk.errors import W2vtkError
from w2vtk.training import read_metrics

from am_synth import FBANK_PROV, TINY, W2V_PROV, make_texts, write_feature_dir

torch.set_num_threads(1)


def _cfg(*extra):
    return load_config(TrainAMConfig, None, TINY + list(extra))


def test_overfits_to_near_zero_ler(overfit_exp):
    exp, res = overfit_exp
    recs = read_metrics(exp / "metrics.jsonl")
    assert [r["epoch"] for r in recs] == list(range(1, 41))
    assert recs[-1]["train_loss"] < recs[0]["train_loss"] / 5
    assert min(r["ler"] for r in recs) <= 2.0, [r["ler"] for r in recs]
    assert res.best_error <= 2.0 and res.num_train == 24 and res.skipped_short == 0
    for name in ("checkpoint_last.pt", "checkpoint_best.pt", "checkpoint_avg.pt", "tokens.txt", "feats.yaml",
                 "config.yaml", "metrics.jsonl"):
        assert (exp / name).is_file(), name
    assert yaml.safe_load((exp / "feats.yaml").read_text()) == W2V_PROV
    # only the last `average_last` epoch files are kept, and the average is their mean
    assert sorted(p.name for p in exp.glob("checkpoint_epoch*.pt")) == ["checkpoint_epoch39.pt",
                                                                          "checkpoint_epoch40.pt"]
    avg = load_checkpoint(exp / "checkpoint_avg.pt")
    e39, e40 = (load_checkpoint(exp / f"checkpoint_epoch{e}.pt")["model"] for e in (39, 40))
    key = "blocks.0.conv.weight"
    assert torch.allclose(avg["model"][key], (e39[key] + e40[key]) / 2, atol=1e-6)
    assert avg["averaged_epochs"] == [39, 40]
    best = load_checkpoint(exp / "checkpoint_best.pt")
    assert best["epoch"] == res.best_epoch
    for rec in recs:  # every column of the epoch table is logged
        assert {"train_loss", "dev_loss", "ler", "wer", "time_s", "audio_s_per_s"} <= set(rec)


def _weights(path):
    return load_checkpoint(path)["model"]


def test_resume_is_exact(am_data, tmp_path):
    lang, train, valid = am_data
    extra = ["max_epochs=3", "model.dropout=0.2", "optim.name=sgd", "optim.momentum=0.9", "optim.lr=0.05",
             "schedule.warmup_updates=4", "schedule.decay=cosine"]
    train_am(_cfg(*extra), lang_dir=lang, train_dir=train, valid_dir=valid, exp_dir=tmp_path / "a")
    # interrupted mid-epoch 2 (4 updates of 3 per epoch), then resumed with the same command
    r1 = train_am(_cfg(*extra, "optim.max_update=4"), lang_dir=lang, train_dir=train, valid_dir=valid,
                  exp_dir=tmp_path / "b")
    assert r1.stopped_early and r1.updates == 4
    assert len(read_metrics(tmp_path / "b" / "metrics.jsonl")) == 1
    # lifting the update limit changes the recorded config: only with allow_changes
    with pytest.raises(W2vtkError, match=r"optim.max_update: 4 -> 0"):
        train_am(_cfg(*extra), lang_dir=lang, train_dir=train, valid_dir=valid, exp_dir=tmp_path / "b")
    train_am(_cfg(*extra), lang_dir=lang, train_dir=train, valid_dir=valid, exp_dir=tmp_path / "b",
             allow_changes=True)
    assert (tmp_path / "b" / "config.1.yaml").is_file()
    wa, wb = _weights(tmp_path / "a" / "checkpoint_last.pt"), _weights(tmp_path / "b" / "checkpoint_last.pt")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    ma, mb = read_metrics(tmp_path / "a" / "metrics.jsonl"), read_metrics(tmp_path / "b" / "metrics.jsonl")
    assert [r["train_loss"] for r in ma] == pytest.approx([r["train_loss"] for r in mb], rel=1e-9)
    assert [r["ler"] for r in ma] == [r["ler"] for r in mb]
    # a finished run is not retrained
    res = train_am(_cfg(*extra), lang_dir=lang, train_dir=train, valid_dir=valid, exp_dir=tmp_path / "b")
    assert res.updates == 9 and len(read_metrics(tmp_path / "b" / "metrics.jsonl")) == 3


def test_global_normalisation_is_stored_and_used(am_data, tmp_path):
    lang, train, valid = am_data
    train_am(_cfg("max_epochs=1", "normalisation=global"), lang_dir=lang, train_dir=train, valid_dir=valid,
             exp_dir=tmp_path / "g")
    stats = np.load(tmp_path / "g" / "global_cmvn.npz")
    from w2vtk.am.data import load_feature_dir

    fd = load_feature_dir(train)
    allf = np.concatenate([fd.load(u) for u in fd.ids])
    assert np.allclose(stats["mean"], allf.mean(0), atol=1e-3)
    assert np.allclose(stats["std"], allf.std(0), atol=1e-3)
    ck = load_checkpoint(tmp_path / "g" / "checkpoint_last.pt")
    assert ck["normaliser"]["mode"] == "global"
    assert np.allclose(ck["normaliser"]["mean"].numpy(), stats["mean"])


def test_feature_provenance_is_enforced(am_data, tmp_path):
    lang, train, valid = am_data
    exp = tmp_path / "exp"
    train_am(_cfg("max_epochs=1"), lang_dir=lang, train_dir=train, valid_dir=valid, exp_dir=exp)
    texts = dict(line.split(maxsplit=1) for line in (train / "text").read_text().splitlines())
    other = write_feature_dir(tmp_path / "fbank", texts, seed=3, feats_yaml=FBANK_PROV)
    # resuming with log-mel features an AM trained on wav2vec features: refused, nothing written
    before = (exp / "checkpoint_last.pt").stat().st_mtime_ns
    with pytest.raises(W2vtkError, match="feature_type|type.*wav2vec.*logmel|allow-feature-mismatch"):
        train_am(_cfg("max_epochs=2"), lang_dir=lang, train_dir=other, valid_dir=other, exp_dir=exp)
    assert (exp / "checkpoint_last.pt").stat().st_mtime_ns == before
    # another checkpoint sha256 for the dev set of a fresh run: refused too
    prov = dict(W2V_PROV, checkpoint_sha256="cd" * 32)
    valid2 = write_feature_dir(tmp_path / "valid2", make_texts(4, 9, "v"), seed=5, feats_yaml=prov)
    with pytest.raises(W2vtkError, match="checkpoint_sha256"):
        train_am(_cfg("max_epochs=1"), lang_dir=lang, train_dir=train, valid_dir=valid2, exp_dir=tmp_path / "n")
    # the override accepts them
    res = train_am(_cfg("max_epochs=2"), lang_dir=lang, train_dir=other, valid_dir=other, exp_dir=exp,
                   allow_feature_mismatch=True, allow_changes=True)
    assert res.epochs_done == 2


def test_wrong_dimension_on_resume(am_data, tmp_path):
    lang, train, valid = am_data
    exp = tmp_path / "exp"
    train_am(_cfg("max_epochs=1"), lang_dir=lang, train_dir=train, valid_dir=valid, exp_dir=exp)
    texts = dict(line.split(maxsplit=1) for line in (train / "text").read_text().splitlines())
    wide = write_feature_dir(tmp_path / "wide", texts, dim=20, seed=3, feats_yaml=W2V_PROV)
    with pytest.raises(W2vtkError, match="dimension 20.*16-dim"):
        train_am(_cfg("max_epochs=2"), lang_dir=lang, train_dir=wide, valid_dir=wide, exp_dir=exp)
    with pytest.raises(W2vtkError, match="normalisation=utterance"):
        train_am(_cfg("max_epochs=2", "normalisation=none"), lang_dir=lang, train_dir=train, valid_dir=valid,
                 exp_dir=exp)


def test_id_mismatch_trains_on_intersection(am_data, tmp_path, capsys):
    lang, train, valid = am_data
    texts = make_texts(8, 11, "u")
    d = write_feature_dir(tmp_path / "d", texts, seed=1, feats_yaml=W2V_PROV,
                          extra_feats={"zz_no_text": np.zeros((30, 16), np.float32)})
    (d / "text").write_text("aa_no_feats bad\n" + (d / "text").read_text())
    res = train_am(_cfg("max_epochs=1"), lang_dir=lang, train_dir=d, valid_dir=valid, exp_dir=tmp_path / "e")
    assert res.num_train == 8
    err = capsys.readouterr().err
    assert "8 utterances have features and a transcript" in " ".join(err.split())


def test_bad_inputs(am_data, tmp_path):
    lang, train, valid = am_data
    # no utterance in common
    d = write_feature_dir(tmp_path / "d", make_texts(3, 1, "x"), seed=1, feats_yaml=W2V_PROV)
    (d / "text").write_text("other1 cab\n")
    with pytest.raises(W2vtkError, match="no utterance in common"):
        train_am(_cfg(), lang_dir=lang, train_dir=d, valid_dir=valid, exp_dir=tmp_path / "e1")
    # a character outside the token set, named with its utterance
    d2 = write_feature_dir(tmp_path / "d2", {"bad7": "cab d7g", "ok": "cab"}, seed=1, feats_yaml=W2V_PROV)
    with pytest.raises(W2vtkError, match="bad7.*'7'"):
        train_am(_cfg(), lang_dir=lang, train_dir=d2, valid_dir=valid, exp_dir=tmp_path / "e2")
    # every utterance too short for its transcript under CTC: nothing to train on
    short = {"s1": "deed bead cede", "s2": "dace bead"}
    d3 = write_feature_dir(tmp_path / "d3", short, seed=1, feats_yaml=W2V_PROV,
                           extra_feats={u: np.ones((4, 16), np.float32) for u in short})
    with pytest.raises(W2vtkError, match="no training utterance left.*2 too short"):
        train_am(_cfg(), lang_dir=lang, train_dir=d3, valid_dir=valid, exp_dir=tmp_path / "e3")
    # missing feats.scp / lang
    with pytest.raises(W2vtkError,
                       match=r"no feats.scp \(make it with `w2vtk extract --in <data dir or audio> --out-dir "):
        train_am(_cfg(), lang_dir=lang, train_dir=tmp_path, valid_dir=valid, exp_dir=tmp_path / "e4")
    with pytest.raises(W2vtkError, match="tokens.txt"):
        train_am(_cfg(), lang_dir=tmp_path, train_dir=train, valid_dir=valid, exp_dir=tmp_path / "e5")
    # an exp dir with checkpoints of some other run but nothing to resume from
    (tmp_path / "e6").mkdir()
    (tmp_path / "e6" / "checkpoint_epoch3.pt").write_bytes(b"x")
    with pytest.raises(W2vtkError, match="no checkpoint_last.pt"):
        train_am(_cfg(), lang_dir=lang, train_dir=train, valid_dir=valid, exp_dir=tmp_path / "e6")
    for sub in ("e1", "e2", "e3", "e4", "e5"):
        assert not (tmp_path / sub / "checkpoint_last.pt").exists()


def test_short_utterances_are_skipped_and_counted(am_data, tmp_path):
    lang, train, valid = am_data
    texts = make_texts(6, 5, "k")
    texts["short1"] = "deed bead"
    d = write_feature_dir(tmp_path / "d", texts, seed=1, feats_yaml=W2V_PROV,
                          extra_feats={"short1": np.ones((5, 16), np.float32)})
    res = train_am(_cfg("max_epochs=1"), lang_dir=lang, train_dir=d, valid_dir=valid, exp_dir=tmp_path / "e")
    assert res.skipped_short == 1 and res.num_train == 6
    assert read_metrics(tmp_path / "e" / "metrics.jsonl")[0]["skipped_short_train"] == 1


def test_cli(am_data, tmp_path):
    lang, train, valid = am_data
    runner = CliRunner()
    args = ["train-am", "--conf", "conf/am/tiny.yaml", "--lang", str(lang), "--train", str(train),
            "--valid", str(valid), "--exp", str(tmp_path / "exp"), "max_epochs=1", "model.layers=[[32,5,1]]",
            "amp=none", "device=cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "exp" / "checkpoint_avg.pt").is_file()
    cfg = yaml.safe_load((tmp_path / "exp" / "config.yaml").read_text())
    assert cfg["model"]["layers"] == [[32, 5, 1]] and cfg["paper"]["note"]
    # a user mistake: one 'error:' line, exit 1, no traceback
    proc = subprocess.run([sys.executable, "-m", "w2vtk", "train-am", "--lang", str(lang), "--train",
                           str(tmp_path / "missing"), "--valid", str(valid), "--exp", str(tmp_path / "e2")],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "missing" in lines[0]
    result = runner.invoke(app, ["train-am", "--lang", str(lang), "--train", str(train), "--valid", str(valid),
                                 "--exp", str(tmp_path / "e3"), "optim.lr=-1"])
    assert isinstance(result.exception, W2vtkError) and "optim.lr" in str(result.exception)
    assert not (tmp_path / "e3").exists()


def test_cli_rerun_keeps_the_saved_config_and_refuses_changes(am_data, tmp_path):
    """Issue 13's case: a rerun without --conf used to resume with the built-in defaults and
    overwrite config.yaml; a changed override was accepted silently."""
    lang, train, valid = am_data
    runner = CliRunner()
    exp = tmp_path / "exp"
    base = ["train-am", "--lang", str(lang), "--train", str(train), "--valid", str(valid), "--exp", str(exp)]
    result = runner.invoke(app, base + ["--conf", "conf/am/tiny.yaml", "max_epochs=1", "model.layers=[[32,5,1]]",
                                        "amp=none", "device=cpu"])
    assert result.exit_code == 0, result.output
    saved = (exp / "config.yaml").read_bytes()
    # rerun without --conf: continues with EXP/config.yaml (nothing left to train), file untouched
    result = runner.invoke(app, base)
    assert result.exit_code == 0, result.output
    assert (exp / "config.yaml").read_bytes() == saved
    assert len(read_metrics(exp / "metrics.jsonl")) == 1
    # a changed setting: exit 1 naming it, config.yaml untouched, nothing trained
    proc = subprocess.run([sys.executable, "-m", "w2vtk", *base, "optim.lr=0.01", "max_epochs=2"],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "max_epochs: 1 -> 2" in lines[0] and "optim.lr: 0.002 -> 0.01" in lines[0], lines
    assert (exp / "config.yaml").read_bytes() == saved and not (exp / "config.1.yaml").exists()
    assert len(read_metrics(exp / "metrics.jsonl")) == 1
    # --allow-changes: trains on, keeps the old config as config.1.yaml and records the new
    result = runner.invoke(app, base + ["--allow-changes", "max_epochs=2"])
    assert result.exit_code == 0, result.output
    assert (exp / "config.1.yaml").read_bytes() == saved
    assert yaml.safe_load((exp / "config.yaml").read_text())["max_epochs"] == 2
    assert len(read_metrics(exp / "metrics.jsonl")) == 2


def test_old_max_updates_key_still_loads(tmp_path):
    notes: list[str] = []
    cfg = load_config(TrainAMConfig, None, ["max_updates=5"], notes=notes)
    assert cfg.optim.max_update == 5 and notes and "'max_updates' is now 'optim.max_update'" in notes[0]
    old = tmp_path / "config.yaml"
    old.write_text(yaml.safe_dump({"max_epochs": 3, "max_updates": 0}))  # a config saved before the rename
    assert load_config(TrainAMConfig, old, notes=[]).max_epochs == 3


def test_ddp_two_gloo_processes(am_data, tmp_path):
    lang, train, valid = am_data
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "w2vtk", "train-am", "--lang", str(lang), "--train", str(train), "--valid", str(valid),
           "--exp", str(tmp_path / "exp")] + TINY + ["max_epochs=2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ck = load_checkpoint(tmp_path / "exp" / "checkpoint_last.pt")
    assert ck["train_state"]["world_size"] == 2 and len(ck["rng"]) == 2
    recs = read_metrics(tmp_path / "exp" / "metrics.jsonl")
    assert [r["epoch"] for r in recs] == [1, 2]  # rank 0 alone writes
    # 24 utterances in batches of <= 8: each rank does half of the (wrapped-around) batches
    assert ck["updates"] == 2 * 2
    assert recs[1]["train_loss"] < recs[0]["train_loss"]
    # one process accumulating 2 batches per update sees the same batch pairs in the same order and
    # normalises by the same token count: the same model, up to all-reduce rounding
    single = train_am(_cfg("max_epochs=2", "batch.accum=2"), lang_dir=lang, train_dir=train, valid_dir=valid,
                      exp_dir=tmp_path / "single")
    assert single.updates == ck["updates"]
    w1 = _weights(tmp_path / "single" / "checkpoint_last.pt")
    for k, v in ck["model"].items():
        assert torch.allclose(v, w1[k], atol=1e-4, rtol=1e-4), k
    rs = read_metrics(tmp_path / "single" / "metrics.jsonl")
    assert [r["train_loss"] for r in rs] == pytest.approx([r["train_loss"] for r in recs], rel=1e-4)


def test_gradient_accumulation_makes_fewer_updates(am_data, tmp_path):
    lang, train, valid = am_data
    # 24 utterances, at most 4 per batch -> 6 batches; 2 micro-batches per update -> 3 updates/epoch
    res = train_am(_cfg("max_epochs=2", "batch.max_utts=4", "batch.accum=2", "optim.name=sgd",
                        "optim.momentum=0.9", "optim.lr=0.05"),
                   lang_dir=lang, train_dir=train, valid_dir=valid, exp_dir=tmp_path / "acc")
    assert res.updates == 6
    recs = read_metrics(tmp_path / "acc" / "metrics.jsonl")
    assert [r["updates"] for r in recs] == [3, 6]
    assert all(np.isfinite(r["train_loss"]) for r in recs)


def test_valid_every_skips_dev_passes_without_changing_training(am_data, tmp_path):
    lang, train, valid = am_data
    extra = ["max_epochs=5", "model.dropout=0.2", "schedule.decay=cosine"]
    every = train_am(_cfg(*extra), lang_dir=lang, train_dir=train, valid_dir=valid, exp_dir=tmp_path / "a")
    sparse = train_am(_cfg(*extra, "valid_every=2"), lang_dir=lang, train_dir=train, valid_dir=valid,
                      exp_dir=tmp_path / "b")
    ma, mb = read_metrics(tmp_path / "a" / "metrics.jsonl"), read_metrics(tmp_path / "b" / "metrics.jsonl")
    # epochs 2, 4 and the last one are validated; the others log no dev figures
    assert [r["ler"] is not None for r in mb] == [False, True, False, True, True]
    assert all(r["dev_loss"] is None and r["wer"] is None for r in mb if r["ler"] is None)
    for a, b in zip(ma, mb):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-9)
        if b["ler"] is not None:
            assert a["ler"] == b["ler"]
    wa, wb = _weights(tmp_path / "a" / "checkpoint_last.pt"), _weights(tmp_path / "b" / "checkpoint_last.pt")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # the best checkpoint is chosen among validated epochs only
    assert sparse.best_epoch in (2, 4, 5) and mb[-1]["best_epoch"] == sparse.best_epoch
    assert every.best_error <= sparse.best_error
    with pytest.raises(W2vtkError, match="valid_every: must be >= 1"):
        _cfg("valid_every=0").validate()
