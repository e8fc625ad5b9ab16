"""`w2vtk report`: plots from whatever an experiment dir holds; damaged files are notes, an empty
dir is a one-line error."""

import json
import subprocess
import sys

from report_checks import check_report


def _exp(root):
    pre = root / "w2v"
    pre.mkdir(parents=True)
    lines = []
    for u in range(0, 101, 20):
        lines.append(json.dumps({"split": "train", "update": u, "loss": 3.0 - u / 50, "rank_acc": u / 200}))
        lines.append(json.dumps({"split": "valid", "update": u, "loss": 3.1 - u / 50, "rank_acc": u / 210}))
    (pre / "metrics.jsonl").write_text("\n".join(lines) + '\n{"split": "train", "upd')  # cut by a kill
    am = root / "am_fbank"
    am.mkdir()
    (am / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "train_loss": 5 / e, "dev_loss": 6 / e,
                                                          "ler": 90 / e, "wer": 100 / e ** 0.5}) + "\n"
                                              for e in range(1, 6)))
    (am / "config.yaml").write_text("max_epochs: 5\n")
    dec = am / "decode_dev"
    dec.mkdir()
    rows = ["trial\tlm_weight\tword_score\tsil_score\twer\tler\tseconds"]
    rows += [f"{i}\t{i * 0.5}\t{1 - i}\t0\t{40 - i}\t20\t1.0" for i in range(6)]
    (dec / "trials.tsv").write_text("\n".join(rows) + "\n")
    return root


def test_report_of_a_dir_without_results_and_with_a_cut_metrics_file(tmp_path):
    exp = _exp(tmp_path / "exp")
    proc = subprocess.run([sys.executable, "-m", "w2vtk", "report", str(exp)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    index = exp / "report" / "index.html"
    pngs = check_report(index)
    assert {p.name for p in pngs} == {"pretrain_w2v.png", "am_am_fbank.png", "tune_am_fbank_decode_dev.png"}
    page = index.read_text()
    assert "1 unreadable line(s) skipped" in page and "am_fbank/config.yaml" in page and "Provenance" in page
    assert "unreadable line" in proc.stderr + proc.stdout


def test_report_elsewhere_and_an_empty_dir_is_one_error_line(tmp_path):
    exp = _exp(tmp_path / "exp")
    proc = subprocess.run([sys.executable, "-m", "w2vtk", "report", str(exp / "am_fbank"), "--out",
                           str(tmp_path / "rep")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in check_report(tmp_path / "rep" / "index.html")} == {"am_am_fbank.png",
                                                                              "tune_decode_dev.png"}
    (tmp_path / "empty").mkdir()
    proc = subprocess.run([sys.executable, "-m", "w2vtk", "report", str(tmp_path / "empty")], capture_output=True,
                          text=True)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and "nothing to report" in lines[0]
    assert not (tmp_path / "empty" / "report").exists()
