"""bin/parse_options.sh (Kaldi's option rules) and the recipes' option errors, which must stop
with one clear line before any work starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from recipe_helpers import ROOT

SCRIPT = """\
stage=0
stop_stage=6
use_gpu=true
exp=exp
corpus_dir=""
help_message="Usage: demo.sh [options] ARG..."
. {root}/bin/parse_options.sh || exit 1
echo "stage=$stage stop_stage=$stop_stage use_gpu=$use_gpu exp=$exp corpus_dir=$corpus_dir"
echo "rest=$*"
"""


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    path = tmp_path / "demo.sh"
    path.write_text(SCRIPT.format(root=ROOT))
    return path


def test_options_set_variables_and_stop_at_first_argument(run, demo):
    res = run([demo, "--stage", "3", "--stop-stage", "5", "--use-gpu", "false", "--corpus-dir",
               "/a b", "x", "--exp", "y"])
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "stage=3 stop_stage=5 use_gpu=false exp=exp corpus_dir=/a b"
    assert lines[1] == "rest=x --exp y"  # parsing stops at the first non-option


def test_double_dash_ends_options(run, demo):
    res = run([demo, "--stage", "2", "--", "--stage", "4"])
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["stage=2 stop_stage=6 use_gpu=true exp=exp corpus_dir=", "rest=--stage 4"]


@pytest.mark.parametrize("args,message", [
    (["--stgae", "3"], "unknown option --stgae"),
    (["--stage=3"], "write '--stage 3' (two words), not '--stage=3'"),
    (["--use-gpu", "yes"], "option --use-gpu takes true or false, not 'yes'"),
    (["--stage", "three"], "option --stage takes an integer, not 'three'"),
    (["--exp"], "option --exp needs a value"),
    (["--config", "/nonexistent/conf.sh"], "--config: no such file"),
])
def test_bad_options_fail_in_one_line(run, demo, args, message):
    res = run([demo, *args])
    assert res.returncode == 1
    assert res.stdout == ""  # nothing after the parser ran
    assert len(res.stderr.strip().splitlines()) == 1
    assert message in res.stderr


def test_config_is_sourced_first_and_command_line_wins(run, demo, tmp_path):
    conf = tmp_path / "my.conf"
    conf.write_text("stage=4\nexp=from_config\n")
    res = run([demo, "--stage", "1", "--config", str(conf)])
    assert res.returncode == 0, res.stderr
    # --config appears after --stage but is sourced first, so --stage 1 wins; exp comes from it
    assert res.stdout.splitlines()[0].startswith("stage=1 stop_stage=6 use_gpu=true exp=from_config")


def test_help_prints_help_message(run, demo):
    res = run([demo, "--stage", "2", "--help"])
    assert res.returncode == 0
    assert res.stdout.strip() == "Usage: demo.sh [options] ARG..."


# ------------------------------------------------------------------ the recipes' own checks


@pytest.mark.parametrize("recipe", ["mini", "timit", "wsj", "librispeech"])
def test_recipe_help_lists_stages(run, recipe):
    res = run([ROOT / "recipes" / recipe / "run.sh", "--help"])
    assert res.returncode == 0, res.stderr
    for n in range(7):
        assert f"  {n}  " in res.stdout
    assert "--profile" in res.stdout and "--stop-stage" in res.stdout


@pytest.mark.parametrize("args,message", [
    (["--stage", "5", "--stop-stage", "3"], "--stage 5 is after --stop-stage 3"),
    (["--stage", "7"], "--stage 7: stages are 0..6"),
    (["--profile", "huge"], "--profile huge: no "),
    (["--corpus", "/x", "extra"], "unexpected argument 'extra'"),
    (["--corpus-dir", "/x"], "unknown option --corpus-dir"),
    (["--w2v-layer", "context"], "--w2v-layer context: expected c, z or context-N"),
    (["--systems", "logmel mfcc"], "--systems: 'mfcc' is not logmel or wav2vec"),
])
def test_recipe_option_errors(run, tmp_path, args, message):
    res = run([ROOT / "recipes/timit/run.sh", "--exp", tmp_path / "exp", "--nproc", "1", *args])
    assert res.returncode == 1
    assert message in res.stderr
    assert not (tmp_path / "exp" / "data").exists()


def test_missing_corpus_names_the_option(run, tmp_path):
    res = run([ROOT / "recipes/timit/run.sh", "--exp", tmp_path / "exp", "--nproc", "1"])
    assert res.returncode == 1
    assert "set --corpus" in res.stderr
    res = run([ROOT / "recipes/wsj/run.sh", "--exp", tmp_path / "exp2", "--nproc", "1", "--wsj0", tmp_path])
    assert res.returncode == 1 and "set --wsj1" in res.stderr
    res = run([ROOT / "recipes/librispeech/run.sh", "--exp", tmp_path / "exp3", "--nproc", "1",
               "--corpus", tmp_path / "nowhere"])
    assert res.returncode == 1 and "no such directory" in res.stderr


@pytest.mark.parametrize("stage,missing,producer", [
    (1, "data/train/text", "stage 0"),
    (3, "w2v/checkpoint_best.pt", "stage 2"),
    (4, "data/lang/tokens.txt", "stage 1"),
    (5, "am_fbank/checkpoint_last.pt", "stage 4"),
    (6, "am_fbank/decode_dev/hyp.txt", "stage 5"),
])
def test_stage_without_inputs_names_its_producer(run, tmp_path, stage, missing, producer):
    exp = tmp_path / "exp"
    res = run([ROOT / "recipes/timit/run.sh", "--exp", exp, "--nproc", "1", "--stage", str(stage)])
    assert res.returncode == 1
    err = [line for line in res.stderr.splitlines() if "error:" in line]
    assert len(err) == 1
    assert f"{exp}/{missing} is missing: it is made by {producer}" in err[0]
    assert not (exp / ".done").exists()  # nothing ran
