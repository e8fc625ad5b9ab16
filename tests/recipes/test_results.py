"""w2vtk.results: stage 6's table from the decode dirs' score.json files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from recipe_helpers import ROOT, script_env
from w2vtk.errors import W2vtkError
from w2vtk.results import collect_results, main, markdown_table


def _score(exp: Path, am: str, set_name: str, **rates: float | None) -> None:
    d = exp / am / f"decode_{set_name}"
    d.mkdir(parents=True)
    metrics = {m: {"rate": r, "errors": 1, "ref_tokens": 10} for m, r in rates.items()}
    (d / "score.json").write_text(json.dumps({"metrics": metrics}))


@pytest.fixture
def exp(tmp_path: Path) -> Path:
    for am, base in (("am_fbank", 10.0), ("am_w2v", 5.0)):
        _score(tmp_path, am, "test_dev93", wer=base + 0.123, ler=base / 2)
        _score(tmp_path, am, "test_eval92", wer=base - 1, ler=base / 3)
    return tmp_path


def test_results_json_shape_and_markdown(exp, capsys):
    assert main(["--exp", str(exp), "--sets", "test_dev93", "test_eval92", "--metrics", "wer", "ler",
                 "--title", "WSJ", "--command", "run.sh --stage 6"]) == 0
    data = json.loads((exp / "results.json").read_text())
    assert data == {"logmel": {"test_dev93": {"wer": 10.12, "ler": 5.0}, "test_eval92": {"wer": 9.0, "ler": 3.33}},
                    "wav2vec": {"test_dev93": {"wer": 5.12, "ler": 2.5}, "test_eval92": {"wer": 4.0, "ler": 1.67}}}
    md = (exp / "RESULTS.md").read_text()
    assert "| test_dev93 | 10.12 | 5.12 | 5.00 | 2.50 |" in md
    assert "`run.sh --stage 6`" in md and "machine:" in md
    assert "WSJ" in capsys.readouterr().out


def test_table_columns_follow_metrics_then_systems():
    results = {"logmel": {"dev": {"per": 20.0}}, "wav2vec": {"dev": {"per": 15.5}}}
    assert markdown_table(results, ["dev"], ["per"]).splitlines() == [
        "| set | PER logmel | PER wav2vec |", "|---|---:|---:|", "| dev | 20.00 | 15.50 |"]


def test_missing_score_names_the_file_and_stage(exp):
    with pytest.raises(W2vtkError, match=r"am_fbank/decode_dev/score.json is missing .*stage 5"):
        collect_results(exp, ["dev"], ["wer"])


def test_missing_metric_and_unknown_metric(exp):
    with pytest.raises(W2vtkError, match="has no per rate"):
        collect_results(exp, ["test_dev93"], ["per"])
    with pytest.raises(W2vtkError, match="unknown metric 'cer'"):
        collect_results(exp, ["test_dev93"], ["cer"])


def test_cli_error_is_one_line_and_writes_nothing(exp):
    (exp / "am_w2v/decode_test_eval92/score.json").write_text("{not json")
    res = subprocess.run([sys.executable, "-m", "w2vtk.results", "--exp", str(exp), "--sets", "test_dev93",
                          "test_eval92"], capture_output=True, text=True, env=script_env(), cwd=ROOT)
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: results: ")
    assert "is not a w2vtk score.json" in res.stderr
    assert not (exp / "results.json").exists() and not (exp / "RESULTS.md").exists()


def test_one_system_alone(tmp_path):
    """--systems logmel (the recipe's baseline-only run): only am_fbank is read and reported."""
    _score(tmp_path, "am_fbank", "dev", wer=12.0, ler=6.0)
    assert main(["--exp", str(tmp_path), "--sets", "dev", "--systems", "logmel"]) == 0
    assert json.loads((tmp_path / "results.json").read_text()) == {"logmel": {"dev": {"wer": 12.0, "ler": 6.0}}}
    assert "| dev | 12.00 | 6.00 |" in (tmp_path / "RESULTS.md").read_text()
    with pytest.raises(W2vtkError, match="am_w2v/decode_dev/score.json is missing"):
        collect_results(tmp_path, ["dev"], ["wer"])
    with pytest.raises(W2vtkError, match="systems must be among logmel, wav2vec"):
        collect_results(tmp_path, ["dev"], ["wer"], ["mfcc"])
