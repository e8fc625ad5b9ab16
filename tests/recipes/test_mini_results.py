"""The mini recipe's committed figures, and fresh runs checked against them.

- In CI: the log-mel system alone (``--systems logmel``: no pre-training, about 3 minutes on 2
  cores) with the default ``mini`` profile: a well-formed results.json and a log-mel test WER no
  worse than 1.5 x the committed figure.
- Opt-in, the whole recipe (both systems, ~12 minutes on 2 cores, most of CI's test budget):
  ``W2VTK_MINI_E2E=1 python -m pytest tests/recipes/test_mini_results.py``.
"""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

MINI = Path(__file__).resolve().parents[2] / "recipes" / "mini"


def _committed() -> dict:
    return json.loads((MINI / "results.json").read_text())


def test_committed_results_json_is_well_formed_and_matches_results_md():
    results = _committed()
    assert set(results) == {"logmel", "wav2vec"}
    table = (MINI / "RESULTS.md").read_text()
    for feature, sets in results.items():
        assert set(sets) == {"dev", "test"}
        for name, scores in sets.items():
            assert set(scores) == {"wer", "ler"}
            for value in scores.values():
                assert isinstance(value, float) and 0.0 <= value <= 200.0
    for name in ("dev", "test"):
        row = re.search(rf"^\| {name} \|(.*)\|$", table, re.M)
        assert row, f"RESULTS.md has no row for {name}"
        cells = [float(c) for c in row.group(1).split("|")]
        assert cells == [results["logmel"][name]["wer"], results["wav2vec"][name]["wer"],
                         results["logmel"][name]["ler"], results["wav2vec"][name]["ler"]]


@pytest.mark.slow
def test_fresh_logmel_only_mini_run_within_1_5x_of_committed(tmp_path):
    exp = tmp_path / "exp"
    proc = subprocess.run(["bash", str(MINI / "run.sh"), "--exp", str(exp), "--systems", "logmel"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    fresh = json.loads((exp / "results.json").read_text())
    assert list(fresh) == ["logmel"] and list(fresh["logmel"]) == ["dev", "test"]
    assert all(sorted(row) == ["ler", "wer"] for row in fresh["logmel"].values())
    assert fresh["logmel"]["test"]["wer"] <= 1.5 * _committed()["logmel"]["test"]["wer"]
    # the baseline alone: no pre-training and no wav2vec features were made
    assert not (exp / "w2v").exists() and not list((exp / "data").glob("*_w2v"))
    assert "| test |" in (exp / "RESULTS.md").read_text()


@pytest.mark.skipif(os.environ.get("W2VTK_MINI_E2E") != "1",
                    reason="full mini recipe (~12 min on 2 cores); set W2VTK_MINI_E2E=1")
def test_fresh_mini_run_logmel_wer_within_1_5x_of_committed(tmp_path):
    proc = subprocess.run(["bash", str(MINI / "run.sh"), "--exp", str(tmp_path / "exp")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    fresh = json.loads((tmp_path / "exp" / "results.json").read_text())
    committed = _committed()
    assert set(fresh) == set(committed)
    assert fresh["logmel"]["test"]["wer"] <= 1.5 * committed["logmel"]["test"]["wer"]
