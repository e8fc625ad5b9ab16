"""--cmd slurm against a real Slurm (bin/local_slurm.sh: Debian's slurm-wlm on this machine). Opt-in:
W2VTK_SLURM=1 with Slurm started (.ci/run does both). Extraction as an array job gives the bytes of a
local run; a cancelled job fails the stage naming its log and a --resume rerun finishes with the
same bytes; a job over its time limit is reported as TIMEOUT with its log."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the jobs and launch.sh find python, torchrun and w2vtk where this test's interpreter is, activated or not
BIN = str(Path(sys.executable).parent)


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "W2VTK_FAULT"}
    env.update(PATH=BIN + os.pathsep + env.get("PATH", ""), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
               W2VTK_CMD_CONF=str(ROOT / "tests" / "fixtures" / "cmd_local.sh"), **extra)
    return env

pytestmark = pytest.mark.skipif(
    os.environ.get("W2VTK_SLURM") != "1",
    reason="opt-in: W2VTK_SLURM=1 with a running Slurm (bash bin/local_slurm.sh start; .ci/run does both)")


def _extract(data: Path, out: Path, *extra: str, env: dict | None = None, **kw) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "w2vtk", "extract", "--type", "logmel", "--in", str(data), "--out-dir", str(out),
           "--num-shards", "3", "--num-workers", "0", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, env=_env(**(env or {})), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def _same_arks(a: Path, b: Path) -> None:
    for k in (1, 2, 3):
        assert (a / f"feats.{k}.ark").read_bytes() == (b / f"feats.{k}.ark").read_bytes(), k
    assert (a / "utt2num_frames").read_text() == (b / "utt2num_frames").read_text()
    assert (a / "feats.scp").read_text().replace(str(a), "X") == (b / "feats.scp").read_text().replace(str(b), "X")


def _jobs() -> dict[str, str]:
    res = subprocess.run(["bash", str(ROOT / "bin" / "local_slurm.sh"), "jobs"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return dict(line.split() for line in res.stdout.splitlines() if line.strip())


@pytest.fixture(scope="module")
def local_feats(mini_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("slurm_local") / "train_fbank"
    code, log = _finish(_extract(mini_corpus / "train", out))
    assert code == 0, log[-2000:]
    return out


def test_extract_array_job_writes_the_local_runs_bytes(mini_corpus, local_feats, tmp_path):
    out = tmp_path / "train_fbank"
    code, log = _finish(_extract(mini_corpus / "train", out, "--cmd", "slurm"))
    assert code == 0, log[-3000:]
    assert "sbatch --parsable --array=1-3" in log
    assert "(3 array jobs and the merge in" in log and "audio-s this run" not in log
    _same_arks(local_feats, out)
    for k in (1, 2, 3):
        text = (out / "log" / f"extract.{k}.log").read_text()
        assert f"--job {k}" in text and "# ended (code 0)" in text and f"shard {k} of 3:" in text
    job_id = next(line for line in (out / "log" / "extract.1.log").read_text().splitlines()
                  if line.startswith("# slurm job")).split()[3].split("_")[0]
    jobs = _jobs()
    assert [jobs.get(f"{job_id}_{k}") for k in (1, 2, 3)] == ["COMPLETED"] * 3


def test_tasks_slurm_no_longer_reports_take_their_state_from_their_logs(tmp_path):
    # a job id the controller does not know (as after MinJobAge without accounting): the tasks'
    # "# ended (code N)" lines settle them; without those lines the array is reported lost
    from w2vtk.cluster import wait_for_tasks
    from w2vtk.errors import W2vtkError

    (tmp_path / "t.1.log").write_text("# x\n# ended (code 0) at now\n")
    (tmp_path / "t.2.log").write_text("# x\n# ended (code 2) at now\n")
    assert wait_for_tasks("99999999", 2, tmp_path / "t.JOB.log") == {1: "COMPLETED", 2: "FAILED"}
    (tmp_path / "t.2.log").write_text("# x\n")
    with pytest.raises(W2vtkError, match=r"slurm array 99999999: Slurm no longer knows tasks \[2\].*t\.2\.log"):
        wait_for_tasks("99999999", 2, tmp_path / "t.JOB.log", lost_s=1.0)


def test_a_cancelled_job_fails_the_stage_and_a_rerun_resumes_to_the_same_bytes(mini_corpus, local_feats, tmp_path):
    out = tmp_path / "train_fbank"
    # job 2 hangs after writing its archive, before its record: cancelled there, it left a whole
    # archive that no record vouches for, which the rerun must redo, not trust
    proc = _extract(mini_corpus / "train", out, "--cmd", "slurm", env={"W2VTK_FAULT": "shard_done:1:stall#2"})
    log2 = out / "log" / "extract.2.log"
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "feats.2.ark").is_file():
        time.sleep(0.5)
    assert (out / "feats.2.ark").is_file(), "job 2 never reached its stall point"
    job_id = next(line for line in log2.read_text().splitlines() if line.startswith("# slurm job")).split()[3]
    subprocess.run(["scancel", job_id], check=True)
    code, log = _finish(proc)
    assert code != 0
    assert f"slurm job {job_id} (extract 2 of 3) ended CANCELLED" in log and str(log2) in log
    assert not (out / "feats.scp").exists()  # nothing that looks whole
    done_before = sorted(p.name for p in (out / ".feats.work").glob("shard.*.json"))
    assert done_before == ["shard.1.json", "shard.3.json"]
    code, log = _finish(_extract(mini_corpus / "train", out, "--cmd", "slurm", "--resume"))
    assert code == 0, log[-3000:]
    assert "shard 1 of 3 is already complete" in (out / "log" / "extract.1.log").read_text()
    assert "shard 2 of 3:" in log2.read_text()
    _same_arks(local_feats, out)
    assert _jobs()[job_id] == "CANCELLED"


@pytest.mark.skipif(shutil.which("sbatch") is None, reason="no sbatch")
def test_pretrain_as_two_slurm_tasks_gives_the_two_process_model(mini_corpus, tmp_path):
    # bin/launch.sh --cmd slurm: srun starts one launch.sh per task ("node"), each a one-process
    # torchrun meeting at a c10d rendezvous; on this one-machine Slurm both tasks share the node
    import torch

    from w2vtk.checkpoint import load_checkpoint

    args = ["pretrain", "--conf", str(ROOT / "conf/tiny.yaml"), "--data", str(mini_corpus / "train"),
            "optim.max_update=2", "optim.warmup_updates=1", "checkpoint.valid_every=2", "checkpoint.save_every=2",
            "log_every=1", "data.max_tokens=32000", "data.max_sample_size=16000"]
    env = _env()
    launch = ["bash", str(ROOT / "bin" / "launch.sh")]
    local = subprocess.run(launch + ["--nproc", "2"] + args + ["--exp", str(tmp_path / "local")], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=600)
    assert local.returncode == 0, local.stderr[-3000:]
    res = subprocess.run(launch + ["--cmd", "slurm", "--num-nodes", "2", "--nproc", "1", "--cmd-opts",
                                   "--nodes=1 --ntasks-per-node=2"] + args + ["--exp", str(tmp_path / "slurm")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "(pretrain) COMPLETED" in res.stderr
    logs = tmp_path / "slurm" / "log"
    assert "--rdzv-backend=c10d" in (logs / "pretrain.1.log").read_text()
    one, two = (load_checkpoint(tmp_path / d / "checkpoint_last.pt") for d in ("local", "slurm"))
    assert two["train_state"]["world_size"] == 2
    for k in one["model"]:
        assert torch.equal(one["model"][k], two["model"][k]), k
    # a training job that fails is reported with its logs (a config error on every rank)
    bad = subprocess.run(launch + ["--cmd", "slurm", "--nproc", "1"] + args + ["--exp", str(tmp_path / "bad"),
                                                                               "optim.lr=-1"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "(pretrain) ended FAILED: see " + str(tmp_path / "bad" / "log" / "pretrain.0.log") \
        in bad.stderr, bad.stderr[-2000:]


@pytest.fixture(scope="module")
def time_limited_extraction(mini_corpus, tmp_path_factory):
    """An extraction under ``--time 1`` whose job 3 stalls, started in the background by the first
    test that asks: Slurm's limits are whole minutes, so the kill comes 60-90 s after the start,
    time that the tiny mini test's local runs (no Slurm) fill with work."""
    out = tmp_path_factory.mktemp("timeout") / "train_fbank"
    proc = _extract(mini_corpus / "train", out, "--cmd", "slurm", "--cmd-opts", "--time 1",
                    env={"W2VTK_FAULT": "shard_done:1:stall#3"})
    done: list = []

    def finish() -> tuple[int, str, Path]:
        """(exit code, output, out dir), waiting for it the first time."""
        if not done:
            done.extend([*_finish(proc, timeout=400), out])
        return tuple(done)
    yield finish
    if proc.poll() is None:
        proc.kill()


def test_tiny_mini_recipe_under_slurm_gives_the_local_results(tmp_path, time_limited_extraction):
    # two local runs agree with each other (the wav2vec path included), and the --cmd slurm run
    # (pre-training and the AMs as Slurm jobs, every extraction, emissions, tuning and decode as an
    # array) writes the same results.json; every job it submitted is listed COMPLETED by
    # bin/local_slurm.sh jobs. (time_limited_extraction: started now, checked by the next test.)
    env = _env()

    def recipe(exp: Path, *extra: str) -> subprocess.Popen:
        return subprocess.Popen(["bash", str(ROOT / "recipes" / "mini" / "run.sh"), "--exp", str(exp), "--profile",
                                 "tiny", "--nproc", "1", "--stop-stage", "6", *extra], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    locals_ = [recipe(tmp_path / f"local{i}") for i in (1, 2)]
    for proc in locals_:
        code, log = _finish(proc, timeout=900)
        assert code == 0, log[-3000:]
    first = (tmp_path / "local1" / "results.json").read_text()
    assert first == (tmp_path / "local2" / "results.json").read_text()
    time_limited_extraction()  # over by now: its jobs are not this run's
    before = {int(j.split("_")[0]) for j in _jobs()}
    code, log = _finish(recipe(tmp_path / "slurm", "--cmd", "slurm"), timeout=900)
    assert code == 0, log[-3000:]
    assert (tmp_path / "slurm" / "results.json").read_text() == first
    ours = {j: st for j, st in _jobs().items() if int(j.split("_")[0]) > max(before, default=0)}
    # pre-training, 6 extraction arrays (2 systems x 3 sets), 4 AMs (2 systems x 2 seeds), 8 emissions
    # (4 AMs x dev and test), 2 tunings, 8 decodes
    assert len(ours) >= 29 and set(ours.values()) == {"COMPLETED"}, ours
    assert (tmp_path / "slurm" / "data" / "dev_w2v" / "log" / "extract.1.log").is_file()
    tune_log = (tmp_path / "slurm" / "am_w2v_s1" / "decode_dev" / "log" / "tune.1.log").read_text()
    assert "tune job 1 of 1: 2 trials, 0 already done" in tune_log
    emissions_log = (tmp_path / "slurm" / "am_fbank_s2" / "decode_test" / "log" / "emissions.1.log").read_text()
    assert "emissions job 1 of 1:" in emissions_log and "# ended (code 0)" in emissions_log
    decode_log = (tmp_path / "slurm" / "am_fbank_s2" / "decode_test" / "log" / "decode.1.log").read_text()
    assert "decode job 1 of 1:" in decode_log and "# ended (code 0)" in decode_log


def test_a_job_over_its_time_limit_is_reported_with_its_log(time_limited_extraction):
    code, log, out = time_limited_extraction()
    log3 = out / "log" / "extract.3.log"
    assert code != 0 and "(extract 3 of 3) ended TIMEOUT: see " + str(log3) in log, log[-2000:]
    assert "DUE TO TIME LIMIT" in log3.read_text()
