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
            str(audio_set), "--exp", str(exp), *SMALL, "max_update=2", "seed=7"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load((exp / "config.yaml").read_text())
    assert resolved["max_update"] == 2 and resolved["seed"] == 7
    assert resolved["model"]["norm"] == "channel" and "preset" not in resolved["model"]
    assert resolved["model"]["log_compression"] is True  # from tiny.yaml's large preset
    assert load_checkpoint(exp / "checkpoint_last.pt")["train_state"]["num_updates"] == 2
    # rerun with a larger max_update: resumes (config.yaml + overrides), does not start over
    result = runner.invoke(app, ["pretrain", "--data", str(audio_set), "--exp", str(exp), "max_update=3"])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(exp / "checkpoint_last.pt")["train_state"]["num_updates"] == 3
    assert (exp / "checkpoint_best.pt").is_file()


@pytest.mark.parametrize("extra, fragment", [
    (["model.nrom=channel"], "unknown key 'nrom'"),
    (["max_tokens=100"], "smaller than one crop"),
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
    (["lr=fast"], "lr: expected a number"),
    (["amp=fp8"], "expected one of"),
    (["update_freq=0"], "update_freq: must be >= 1"),
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
