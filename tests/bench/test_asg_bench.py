"""bench/asg.py runs and reports the ASG and CTC loss shares of a (tiny) WSJ-model step."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_asg_bench_reports_both_criteria(tmp_path):
    out = tmp_path / "asg.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench/asg.py"), "--batch", "2", "--seconds", "0.5",
                           "--runs", "1", "--threads", "1", "--json", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(out.read_text())
    for criterion in ("ctc", "asg"):
        row = figures[criterion]
        assert row["step_ms"] > 0 and 0 < row["loss_share"] < 1 and row["output_frames"] == 25
    assert "ASG step / CTC step" in proc.stdout
