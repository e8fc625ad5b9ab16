"""w2vtk.cluster without a scheduler: numbered local jobs and their logs, the Slurm array task's
script run by bash as Slurm would run it, option errors, and extract's array-job guards."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from w2vtk.cluster import CmdConfig, _batch_script, run_jobs
from w2vtk.errors import W2vtkError

# DIR JOB TEXT CODE: writes TEXT to DIR/r.JOB, prints "job JOB", exits with CODE ("JOB": the job number)
WRITE = ("import sys, pathlib; pathlib.Path(sys.argv[1], 'r.' + sys.argv[2]).write_text(sys.argv[3]); "
         "print('job', sys.argv[2]); sys.exit(int(sys.argv[4]))")


def test_local_jobs_run_in_order_with_one_log_each(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    run_jobs(CmdConfig(), 3, tmp_path / "log" / "w.JOB.log", [sys.executable, "-c", WRITE, str(out), "JOB", "JOB", "0"])
    assert sorted(p.name for p in out.iterdir()) == ["r.1", "r.2", "r.3"]
    assert (out / "r.2").read_text() == "2"
    log = (tmp_path / "log" / "w.2.log").read_text().splitlines()
    assert log[0].startswith("# ") and log[0].endswith("out 2 2 0") and "job 2" in log and log[-1] == "# ended (code 0)"


def test_a_failed_local_job_stops_the_array_naming_its_log(tmp_path):
    argv = [sys.executable, "-c", WRITE, str(tmp_path), "JOB", "x", "JOB"]  # exit code = JOB: job 1 fails
    with pytest.raises(W2vtkError, match=r"job 1 of 2 failed \(exit code 1\): see .*w\.1\.log"):
        run_jobs(CmdConfig(), 2, tmp_path / "w.JOB.log", argv)
    assert not (tmp_path / "r.2").exists()
    assert (tmp_path / "w.1.log").read_text().splitlines()[-1] == "# ended (code 1)"


def test_option_errors():
    with pytest.raises(W2vtkError, match="--cmd pbs: expected local or slurm"):
        CmdConfig.parse("pbs")
    with pytest.raises(W2vtkError, match="only for --cmd slurm"):
        CmdConfig.parse("local", "--time 10")
    with pytest.raises(W2vtkError, match="quotes are not supported"):
        CmdConfig.parse("slurm", "--partition 'gpu'")
    assert CmdConfig.parse("slurm", "--partition gpu --time 60").opts == ["--partition", "gpu", "--time", "60"]
    with pytest.raises(W2vtkError, match="must contain JOB in its file name"):
        run_jobs(CmdConfig(), 2, "/tmp/JOB/w.log", ["true"])
    with pytest.raises(W2vtkError, match="need at least one"):
        run_jobs(CmdConfig(), 0, "/tmp/w.JOB.log", ["true"])


def test_slurm_task_script_substitutes_job_and_keeps_quoting(tmp_path):
    # the script sbatch runs, run by bash with the variables Slurm sets: JOB as an argument and in
    # the log's name under a directory with a space (and "JOB" in it, left alone), an argument with
    # quotes and a dollar sign and an empty one passed through untouched
    odd = tmp_path / "a JOB dir"
    odd.mkdir()
    argv = [sys.executable, "-c", WRITE.replace("sys.argv[4]", "sys.argv[5]"), str(odd), "JOB", "it's $HOME \"x\"",
            "", "0"]
    script = tmp_path / "task.sh"
    script.write_text(_batch_script(2, odd / "log.JOB.txt", argv))
    env = dict(os.environ, SLURM_ARRAY_TASK_ID="2", SLURM_ARRAY_JOB_ID="77")
    assert subprocess.run(["bash", str(script)], env=env).returncode == 0
    assert (odd / "r.2").read_text() == "it's $HOME \"x\""
    log = (odd / "log.2.txt").read_text().splitlines()
    assert "a JOB dir 2" in log[0] and log[1].startswith("# slurm job 77_2 on ") and log[-1].startswith("# ended (code 0)")
    argv[-1] = "4"
    script.write_text(_batch_script(2, odd / "log.JOB.txt", argv))
    assert subprocess.run(["bash", str(script)], env=env).returncode == 4


def test_extract_job_needs_a_prepared_run(tmp_path, capsys):
    from cli_helpers import run_main

    (tmp_path / "wav.scp").write_text("u1 /nonexistent.wav\n")
    code, _, err = run_main(capsys, ["extract", "--type", "logmel", "--in", str(tmp_path / "wav.scp"),
                                     "--out", str(tmp_path / "f" / "feats.ark"), "--num-shards", "2", "--job", "3"])
    assert code != 0 and "--job 3: must be 1..2" in err
    code, _, err = run_main(capsys, ["extract", "--type", "logmel", "--in", str(tmp_path / "wav.scp"),
                                     "--out", str(tmp_path / "f" / "feats.ark"), "--num-shards", "2", "--job", "1"])
    assert code != 0 and "has no prepared run" in err
    code, _, err = run_main(capsys, ["extract", "--type", "logmel", "--in", str(tmp_path / "wav.scp"),
                                     "--out", str(tmp_path / "f" / "feats.ark"), "--cmd-opts", "--time 5"])
    assert code != 0 and "only for --cmd slurm" in err


def test_pending_task_ranges_and_ended_lines_are_read(tmp_path):
    from w2vtk.cluster import _ended_state, _task_range

    # scontrol shows the tasks not yet started as one record: ArrayTaskId=2-4, 1-9:4, 3-8%2
    assert _task_range("2-4") == [2, 3, 4] and _task_range("1-3,7") == [1, 2, 3, 7]
    assert _task_range("1-9:4") == [1, 5, 9] and _task_range("3-5%2") == [3, 4, 5] and _task_range("x-2") == []
    (tmp_path / "a.log").write_text("# cmd\nout\n# ended (code 0) at Sat\n")
    (tmp_path / "b.log").write_text("# cmd\n# ended (code 3) at Sat\nslurmstepd: late message\n")
    (tmp_path / "c.log").write_text("# cmd\nslurmstepd: error: *** JOB 7 CANCELLED AT 12:00 DUE TO TIME LIMIT ***\n")
    assert [_ended_state(tmp_path / f"{n}.log") for n in "abcd"] == ["COMPLETED", "FAILED", None, None]
