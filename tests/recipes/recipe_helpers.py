"""Helpers of the recipe tests: run bash scripts of the repository with w2vtk on PATH."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def script_env(**extra: str) -> dict[str, str]:
    """The environment of a recipe run: this interpreter's bin first (w2vtk, torchrun), one thread
    per process (two cores are shared by a stage and its workers), a fixed terminal width."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "1")
    # the shipped conf/cmd.sh is the user's to edit (cmd=slurm on their cluster): not the tests'
    env["W2VTK_CMD_CONF"] = str(ROOT / "tests" / "fixtures" / "cmd_local.sh")
    env["COLUMNS"] = "120"
    env.update(extra)
    return env


def run_script(args: list, *, cwd: Path | None = None, timeout: float = 600,
               **env: str) -> subprocess.CompletedProcess:
    """``bash ARGS...`` from the repository root; stdout and stderr captured as text."""
    return subprocess.run(["bash", *map(str, args)], cwd=cwd or ROOT, env=script_env(**env),
                          capture_output=True, text=True, timeout=timeout)
