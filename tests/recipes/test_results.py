"""w2vtk.results: stage 6's table from the decode dirs' score.json files (one AM per system, or one per
AM seed: mean, min, max) and stage 7's study curves (curves.json, PNG plots, a RESULTS.md section)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import run_main
from recipe_helpers import ROOT, script_env
from w2vtk.errors import W2vtkError
from w2vtk.curves import collect_curves, plot_curves
from w2vtk.results import collect_results, markdown_table, report_results


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
    assert report_results(exp, ["test_dev93", "test_eval92"], ["wer", "ler"], title="WSJ", command="run.sh --stage 6")
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
    res = subprocess.run([sys.executable, "-m", "w2vtk", "results", str(exp), "--sets", "test_dev93 test_eval92"], capture_output=True, text=True, env=script_env(), cwd=ROOT)
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: results: ")
    assert "is not a w2vtk score.json" in res.stderr
    assert not (exp / "results.json").exists() and not (exp / "RESULTS.md").exists()


def test_one_system_alone(tmp_path):
    """--systems logmel (the recipe's baseline-only run): only am_fbank is read and reported."""
    _score(tmp_path, "am_fbank", "dev", wer=12.0, ler=6.0)
    report_results(tmp_path, ["dev"], ["wer", "ler"], ["logmel"])
    assert json.loads((tmp_path / "results.json").read_text()) == {"logmel": {"dev": {"wer": 12.0, "ler": 6.0}}}
    assert "| dev | 12.00 | 6.00 |" in (tmp_path / "RESULTS.md").read_text()
    with pytest.raises(W2vtkError, match="am_w2v/decode_dev/score.json is missing"):
        collect_results(tmp_path, ["dev"], ["wer"])
    with pytest.raises(W2vtkError, match="systems must be among logmel, wav2vec"):
        collect_results(tmp_path, ["dev"], ["wer"], ["mfcc"])


def test_unseeded_results_md_is_unchanged(exp):
    """Without seeds RESULTS.md keeps its earlier text exactly (only the stamp and machine vary), plus
    the link to stage 6's report (issue 14)."""
    report_results(exp, ["test_dev93"], ["wer"], title="T")
    md = (exp / "RESULTS.md").read_text()
    md = "\n".join("- made X" if line.startswith("- made ") else "- machine: X" if line.startswith("- machine: ")
                   else line for line in md.split("\n"))
    assert md == (
        "# T\n\nError rates in percent (WER); log-mel = AM on 80 log-mel features (`am_fbank`), wav2vec = AM on "
        "wav2vec features (`am_w2v`; the layer is in its feats.yaml, `c` by default).\n\n"
        "| set | WER logmel | WER wav2vec |\n|---|---:|---:|\n| test_dev93 | 10.12 | 5.12 |\n\n"
        "## Provenance\n\n- made X\n- machine: X\n"
        "- plots (training curves, decoder tuning, results): [report/index.html](report/index.html) "
        "(`w2vtk report`)\n"
        "- scores: `am_fbank/decode_test_dev93/score.json`, `am_w2v/decode_test_dev93/score.json`\n")


# ------------------------------------------------------------------ AM seeds

# (wer, ler) of seeds 1, 2, 3 on dev; test adds 1 to each
SEED_RATES = {"am_fbank": [(10.111, 5.0), (12.222, 6.0), (14.999, 7.5)],
              "am_w2v": [(20.0, 9.0), (30.0, 8.0), (25.0, 10.004)]}


@pytest.fixture
def seeded(tmp_path: Path) -> Path:
    for am, rates in SEED_RATES.items():
        for seed, (wer, ler) in enumerate(rates, start=1):
            _score(tmp_path, f"{am}_s{seed}", "dev", wer=wer, ler=ler)
            _score(tmp_path, f"{am}_s{seed}", "test", wer=wer + 1, ler=ler + 1)
    return tmp_path


def test_seeded_results_shape_means_and_ranges(seeded):
    results = collect_results(seeded, ["dev", "test"], ["wer", "ler"], seeds=[1, 2, 3])
    assert list(results) == ["logmel", "wav2vec"]
    dev = results["logmel"]["dev"]
    assert list(dev) == ["wer", "ler", "wer_min", "wer_max", "ler_min", "ler_max", "seeds"]
    # mean of the unrounded rates: (10.111 + 12.222 + 14.999) / 3 = 12.444
    assert dev["wer"] == 12.44 and dev["wer_min"] == 10.11 and dev["wer_max"] == 15.0
    assert dev["ler"] == 6.17 and dev["ler_min"] == 5.0 and dev["ler_max"] == 7.5
    assert dev["seeds"] == {"1": {"wer": 10.11, "ler": 5.0}, "2": {"wer": 12.22, "ler": 6.0},
                            "3": {"wer": 15.0, "ler": 7.5}}
    w2v_test = results["wav2vec"]["test"]
    assert (w2v_test["wer"], w2v_test["wer_min"], w2v_test["wer_max"]) == (26.0, 21.0, 31.0)
    assert (w2v_test["ler"], w2v_test["ler_min"], w2v_test["ler_max"]) == (10.0, 9.0, 11.0)
    assert list(w2v_test["seeds"]) == ["1", "2", "3"]


def test_seeded_results_follow_metrics_and_seed_order(seeded):
    results = collect_results(seeded, ["dev"], ["ler"], systems=["wav2vec"], seeds=[3, 1])
    assert results == {"wav2vec": {"dev": {"ler": 9.5, "ler_min": 9.0, "ler_max": 10.0,
                                           "seeds": {"3": {"ler": 10.0}, "1": {"ler": 9.0}}}}}


def test_seeded_cli_writes_json_and_both_tables(seeded, capsys):
    report_results(seeded, ["dev", "test"], ["wer", "ler"], seeds=[1, 2, 3], title="Mini")
    data = json.loads((seeded / "results.json").read_text())
    assert data == collect_results(seeded, ["dev", "test"], ["wer", "ler"], seeds=[1, 2, 3])
    md = (seeded / "RESULTS.md").read_text()
    assert "| set | WER logmel | WER wav2vec | LER logmel | LER wav2vec |" in md
    assert "| dev | 12.44 (10.11-15.00) | 25.00 (20.00-30.00) | 6.17 (5.00-7.50) | 9.00 (8.00-10.00) |" in md
    assert "| set | seed | WER logmel | WER wav2vec | LER logmel | LER wav2vec |" in md
    assert "| dev | 2 | 12.22 | 30.00 | 6.00 | 8.00 |" in md
    assert "| test | 3 | 16.00 | 26.00 | 8.50 | 11.00 |" in md
    assert "3 AM seeds (1, 2, 3)" in md
    out = capsys.readouterr().out
    assert "every seed" in out and "12.44" in out


def test_missing_seed_score_is_named(seeded):
    (seeded / "am_w2v_s2/decode_test/score.json").unlink()
    with pytest.raises(W2vtkError, match=r"am_w2v_s2/decode_test/score.json is missing"):
        collect_results(seeded, ["dev", "test"], ["wer"], seeds=[1, 2, 3])
    res = subprocess.run([sys.executable, "-m", "w2vtk", "results", str(seeded), "--sets", "dev test",
                          "--seeds", "1 2 3"], capture_output=True, text=True, env=script_env(), cwd=ROOT)
    assert res.returncode == 1 and res.stderr.count("\n") == 1
    assert "am_w2v_s2/decode_test/score.json is missing" in res.stderr
    assert not (seeded / "results.json").exists()


@pytest.mark.parametrize("seeds,message", [([1, 1], "seed 1 is given twice"), ([-1], "seed -1 is not"),
                                           ([], "no seeds given")])
def test_bad_seeds(seeded, seeds, message):
    with pytest.raises(W2vtkError, match=message):
        collect_results(seeded, ["dev"], ["wer"], seeds=seeds)


def test_bad_cli_seed_is_one_line(seeded):
    res = subprocess.run([sys.executable, "-m", "w2vtk", "results", str(seeded), "--sets", "dev", "--seeds", "1 x"],
                         capture_output=True, text=True, env=script_env(), cwd=ROOT)
    assert res.returncode == 1
    assert res.stderr == "error: --seeds '1 x': expected non-negative integers\n"


# ------------------------------------------------------------------ study curves (stage 7)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def curve_exp(seeded: Path) -> Path:
    """Stage-4 AMs (the main point: 5 labeled minutes, 60 pre-training minutes) plus curve points
    at 2 and 20 labeled minutes and at 15 pre-training minutes; seeds 1-3."""
    for seed in (1, 2, 3):
        for feat, base in (("fbank", 40.0), ("w2v", 30.0)):
            for minutes, shift in (("2", 10.0), ("20", -10.0)):
                for set_name in ("dev", "test"):
                    _score(seeded, f"curves/am_{feat}_{minutes}m_s{seed}", set_name,
                           wer=base + shift + seed, ler=base / 2 + seed)
        for set_name in ("dev", "test"):
            _score(seeded, f"curves/am_w2v_p15m_s{seed}", set_name, wer=50.0 + 2 * seed, ler=20.0)
    return seeded


def _curves(exp: Path) -> dict:
    return collect_curves(exp, sets=["dev", "test"], metrics=["wer", "ler"], seeds=[1, 2, 3],
                          am_minutes=["2", "5", "20"], main_am_minutes="5",
                          pretrain_minutes=["15"], main_pretrain_minutes="60")


def test_collect_curves_means_of_seeds_and_main_point(curve_exp):
    curves = _curves(curve_exp)
    assert list(curves) == ["am_minutes", "pretrain_minutes"]
    assert list(curves["am_minutes"]) == ["logmel", "wav2vec"]
    assert list(curves["am_minutes"]["logmel"]) == ["2", "5", "20"]
    assert list(curves["pretrain_minutes"]) == ["wav2vec"]
    assert list(curves["pretrain_minutes"]["wav2vec"]) == ["15", "60"]
    two = curves["am_minutes"]["logmel"]["2"]["test"]
    assert (two["wer"], two["wer_min"], two["wer_max"]) == (52.0, 51.0, 53.0)
    assert two["seeds"] == {"1": {"wer": 51.0, "ler": 21.0}, "2": {"wer": 52.0, "ler": 22.0},
                            "3": {"wer": 53.0, "ler": 23.0}}
    assert curves["am_minutes"]["wav2vec"]["20"]["dev"]["wer"] == 22.0
    # the main points are stage 4's AMs, read from am_<feat>_s<seed>
    assert curves["am_minutes"]["logmel"]["5"]["dev"]["wer"] == 12.44
    assert curves["pretrain_minutes"]["wav2vec"]["60"]["test"]["wer"] == 26.0
    assert curves["pretrain_minutes"]["wav2vec"]["15"]["dev"]["wer"] == 54.0


def test_collect_curves_names_a_missing_point_and_checks_amounts(curve_exp):
    (curve_exp / "curves/am_fbank_20m_s3/decode_dev/score.json").unlink()
    with pytest.raises(W2vtkError, match=r"curves/am_fbank_20m_s3/decode_dev/score.json is missing"):
        _curves(curve_exp)
    with pytest.raises(W2vtkError, match="pre-training amount 90 is above the main model's 60 minutes"):
        collect_curves(curve_exp, sets=["dev"], metrics=["wer"], seeds=[1], pretrain_minutes=["90"],
                       main_pretrain_minutes="60")
    with pytest.raises(W2vtkError, match="labeled amount 2 is given twice"):
        collect_curves(curve_exp, sets=["dev"], metrics=["wer"], seeds=[1], am_minutes=["2", "2.0"],
                       main_am_minutes="5")
    with pytest.raises(W2vtkError, match="'-3' is not a positive number of minutes"):
        collect_curves(curve_exp, sets=["dev"], metrics=["wer"], seeds=[1], am_minutes=["-3"], main_am_minutes="5")


def test_pretrain_curve_needs_wav2vec(curve_exp):
    curves = collect_curves(curve_exp, sets=["test"], metrics=["wer"], seeds=[1, 2], systems=["logmel"],
                            am_minutes=["2"], main_am_minutes="5", pretrain_minutes=["15"],
                            main_pretrain_minutes="60")
    assert list(curves) == ["am_minutes"] and list(curves["am_minutes"]) == ["logmel"]
    assert list(curves["am_minutes"]["logmel"]) == ["2", "5"]


def test_plot_curves_writes_pngs(curve_exp, tmp_path):
    out = tmp_path / "plots"
    out.mkdir()
    paths = plot_curves(_curves(curve_exp), out)
    assert [p.name for p in paths] == ["curve_am_minutes.png", "curve_pretrain_minutes.png"]
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(PNG) and len(data) > 5000
    with pytest.raises(W2vtkError, match="no eval set"):
        plot_curves(_curves(curve_exp), out, set_name="eval")


def test_curves_cli_writes_json_plots_and_a_results_section(curve_exp, capsys):
    report_results(curve_exp, ["dev", "test"], ["wer", "ler"], seeds=[1, 2, 3])
    args = ["results", str(curve_exp), "--curves", "--sets", "dev test", "--seeds", "1 2 3",
            "--am-minutes", "2 5 20", "--main-am-minutes", "5", "--pretrain-minutes", "15",
            "--main-pretrain-minutes", "60"]
    assert run_main(capsys, args)[0] == 0
    assert json.loads((curve_exp / "curves.json").read_text()) == _curves(curve_exp)
    for name in ("curve_am_minutes.png", "curve_pretrain_minutes.png"):
        assert (curve_exp / name).read_bytes().startswith(PNG)
    md = (curve_exp / "RESULTS.md").read_text()
    assert "![test WER against labeled minutes](curve_am_minutes.png)" in md
    assert "![test WER against pre-training minutes](curve_pretrain_minutes.png)" in md
    assert "| 2 | 52.00 (51.00-53.00) | 42.00 (41.00-43.00) | 52.00 (51.00-53.00) |" in md
    assert "| 15 | 54.00 (52.00-56.00) | 54.00 (52.00-56.00) |" in md
    assert md.index("## Curves") < md.index("## Provenance")  # the rest of stage 6's file is kept
    assert "| dev | 12.44 (10.11-15.00) |" in md
    code, out, _ = run_main(capsys, args)
    # a rerun replaces the section; stage 6 rewriting RESULTS.md keeps it
    assert code == 0 and "WER against labeled minutes" in out
    report_results(curve_exp, ["dev", "test"], ["wer", "ler"], seeds=[1, 2, 3])
    md = (curve_exp / "RESULTS.md").read_text()
    assert md.count("## Curves") == 1 and md.count("curve_am_minutes.png") == 1
    assert md.index("## Curves") < md.index("## Provenance") and "| dev | 2 | 12.22 |" in md


def test_curves_cli_error_is_one_line(curve_exp):
    res = subprocess.run([sys.executable, "-m", "w2vtk", "results", str(curve_exp), "--curves", "--sets", "dev test",
                          "--seeds", "1 2 4", "--am-minutes", "2", "--main-am-minutes", "5"],
                         capture_output=True, text=True, env=script_env(), cwd=ROOT)
    assert res.returncode == 1 and res.stderr.count("\n") == 1
    assert "am_fbank_2m_s4/decode_dev/score.json is missing" in res.stderr
    assert not (curve_exp / "curves.json").exists() and not (curve_exp / "curve_am_minutes.png").exists()


def test_w2vtk_results_discovers_what_the_exp_holds(seeded, tmp_path_factory):
    """`w2vtk results EXP` (no options) finds systems, seeds, sets and metrics itself and writes the
    same results.json as the recipes' explicit call."""
    explicit = tmp_path_factory.mktemp("explicit")
    report_results(seeded, ["dev", "test"], ["wer", "ler"], seeds=[1, 2, 3])
    want = json.loads((seeded / "results.json").read_text())
    (seeded / "results.json").unlink()
    proc = subprocess.run([sys.executable, "-m", "w2vtk", "results", str(seeded)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((seeded / "results.json").read_text()) == want
    assert "| test |" in (seeded / "RESULTS.md").read_text()
    # a subset by option
    proc = subprocess.run([sys.executable, "-m", "w2vtk", "results", str(seeded), "--sets", "test",
                           "--seeds", "1,2"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    got = json.loads((seeded / "results.json").read_text())
    assert list(got["logmel"]) == ["test"] and list(got["logmel"]["test"]["seeds"]) == ["1", "2"]
    # nothing to report: one line
    proc = subprocess.run([sys.executable, "-m", "w2vtk", "results", str(explicit)], capture_output=True, text=True)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and "no acoustic-model dirs" in lines[0]
