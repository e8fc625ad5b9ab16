"""Kaldi-style job arrays (``run.pl`` / ``slurm.pl``): run one command as N numbered jobs, locally or
as a Slurm array job, each with its own log, and fail with the log path of the first job that did
not finish.

``argv`` and the log path carry the placeholder ``JOB``, replaced by 1..N as in Kaldi's
``$cmd JOB=1:N exp/log/extract.JOB.log ...``: an argument that is exactly ``JOB``, and ``JOB`` in the
log's file name (not in its directories). A log starts with the command and ends with
``# ended (code N)``; a job killed before that line (cancelled, out of time, its node lost) has no
such line, and Slurm's own message about it lands in the same log (``sbatch -o``).

* ``local``: the jobs run one after another in this process's environment.
* ``slurm``: one ``sbatch --array=1-N`` (Slurm's own tools, no scheduler of ours). The jobs
  inherit the environment (``--export=ALL``, so the same thread settings as a local run) and the
  working directory; extra ``sbatch`` options (partition, time, memory, GPUs) come from
  ``CmdConfig.opts``. The tasks' states are then read with ``scontrol show job`` (``sacct`` where
  accounting keeps them) every 0.5 s at first, every 5 s at most, until each is final, so a job
  that timed out is reported as TIMEOUT, with its log. (``sbatch --wait`` polls every 2, 8, then
  32 s on a cluster with the default MinJobAge: half a minute lost per array of short jobs, and
  a decode runs three.) Interrupting the waiting process (Ctrl-C, SIGTERM) cancels the array
  (``scancel``).

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
    sbatch = ["sbatch", "--parsable", f"--array=1-{num_jobs}", f"--job-name={name}",
              "--export=ALL", f"--chdir={os.getcwd()}", "-o", out_pattern, *cmd.opts, str(script)]
    print(f"{shlex.join(sbatch)}", file=sys.stderr, flush=True)
    res = subprocess.run(sbatch, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    job_id = res.stdout.strip().split(";")[0]
    if res.returncode != 0 or not job_id.isdigit():
        raise W2vtkError(f"sbatch refused the array job: {' '.join((res.stderr or res.stdout).split())[:300]}")
    states = _wait_cancelling_on_interrupt(job_id, num_jobs, log_pattern)
    bad = [(task, st) for task, st in sorted(states.items()) if st != "COMPLETED"]
    if bad:
        task, st = bad[0]
        raise W2vtkError(f"slurm job {job_id}_{task} ({name} {task} of {num_jobs}) ended {st}: see "
                         f"{job_path(log_pattern, task)}"
                         + (f" ({len(bad) - 1} more jobs did not complete)" if len(bad) > 1 else ""))


def _wait_cancelling_on_interrupt(job_id: str, num_jobs: int, log_pattern: Path) -> dict[int, str]:
    """:func:`wait_for_tasks`; an interrupt (Ctrl-C, SIGTERM) meanwhile ``scancel``s the array
    instead of leaving it to run orphaned."""
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
        raise KeyboardInterrupt

    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        signal.signal(signal.SIGTERM, on_term)
    try:
        return wait_for_tasks(job_id, num_jobs, log_pattern)
    except W2vtkError:  # the array is unknown to Slurm: nothing left to cancel
        raise
    except BaseException:
        subprocess.run(["scancel", job_id], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(f"cancelled slurm job {job_id}", file=sys.stderr, flush=True)
        raise
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


UNFINISHED = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING",
              "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD")
# states a task may pass through on its way back to the queue (requeue after preemption or a lost
# node): final only when they last
MAYBE_REQUEUED = ("PREEMPTED", "NODE_FAIL", "BOOT_FAIL")


def wait_for_tasks(job_id: str, num_jobs: int, log_pattern: str | Path | None = None, *,
                   first_s: float = 0.5, most_s: float = 5.0, lost_s: float = 120.0,
                   requeue_s: float = 30.0) -> dict[int, str]:
    """Final state of each task 1..``num_jobs`` of array ``job_id`` (COMPLETED, FAILED, TIMEOUT,
    CANCELLED, ...), read every ``first_s`` seconds at first, 1.5 times longer each time, every
    ``most_s`` at most. A final state is kept once seen (the controller forgets finished tasks
    after MinJobAge while others still run). A task Slurm no longer reports and no accounting
    keeps takes its state from its log's last line (``# ended (code N)``: COMPLETED or FAILED).
    PREEMPTED / NODE_FAIL / BOOT_FAIL count only after ``requeue_s`` seconds (a requeued task
    passes through them). If Slurm answers that it does not know the array for ``lost_s`` seconds
    and the logs do not settle every task, the array is reported lost (W2vtkError); a controller
    that does not answer is waited for."""
    delay, unknown_since = first_s, None
    final: dict[int, str] = {}
    first_seen: dict[tuple[int, str], float] = {}
    while True:
        states, known = _read_states(job_id, num_jobs)
        now = time.monotonic()
        for t, st in states.items():
            base = st.split("+")[0]
            if t in final or base in UNFINISHED:
                continue
            if base in MAYBE_REQUEUED and now - first_seen.setdefault((t, base), now) < requeue_s:
                continue
            final[t] = st
        if log_pattern is not None:  # tasks Slurm does not report: their logs may say how they ended
            for t in range(1, num_jobs + 1):
                if t not in final and t not in states and (ended := _ended_state(job_path(log_pattern, t))):
                    final[t] = ended
        open_tasks = [t for t in range(1, num_jobs + 1) if t not in final]
        if not open_tasks:
            return final
        if known is not False or any(t in states for t in open_tasks):
            unknown_since = None
        elif unknown_since is None:
            unknown_since = now
        elif now - unknown_since > lost_s:
            raise W2vtkError(f"slurm array {job_id}: Slurm no longer knows tasks {open_tasks} and their logs "
                             f"do not say how they ended (see {job_path(log_pattern, open_tasks[0])})"
                             if log_pattern is not None else f"slurm array {job_id}: no longer known to Slurm")
        time.sleep(delay)
        delay = min(delay * 1.5, most_s)


def _ended_state(log: Path) -> str | None:
    """COMPLETED / FAILED from the ``# ended (code N)`` line the task script appends; None without it."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines[-5:]):
        if line.startswith("# ended (code "):
            return "COMPLETED" if line.startswith("# ended (code 0)") else "FAILED"
    return None


def _task_range(spec: str) -> list[int]:
    """Task numbers of ``1-3,5`` or ``2-10:2`` (scontrol's pending part of an array); [] if odd."""
    out: list[int] = []
    for part in spec.split("%")[0].split(","):
        rng, _, step = part.partition(":")
        lo, _, hi = rng.partition("-")
        if not (lo.isdigit() and (hi or lo).isdigit() and (step or "1").isdigit()):
            return []
        out.extend(range(int(lo), int(hi or lo) + 1, max(1, int(step or 1))))
    return out


def _read_states(job_id: str, num_jobs: int) -> tuple[dict[int, str], bool | None]:
    """(task -> state, whether Slurm knows the job). ``scontrol show job`` while the controller
    holds the job (MinJobAge); ``sacct`` when it does not report all ``num_jobs`` tasks. A record of tasks not
    yet split off the array (``ArrayTaskId=2-4``) gives each of them the record's state. Known:
    True / False, or None when the controller did not answer (down, timed out)."""
    states: dict[int, str] = {}
    res = subprocess.run(["scontrol", "-o", "show", "job", job_id], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    known: bool | None = True if res.returncode == 0 else (False if "invalid job id" in res.stderr.lower() else None)
    for line in res.stdout.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        task, state = fields.get("ArrayTaskId"), fields.get("JobState")
        if task and state:
            for t in ([int(task)] if task.isdigit() else _task_range(task)):
                states.setdefault(t, state)
    if len(states) >= num_jobs:
        return states, known
    res = subprocess.run(["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "JobID,State"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    for line in res.stdout.splitlines():
        jid, _, state = line.partition("|")
        _, _, task = jid.partition("_")
        for t in ([int(task)] if task.isdigit() else _task_range(task.strip("[]"))):
            if state:
                states.setdefault(t, state.split()[0])
                known = True
    return states, known
