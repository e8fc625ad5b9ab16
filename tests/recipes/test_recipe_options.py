"""Recipe options that shape stage 0: several --pretrain-data dirs (combined into one set) and
WSJ's --am-hours low-resource subset; and how --am-seeds' trainings run (recipes/common/lib.sh's
queue: in parallel on a CPU, one thread each, a log per step)."""

from __future__ import annotations

import os
from pathlib import Path

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


# A recipe's use of lib.sh's queue with three fake steps; step b exits with $B_STATUS. Each step
# records its start / end time and the OMP_NUM_THREADS it saw.
QUEUE_SCRIPT = """\
set -euo pipefail
root={root}
. "$root/bin/log.sh"
exp={exp}; nproc={nproc}; launch_opts=""; cuda_devices=0
. "$root/recipes/common/lib.sh"
step='echo "$1 start $(date +%s.%N) $OMP_NUM_THREADS" >> "$2/times"; sleep 1.5; echo "$1 end $(date +%s.%N)" >> "$2/times"; echo out-$1; exit $3'
queue_step a bash -c "$step" _ a "$exp" 0
queue_step b bash -c "$step" _ b "$exp" "$B_STATUS"
queue_step c bash -c "$step" _ c "$exp" 0
run_queue
echo queue-finished
"""


def _queue(tmp_path: Path, nproc: int, b_status: int, **env: str):
    exp = tmp_path / "exp"
    exp.mkdir(exist_ok=True)
    script = tmp_path / "queue.sh"
    script.write_text(QUEUE_SCRIPT.format(root=ROOT, exp=exp, nproc=nproc))
    res = run_script([script], B_STATUS=str(b_status), **env)
    times = {}
    for line in (exp / "times").read_text().splitlines() if (exp / "times").exists() else []:
        name, what, stamp, *omp = line.split()
        times.setdefault(name, {})[what] = float(stamp)
        if omp:
            times[name]["omp"] = omp[0]
    (exp / "times").unlink(missing_ok=True)
    return exp, res, times


def _most_at_once(times: dict) -> int:
    return max(sum(1 for t in times.values() if t["start"] <= s["start"] < t["end"]) for s in times.values())


def test_queued_steps_run_in_parallel_one_thread_each_and_a_failure_names_its_log(tmp_path):
    exp, res, times = _queue(tmp_path, nproc=1, b_status=3, OMP_NUM_THREADS="4")
    assert res.returncode == 1 and "queue-finished" not in res.stdout
    errors = [line for line in res.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"failed: b (exit 3, see {exp}/log/b.log)" in errors[0]
    assert sorted(times) == ["a", "b", "c"]  # the other steps still ran to the end
    assert {t["omp"] for t in times.values()} == {"1"}
    assert _most_at_once(times) == min(3, len(os.sched_getaffinity(0)))
    assert sorted(p.name for p in (exp / ".done").iterdir()) == ["a", "c"]
    assert (exp / "log/a.log").read_text().strip() == "out-a"
    # a rerun skips the finished steps and runs the failed one
    exp, res, times = _queue(tmp_path, nproc=1, b_status=0)
    assert res.returncode == 0, res.stderr
    assert "skip a: done" in res.stderr and "skip c: done" in res.stderr
    assert sorted(times) == ["b"] and (exp / ".done/b").is_file()


def test_queued_steps_run_one_after_the_other_with_several_processes(tmp_path):
    """--nproc 2 (several GPUs / processes per step): the steps share nothing, so no parallelism,
    output on the terminal as before, and the caller's thread count."""
    exp, res, times = _queue(tmp_path, nproc=2, b_status=0, OMP_NUM_THREADS="3")
    assert res.returncode == 0, res.stderr
    assert _most_at_once(times) == 1
    assert {t["omp"] for t in times.values()} == {"3"}
    assert "out-a" in res.stdout and not (exp / "log").exists()
    assert sorted(p.name for p in (exp / ".done").iterdir()) == ["a", "b", "c"]


@pytest.mark.parametrize("args,error", [
    (["--criterion", "rnnt"], "--criterion rnnt: expected ctc or asg"),
    (["--criterion", "ctc", "--am-conf", str(ROOT / "conf/am/wsj_asg.yaml")], "--criterion ctc with the ASG config"),
])
def test_criterion_option_is_checked(mini_corpus, tmp_path, args, error):
    res = run_script([ROOT / "recipes/mini/run.sh", "--exp", tmp_path / "exp", "--profile", "tiny", "--nproc", "1",
                      "--stop-stage", "0", *args])
    assert res.returncode == 1 and error in res.stderr


def test_paper_profiles_train_with_asg():
    """timit's and wsj's paper profiles default to the paper's criterion and its configs; --criterion
    ctc gives the CTC configs (profiles are shell: sourced here as run.sh sources them)."""
    for recipe, conf in (("timit", "timit"), ("wsj", "wsj")):
        for given, want_crit, want_conf in (("", "asg", f"{conf}_asg.yaml"), ("ctc", "ctc", f"{conf}.yaml")):
            script = (f'root={ROOT}; criterion="{given}"; . {ROOT}/recipes/{recipe}/conf/profile_paper.sh; '
                      f'echo "$criterion $am_conf $replabel"')
            out = os.popen(f"bash -c '{script}'").read().split()
            assert out[0] == want_crit and out[1] == str(ROOT / "conf/am" / want_conf)
            assert out[2] == ("1" if recipe == "timit" else "2")


CMD_SCRIPT = """\
root={root}
. "$root/bin/log.sh"
. "$root/recipes/common/options.sh"
help_message="demo"
. "$root/bin/parse_options.sh" || exit 1
. "$root/recipes/common/lib.sh"
[ "$cmd" = slurm ] || check_cmd_options
for stage in pretrain extract; do
  launch_argv 2 "" "$stage" --x 1
  printf '[%s]' "${{launch_line[@]}}"; echo
done
echo "decode: $cmd_opts $decode_cmd_opts"
"""


def test_cmd_conf_file_sets_the_jobs_options_per_kind_and_the_command_line_wins(tmp_path):
    """conf/cmd.sh (here a user's copy through W2VTK_CMD_CONF), as Kaldi's cmd.sh: cmd and the sbatch
    options of every job and of each kind, sourced before the command line (which overrides it);
    a local try (--cmd local) drops the file's sbatch options, while ones given with it are an error."""
    script = tmp_path / "demo.sh"
    script.write_text(CMD_SCRIPT.format(root=ROOT))
    conf = tmp_path / "cmd.sh"
    conf.write_text('cmd=slurm\ncmd_opts="--partition speech"\ntrain_cmd_opts="--gres gpu:8"\n'
                    'extract_cmd_opts="--gres gpu:1"\ndecode_cmd_opts="--mem 16G"\n')
    res = run_script([script], W2VTK_CMD_CONF=str(conf))
    assert res.returncode == 0, res.stderr
    train, extract, decode = res.stdout.splitlines()
    # one word per option value, split later by launch.sh / w2vtk.cluster
    assert train == (f"[{ROOT}/bin/launch.sh][--cmd][slurm][--cmd-opts][--partition speech --gres gpu:8][--nproc][2]"
                     "[pretrain][--x][1]")
    assert extract == "[w2vtk][extract][--x][1][--cmd][slurm][--cmd-opts][--partition speech --gres gpu:1]"
    assert decode == "decode: --partition speech --mem 16G"
    res = run_script([script, "--train-cmd-opts", "--gres gpu:4"], W2VTK_CMD_CONF=str(conf))
    assert res.returncode == 0 and "[--cmd-opts][--partition speech --gres gpu:4][--nproc]" in res.stdout
    res = run_script([script, "--cmd", "local"], W2VTK_CMD_CONF=str(conf))
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [f"[{ROOT}/bin/launch.sh][--nproc][2][pretrain][--x][1]",
                                       f"[{ROOT}/bin/launch.sh][--nproc][2][extract][--x][1]", "decode:  "]
    res = run_script([script, "--cmd", "local", "--decode-cmd-opts", "--mem 8G"], W2VTK_CMD_CONF=str(conf))
    assert res.returncode == 1 and "are for --cmd slurm" in res.stderr
    conf.write_text("cmd=pbs\n")
    res = run_script([script], W2VTK_CMD_CONF=str(conf))
    assert res.returncode == 1 and f"--cmd pbs: expected local or slurm ({conf} or --cmd)" in res.stderr
    res = run_script([script], W2VTK_CMD_CONF=str(tmp_path / "none.sh"))
    assert res.returncode == 1 and "none.sh: no such file" in res.stderr
    # the shipped file (whatever a user set in it) defines every setting the recipes read
    shipped = "set -u; . conf/cmd.sh; echo \"$cmd|$cmd_opts|$train_cmd_opts|$extract_cmd_opts|$decode_cmd_opts\""
    res = run_script(["-c", shipped])
    assert res.returncode == 0 and res.stdout.count("|") == 4 and res.stdout.split("|")[0] in ("local", "slurm")
