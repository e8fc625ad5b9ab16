"""bench/gpu.sh and bench/gpu.py: the GPU check stays runnable (``--smoke`` on the CPU, as CI runs it)
with nothing but torch, numpy and w2vtk's source importable, as on a bare GPU host."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Everything w2vtk depends on besides torch and numpy (a GPU host may have none of it).
NOT_ON_A_BARE_GPU_HOST = ["yaml", "rich", "typer", "click", "soundfile", "kaldiio", "sentencepiece", "kenlm",
                          "flashlight", "rapidfuzz", "kaldialign", "soxr", "kaldi_native_fbank", "matplotlib",
                          "espeakng_loader", "tensorboard", "pytest"]


def _bare_host_env(tmp_path: Path) -> dict:
    """An environment whose Python refuses to import any of NOT_ON_A_BARE_GPU_HOST (a sitecustomize hook)."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(textwrap.dedent(f"""
        import sys
        BLOCKED = {set(NOT_ON_A_BARE_GPU_HOST)!r}
        class _Bare:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{{name}} is not on this GPU host (bench test)")
        sys.meta_path.insert(0, _Bare())
    """))
    return {**os.environ, "PYTHONPATH": str(hook), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}


def test_smoke_run_writes_every_figure_with_only_torch_and_numpy(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(["bash", "bench/gpu.sh", "--smoke", str(out)], cwd=REPO, env=_bare_host_env(tmp_path),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "gpu.json").read_text())
    assert report["meta"]["complete"] is True and report["meta"]["smoke"] is True
    assert report["peaks_gflops"]["fp32"] > 0
    assert [(r["model"], r["precision"]) for r in report["pretrain"]] == [("base", "fp32"), ("large", "fp32")]
    assert [(r["model"], r["precision"]) for r in report["extract"]] == [("base", "fp32"), ("large", "fp32")]
    assert [(r["model"], r["precision"]) for r in report["am"]] == [("tiny", "fp32")]
    for row in report["pretrain"] + report["am"]:
        assert math.isfinite(row["step_ms"]) and row["step_ms"] > 0 and row["tflops"] > 0
    for row in report["extract"]:
        assert row["rtf_per_utterance"] > 0 and row["rtf_batched"] > 0 and row["batches"] >= 2
        # On the CPU a padded batch is computed utterance by utterance: the same numbers exactly.
        assert row["max_abs_deviation"] < 1e-5 and row["max_abs_value"] > 0
    assert "figures ->" in proc.stdout and (out / "figures.txt").read_text() == proc.stdout


def test_without_a_gpu_the_full_run_stops_in_one_line_before_writing(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "out"
    proc = subprocess.run(["bash", "bench/gpu.sh", str(out)], cwd=REPO, env={**os.environ, "PYTHON": sys.executable},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["bench/gpu.sh: torch sees no CUDA GPU (--smoke runs the CPU check)"]
    assert not out.exists()


def test_unknown_option_is_refused(tmp_path):
    proc = subprocess.run(["bash", "bench/gpu.sh", "--fast"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown option '--fast'" in proc.stderr


def test_the_benchmarked_am_is_conf_am_wsj(monkeypatch):
    from w2vtk.config import from_dict, read_yaml_file
    from w2vtk.models.am import AMConfig

    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import gpu

    wsj = from_dict(AMConfig, read_yaml_file(REPO / "conf/am/wsj.yaml")["model"])
    assert wsj == gpu.WSJ_AM
