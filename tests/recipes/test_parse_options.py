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
    last = 7 if recipe == "mini" else 6  # mini's stage 7: the study curves
    for n in range(last + 1):
        assert f"  {n}  " in res.stdout
    assert f"  {last + 1}  " not in res.stdout
    assert f"[0..{last}]" in res.stdout
    assert "--profile" in res.stdout and "--stop-stage" in res.stdout and "--am-seeds" in res.stdout


@pytest.mark.parametrize("args,message", [
    (["--stage", "5", "--stop-stage", "3"], "--stage 5 is after --stop-stage 3"),
    (["--stage", "7"], "--stage 7: stages are 0..6"),
    (["--profile", "huge"], "--profile huge: no "),
    (["--corpus", "/x", "extra"], "unexpected argument 'extra'"),
    (["--corpus-dir", "/x"], "unknown option --corpus-dir"),
    (["--w2v-layer", "context"], "--w2v-layer context: expected c, z or context-N"),
    (["--systems", "logmel mfcc"], "--systems: 'mfcc' is not logmel or wav2vec"),
    (["--am-seeds", "1 -2"], "--am-seeds: '-2' is not a non-negative integer"),
    (["--am-seeds", "3 x"], "--am-seeds: 'x' is not a non-negative integer"),
    (["--am-seeds", "2 1 02"], "--am-seeds: seed 2 is given twice"),
])
def test_recipe_option_errors(run, tmp_path, args, message):
    res = run([ROOT / "recipes/timit/run.sh", "--exp", tmp_path / "exp", "--nproc", "1", *args])
    assert res.returncode == 1
    assert message in res.stderr
    assert not (tmp_path / "exp" / "data").exists()


@pytest.mark.parametrize("args,message", [
    (["--stage", "8"], "--stage 8: stages are 0..7"),
    (["--stop-stage", "8"], "--stop-stage 8: stages are 0..7"),
    (["--am-seeds", "1 1"], "--am-seeds: seed 1 is given twice"),
    (["--am-seeds", "*"], "--am-seeds: '*' is not a non-negative integer"),
    (["--curve-am-minutes", "2 0"], "--curve-am-minutes: '0' is not a positive number of minutes"),
    (["--curve-am-minutes", "2 x"], "--curve-am-minutes: 'x' is not a positive number of minutes"),
    (["--curve-pretrain-minutes", "15 15.0"], "--curve-pretrain-minutes: 15 minutes is given twice"),
    (["--held-speakers", "two"], "--held-speakers two: expected a positive integer"),
    (["--held-minutes", "-1"], "--held-minutes -1: expected a positive number of minutes"),
])
def test_mini_option_errors(run, tmp_path, args, message):
    """The mini recipe's own checks (stage 7, --am-seeds, the curve points) stop before any work."""
    res = run([ROOT / "recipes/mini/run.sh", "--exp", tmp_path / "exp", "--nproc", "1", "--profile", "tiny", *args])
    assert res.returncode == 1
    err = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "exp" / "data").exists() and not (tmp_path / "exp" / ".done").exists()


def test_mini_stage_7_without_curve_points_is_a_no_op(run, tmp_path):
    res = run([ROOT / "recipes/mini/run.sh", "--exp", tmp_path / "exp", "--nproc", "1", "--profile", "tiny",
               "--stage", "7"])
    assert res.returncode == 0, res.stderr
    assert "stage 7: skipped, no curve points" in res.stderr
    assert not (tmp_path / "exp" / ".done").exists()


def test_mini_stage_7_without_inputs_names_its_producer(run, tmp_path):
    exp = tmp_path / "exp"
    res = run([ROOT / "recipes/mini/run.sh", "--exp", exp, "--nproc", "1", "--profile", "tiny", "--stage", "7",
               "--curve-am-minutes", "0.5"])
    assert res.returncode == 1
    err = [line for line in res.stderr.splitlines() if "error:" in line]
    assert len(err) == 1 and f"{exp}/data/train/wav.scp is missing: it is made by stage 0" in err[0]
    assert not (exp / ".done").exists()


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
