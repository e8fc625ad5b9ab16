"""Kaldi-style job arrays (``run.pl`` / ``slurm.pl``): run one command as N numbered jobs, locally or
as a Slurm array job, each with its own log, and fail with the log path of the first job that did
not finish.

``argv`` and the log path carry the placeholder ``JOB``, replaced by 1..N as in Kaldi's
``$cmd JOB=1:N exp/log/extract.JOB.log ...``: an argument that is exactly ``JOB``, and ``JOB`` in the
log's file name (not in its directories). A log starts with the command and ends with
``# ended (code N)``; a job killed before that line (cancelled, out of time, its node lost) has no
such line, and Slurm's own message about it lands in the same log (``sbatch -o``).

* ``local``: the jobs run one after another in this process's environment.
* ``slurm``: one ``sbatch --wait --array=1-N`` (Slurm's own tools, no scheduler of ours). The jobs
  inherit the environment (``--export=ALL``, so the same thread settings as a local run) and the
  working directory; extra ``sbatch`` options (partition, time, memory, GPUs) come from
  ``CmdConfig.opts``. When the array ends, each task's state is read with ``scontrol show job``
  (``sacct`` where accounting keeps it), so a job that timed out is reported as TIMEOUT, with its
  log. Interrupting the waiting process (Ctrl-C, SIGTERM) cancels the array (``scancel``).

What a rerun redoes is the stage's business: the stages run as arrays (``extract``) skip the jobs
whose output is complete.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

from w2vtk.errors import W2vtkError
from w2vtk.io import atomic_write_text

PLACEHOLDER = "JOB"


@dataclass
class CmdConfig:
    """Where numbered jobs run: ``backend`` local | slurm; ``opts`` extra ``sbatch`` options."""

    backend: Literal["local", "slurm"] = "local"
    opts: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, backend: str, opts: str = "") -> "CmdConfig":
        """From ``--cmd local|slurm`` and ``--cmd-opts "--partition gpu --time 60"`` (words split on
        spaces, no quoting: as bin/launch.sh and the recipes read them)."""
        if backend not in ("local", "slurm"):
            raise W2vtkError(f"--cmd {backend}: expected local or slurm")
        words = (opts or "").split()
        if any(c in w for w in words for c in "'\"\\"):
            raise W2vtkError(f"--cmd-opts {opts!r}: quotes are not supported (words separated by spaces)")
        if words and backend == "local":
            raise W2vtkError(f"--cmd-opts {opts!r}: only for --cmd slurm")
        return cls(backend, words)


def job_path(pattern: str | Path, job: int) -> Path:
    """The log of job ``job``: JOB replaced in the file name."""
    pattern = Path(pattern)
    return pattern.with_name(pattern.name.replace(PLACEHOLDER, str(job)))


def _job_argv(argv: Sequence[str], job: int) -> list[str]:
    return [str(job) if str(a) == PLACEHOLDER else str(a) for a in argv]


def _check(num_jobs: int, log_pattern: str | Path, argv: Sequence[str]) -> None:
    if num_jobs < 1:
        raise W2vtkError(f"{num_jobs} jobs: need at least one")
    if PLACEHOLDER not in Path(log_pattern).name:
        raise W2vtkError(f"log path {log_pattern} must contain {PLACEHOLDER} in its file name (one log per job)")
    if not argv:
        raise W2vtkError("no command to run")


def run_jobs(cmd: CmdConfig, num_jobs: int, log_pattern: str | Path, argv: Sequence[str], *,
             name: str = "w2vtk") -> None:
    """Run ``argv`` as jobs 1..``num_jobs`` (``JOB`` replaced in ``argv`` and ``log_pattern``);
    return when all finished with code 0, else raise W2vtkError naming the first failed job's log."""
    _check(num_jobs, log_pattern, argv)
    Path(str(log_pattern)).parent.mkdir(parents=True, exist_ok=True)
    if cmd.backend == "local":
        _run_local(num_jobs, log_pattern, argv)
    elif cmd.backend == "slurm":
        _run_slurm(cmd, num_jobs, log_pattern, argv, name)
    else:
        raise W2vtkError(f"--cmd {cmd.backend}: expected local or slurm")


def _run_local(num_jobs: int, log_pattern: str | Path, argv: Sequence[str]) -> None:
    for job in range(1, num_jobs + 1):
        log = job_path(log_pattern, job)
        words = _job_argv(argv, job)
        with open(log, "w", encoding="utf-8") as fh:
            fh.write(f"# {shlex.join(words)}\n")
            fh.flush()
            code = subprocess.run(words, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
            fh.write(f"# ended (code {code})\n")
        if code != 0:
            raise W2vtkError(f"job {job} of {num_jobs} failed (exit code {code}): see {log}")


def _quote_job(word: str) -> str:
    """``word`` quoted for bash; exactly ``JOB`` becomes ``"${JOB}"``."""
    return '"${JOB}"' if word == PLACEHOLDER else shlex.quote(word)


def _batch_script(num_jobs: int, log_pattern: str | Path, argv: Sequence[str]) -> str:
    """The array task's script: the command with JOB = $SLURM_ARRAY_TASK_ID, logged as locally."""
    words = " ".join(_quote_job(str(a)) for a in argv)
    log_pattern = Path(log_pattern)
    head, _, tail = log_pattern.name.partition(PLACEHOLDER)
    log = shlex.quote(str(log_pattern.parent / head)) + '"${JOB}"' + (shlex.quote(tail) if tail else "")
    return "\n".join([
        "#!/usr/bin/env bash",
        "# written by w2vtk (w2vtk/cluster.py): one task of a Slurm array",
        "JOB=$SLURM_ARRAY_TASK_ID",
        f"log={log}",
        f"cmd=({words})",
        # Slurm opened the log for its own messages (sbatch -o); the command's output follows them
        'echo "# ${cmd[*]}" >> "$log"',
        'echo "# slurm job ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID} on $(hostname) at $(date)" >> "$log"',
        '"${cmd[@]}" >> "$log" 2>&1 < /dev/null',
        "code=$?",
        'echo "# ended (code $code) at $(date)" >> "$log"',
        "exit $code",
        "",
    ])


def _run_slurm(cmd: CmdConfig, num_jobs: int, log_pattern: str | Path, argv: Sequence[str], name: str) -> None:
    if shutil.which("sbatch") is None:
        raise W2vtkError("--cmd slurm: sbatch is not on PATH (install Slurm's clients, or try "
                         "bin/local_slurm.sh start for a one-machine Slurm)")
    log_pattern = Path(str(log_pattern)).absolute()
    script = log_pattern.parent / "q" / f"{name}.sh"
    script.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(script, _batch_script(num_jobs, log_pattern, argv))
    for job in range(1, num_jobs + 1):  # a rerun's logs start afresh
        job_path(log_pattern, job).unlink(missing_ok=True)
    # '%' is Slurm's filename-pattern escape: %% for a literal one, %a for the array index
    out_pattern = str(log_pattern.parent).replace("%", "%%") + "/" + \
        log_pattern.name.replace("%", "%%").replace(PLACEHOLDER, "%a")
    sbatch = ["sbatch", "--wait", "--parsable", f"--array=1-{num_jobs}", f"--job-name={name}",
              "--export=ALL", f"--chdir={os.getcwd()}", "-o", out_pattern, *cmd.opts, str(script)]
    print(f"{shlex.join(sbatch)}", file=sys.stderr, flush=True)
    code, job_id, err = _submit_and_wait(sbatch)
    if not job_id:
        raise W2vtkError(f"sbatch refused the array job: {' '.join(err.split())[:300]}")
    states = task_states(job_id, num_jobs)
    bad = [(task, st) for task, st in sorted(states.items()) if st != "COMPLETED"]
    missing = [t for t in range(1, num_jobs + 1) if t not in states]
    if code == 0 and not bad:
        return
    if bad:
        task, st = bad[0]
        raise W2vtkError(f"slurm job {job_id}_{task} ({name} {task} of {num_jobs}) ended {st}: see "
                         f"{job_path(log_pattern, task)}"
                         + (f" ({len(bad) - 1} more jobs did not complete)" if len(bad) > 1 else ""))
    task = missing[0] if missing else 1
    raise W2vtkError(f"slurm array {job_id} ({name}) failed (sbatch exit code {code}): see "
                     f"{job_path(log_pattern, task)}")


def _submit_and_wait(sbatch: list[str]) -> tuple[int, str, str]:
    """Run ``sbatch --wait --parsable``: (exit code, job id, stderr). The id is read as soon as the
    job is submitted, so an interrupt (Ctrl-C, SIGTERM) cancels the job instead of orphaning it."""
    proc = subprocess.Popen(sbatch, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    job_id = proc.stdout.readline().strip().split(";")[0]
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
        raise KeyboardInterrupt

    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        signal.signal(signal.SIGTERM, on_term)
    try:
        _, err = proc.communicate()
    except BaseException:
        if job_id:
            subprocess.run(["scancel", job_id], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            print(f"cancelled slurm job {job_id}", file=sys.stderr, flush=True)
        proc.kill()
        raise
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    return proc.returncode, job_id, err


UNFINISHED = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING")


def task_states(job_id: str, num_jobs: int, settle_s: float = 60.0) -> dict[int, str]:
    """Final state of each task of array ``job_id`` (COMPLETED, FAILED, TIMEOUT, CANCELLED, ...).
    ``sbatch --wait`` can return while a task is still COMPLETING (its epilog): read again, for up
    to ``settle_s`` seconds, until every task has a final state."""
    deadline = time.monotonic() + settle_s
    while True:
        states = _read_states(job_id)
        if not any(st.split("+")[0] in UNFINISHED for st in states.values()) or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


def _read_states(job_id: str) -> dict[int, str]:
    """``scontrol show job`` while the controller still holds the job (MinJobAge), else ``sacct``."""
    states: dict[int, str] = {}
    res = subprocess.run(["scontrol", "-o", "show", "job", job_id], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    for line in res.stdout.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        task, state = fields.get("ArrayTaskId"), fields.get("JobState")
        if task and task.isdigit() and state:
            states[int(task)] = state
    if states:
        return states
    res = subprocess.run(["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "JobID,State"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    for line in res.stdout.splitlines():
        jid, _, state = line.partition("|")
        _, _, task = jid.partition("_")
        if task.isdigit():
            states[int(task)] = state.split()[0] if state else ""
    return states
