"""``w2vtk pretrain`` through the CLI: a run with overrides, resume, --help, bad input (exit 1, one line)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pretrain_helpers import SMALL
from typer.testing import CliRunner

from w2vtk.checkpoint import load_checkpoint
from w2vtk.cli import app

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_help_explains_batch_semantics():
    result = runner.invoke(app, ["pretrain", "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for fragment in ("samples PER GPU", "update_freq", "GLOBAL batch", "93.75 s", "max_sample_size",
                     "--resume", "KEY=VALUE"):
        assert fragment in text, fragment


def test_cli_run_with_overrides_then_resume(audio_set, tmp_path):
    exp = tmp_path / "exp"
    args = ["pretrain", "--conf", str(REPO / "conf" / "tiny.yaml"), "--data", str(audio_set), "--valid",
            str(audio_set), "--exp", str(exp), *SMALL, "optim.max_update=2", "seed=7"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load((exp / "config.yaml").read_text())
    assert resolved["optim"]["max_update"] == 2 and resolved["seed"] == 7
    assert resolved["model"]["norm"] == "channel" and "preset" not in resolved["model"]
    assert resolved["model"]["log_compression"] is True  # from tiny.yaml's large preset
    assert load_checkpoint(exp / "checkpoint_last.pt")["train_state"]["num_updates"] == 2
    saved = (exp / "config.yaml").read_bytes()
    # a rerun without --conf continues as configured and leaves config.yaml byte-identical
    result = runner.invoke(app, ["pretrain", "--data", str(audio_set), "--exp", str(exp)])
    assert result.exit_code == 0, result.output
    assert (exp / "config.yaml").read_bytes() == saved
    # a rerun that changes a setting is refused, naming the change; nothing is written
    result = runner.invoke(app, ["pretrain", "--data", str(audio_set), "--exp", str(exp), "optim.max_update=3"])
    assert result.exit_code != 0
    assert "optim.max_update: 2 -> 3" in str(result.exception) and "--allow-changes" in str(result.exception)
    assert (exp / "config.yaml").read_bytes() == saved and not (exp / "config.1.yaml").exists()
    assert load_checkpoint(exp / "checkpoint_last.pt")["train_state"]["num_updates"] == 2
    # with --allow-changes it resumes (does not start over) and keeps the old config as config.1.yaml
    result = runner.invoke(app, ["pretrain", "--data", str(audio_set), "--exp", str(exp), "--allow-changes",
                                 "optim.max_update=3"])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(exp / "checkpoint_last.pt")["train_state"]["num_updates"] == 3
    assert (exp / "config.1.yaml").read_bytes() == saved
    assert yaml.safe_load((exp / "config.yaml").read_text())["optim"]["max_update"] == 3
    assert (exp / "checkpoint_best.pt").is_file()
    # how to run (threads) is not the experiment: changing it needs no --allow-changes
    result = runner.invoke(app, ["pretrain", "--data", str(audio_set), "--exp", str(exp), "threads=2"])
    assert result.exit_code == 0, result.output
    assert (exp / "config.2.yaml").is_file()
    log = (exp / "log" / "pretrain.log").read_text()
    assert log.count("INFO done") == 4 and "this rerun changes the experiment's config.yaml" in log
    # TensorBoard scalars under the metrics.jsonl names, <split>/<name>, step = update
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(exp / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/rank_acc", "valid/loss", "valid/rank_acc"} <= tags, tags
    assert sorted({e.step for e in acc.Scalars("train/loss")}) == [1, 2, 3]


def test_old_flat_keys_still_work_with_a_note_and_bad_keys_blame_the_override(audio_set, tmp_path):
    from w2vtk.errors import W2vtkError
    from w2vtk.pretrain import load_pretrain_config

    notes: list[str] = []
    cfg = load_pretrain_config(REPO / "conf" / "tiny.yaml", ["max_update=7", "lr=1e-3"], notes=notes)
    assert cfg.optim.max_update == 7 and cfg.optim.lr == 1e-3
    assert any("'max_update' is now 'optim.max_update'" in n for n in notes)
    old_layout = tmp_path / "old.yaml"
    old_layout.write_text("model: {preset: base}\nmax_tokens: 1000000\nkeep_last: 3\n")
    cfg = load_pretrain_config(old_layout, notes=[])
    assert cfg.data.max_tokens == 1000000 and cfg.checkpoint.keep_last == 3
    with pytest.raises(W2vtkError, match=r"^override 'optim.max_updates=3': unknown key 'optim.max_updates'; "
                                         r"did you mean 'optim.max_update'\?"):
        load_pretrain_config(REPO / "conf" / "tiny.yaml", ["optim.max_updates=3"])
    with pytest.raises(W2vtkError, match="same setting"):
        load_pretrain_config(None, ["lr=1", "optim.lr=2"])


@pytest.mark.parametrize("extra, fragment", [
    (["model.nrom=channel"], "override 'model.nrom=channel': unknown key 'model.nrom'; did you mean 'model.norm'?"),
    (["data.max_tokens=100"], "smaller than one crop"),
])
def test_bad_input_is_one_error_line_and_writes_nothing(audio_set, tmp_path, extra, fragment):
    exp = tmp_path / "exp"
    proc = subprocess.run([sys.executable, "-m", "w2vtk", "pretrain", "--data", str(audio_set), "--exp", str(exp),
                           *SMALL, *extra], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not exp.exists()


@pytest.mark.parametrize("extra, fragment", [
    (["optim.lr=fast"], "lr: expected a number"),
    (["amp=fp8"], "expected one of"),
    (["optim.update_freq=0"], "update_freq: must be >= 1"),
    (["model.preset=huge"], "unknown wav2vec preset"),
])
def test_bad_config_values(audio_set, tmp_path, extra, fragment):
    result = runner.invoke(app, ["pretrain", "--data", str(audio_set), "--exp", str(tmp_path / "exp"), *SMALL,
                                 *extra])
    assert result.exit_code != 0 and fragment in str(result.exception)
    assert not (tmp_path / "exp").exists()


def test_empty_data_dir_is_a_clean_error(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text("")
    result = runner.invoke(app, ["pretrain", "--data", str(data), "--exp", str(tmp_path / "exp"), *SMALL])
    assert result.exit_code != 0 and not (tmp_path / "exp").exists()
    assert "data" in str(result.exception)
