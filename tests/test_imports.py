"""Import hygiene: the modules that must not pull in torch don't, and every module imports on its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Imported by processes that never run a network: the CLI before a command is chosen (`w2vtk --help`),
# decoder worker processes (one per core, each would pay torch's import time and memory), the mini
# corpus's synthesis workers, and the data / token / scoring / LM stages.
TORCH_FREE = ["w2vtk.cli", "w2vtk.decoding", "w2vtk.decoding.pool", "w2vtk.corpora.mini", "w2vtk.am.data",
              "w2vtk.data", "w2vtk.tokens", "w2vtk.scoring", "w2vtk.lm", "w2vtk.audio", "w2vtk.sources",
              "w2vtk.results"]


@pytest.mark.parametrize("module", TORCH_FREE)
def test_module_imports_without_torch(module):
    code = f"import sys, {module}; sys.exit(2 if 'torch' in sys.modules else 0)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, f"{module} imports torch" if proc.returncode == 2 else proc.stderr


def test_every_module_imports_first():
    """Each module imported first in a fresh interpreter: an import cycle shows up as an ImportError
    that a test suite importing in one fixed order can miss."""
    modules = sorted(".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
                     for p in (REPO / "w2vtk").rglob("*.py") if p.name != "__main__.py")
    # one interpreter per module, as many at once as there are cores
    code = ("import os, subprocess, sys\n"
            "from concurrent.futures import ThreadPoolExecutor\n"
            "def fails(m): return subprocess.run([sys.executable, '-c', f'import {m}'], capture_output=True).returncode\n"
            "with ThreadPoolExecutor(len(os.sched_getaffinity(0))) as pool:\n"
            "    codes = list(pool.map(fails, sys.argv[1:]))\n"
            "print(' '.join(m for m, c in zip(sys.argv[1:], codes) if c))")
    proc = subprocess.run([sys.executable, "-c", code, *modules], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "", proc.stdout + proc.stderr
