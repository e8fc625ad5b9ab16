"""Recipe options that shape stage 0: several --pretrain-data dirs (combined into one set) and
WSJ's --am-hours low-resource subset."""

from __future__ import annotations

import pytest

from fake_corpora import make_wsj
from recipe_helpers import ROOT, run_script
from w2vtk.data import read_kv


def test_several_pretrain_data_dirs_are_combined(mini_corpus, tmp_path):
    exp = tmp_path / "exp"
    dirs = f"{mini_corpus / 'train'} {mini_corpus / 'dev'}"
    res = run_script([ROOT / "recipes/mini/run.sh", "--exp", exp, "--profile", "tiny", "--nproc", "1",
                      "--stop-stage", "0", "--pretrain-data", dirs])
    assert res.returncode == 0, res.stderr[-3000:]
    combined = read_kv(exp / "data/pretrain/wav.scp")
    expected = {**read_kv(mini_corpus / "train/wav.scp"), **read_kv(mini_corpus / "dev/wav.scp")}
    assert combined == expected


def test_pretrain_data_entries_must_be_data_dirs(mini_corpus, tmp_path):
    exp = tmp_path / "exp"
    res = run_script([ROOT / "recipes/mini/run.sh", "--exp", exp, "--profile", "tiny", "--nproc", "1",
                      "--stop-stage", "0", "--pretrain-data", f"{mini_corpus / 'train'} {tmp_path}"])
    assert res.returncode == 1
    assert f"--pretrain-data: '{tmp_path}' is not a data dir" in res.stderr
    assert not (exp / "data/pretrain").exists()


@pytest.mark.slow
def test_wsj_am_hours_subset(tmp_path):
    wsj0, wsj1 = make_wsj(tmp_path)
    exp = tmp_path / "exp"
    res = run_script([ROOT / "recipes/wsj/run.sh", "--wsj0", wsj0, "--wsj1", wsj1, "--exp", exp, "--profile", "tiny",
                      "--nproc", "1", "--stop-stage", "1", "--am-hours", "0.001"])
    assert res.returncode == 0, res.stderr[-3000:]
    subset = read_kv(exp / "data/train_si284_0.001h/utt2spk")
    full = read_kv(exp / "data/train_si284/utt2spk")
    assert 0 < len(subset) < len(full) and set(subset) <= set(full)
    # stage 3 extracts the subset the AMs train on, not all of si284
    res = run_script([ROOT / "recipes/wsj/run.sh", "--exp", exp, "--profile", "tiny", "--nproc", "1",
                      "--stage", "4", "--am-hours", "0.001"])
    assert res.returncode == 1
    assert f"{exp}/data/train_si284_0.001h_fbank/feats.scp is missing: it is made by stage 3" in res.stderr
