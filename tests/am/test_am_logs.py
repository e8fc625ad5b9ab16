"""Issue 13's logging contract, through the real command with stderr redirected (as in recipes and
batch jobs): a log file per command, timestamped unwrapped records, the table header once, plain
progress lines instead of a live bar."""

import json
import os
import re
import subprocess
import sys

STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")


def test_train_am_redirected_output_and_log_file(am_data, tmp_path):
    lang, train, valid = am_data
    exp = tmp_path / "exp"
    env = dict(os.environ, W2VTK_PROGRESS_EVERY="0", OMP_NUM_THREADS="1", COLUMNS="")
    cmd = [sys.executable, "-m", "w2vtk", "train-am", "--conf", "conf/am/tiny.yaml", "--lang", str(lang),
           "--train", str(train), "--valid", str(valid), "--exp", str(exp), "max_epochs=2",
           "model.layers=[[32,5,1]]", "amp=none", "device=cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and all(STAMP.match(line) for line in lines), lines
    # the table header once, then one row per epoch
    headers = [line for line in lines if re.search(r"epoch\s+upd\s+lr\s+train loss", line)]
    rows = [line for line in lines if re.search(r"\s[12]/2\s", line)]
    assert len(headers) == 1 and len(rows) == 2, lines
    # a long record stays one line (it used to wrap at 80 columns)
    intro = [line for line in lines if "training utterances" in line]
    assert len(intro) == 1 and "updates/epoch" in intro[0] and len(intro[0]) > 100
    # progress as plain lines with a rate and the unit
    assert any(re.search(r"epoch 1: .* audio-s/s, elapsed", line) for line in lines), lines
    # the log file: the command line first, every record timestamped, the rows, "done" last
    log = (exp / "log" / "train-am.log").read_text().splitlines()
    assert "train-am" in log[0] and "--exp" in log[0]
    assert all(STAMP.match(line) for line in log)
    assert sum(bool(re.search(r"\s[12]/2\s", line)) for line in log) == 2
    assert log[-1].endswith("INFO done")
    # a failing run appends its error; a run that fails before writing anything leaves no log dir
    proc = subprocess.run(cmd + ["max_epochs=3"], capture_output=True, text=True, env=env)
    assert proc.returncode == 1
    assert "ERROR error:" in (exp / "log" / "train-am.log").read_text().splitlines()[-1]
    bad = tmp_path / "bad"
    proc = subprocess.run([sys.executable, "-m", "w2vtk", "train-am", "--lang", str(lang), "--train",
                           str(tmp_path / "missing"), "--valid", str(valid), "--exp", str(bad)],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 1 and "missing" in proc.stderr and not bad.exists()


def test_train_am_writes_tensorboard_scalars_named_as_in_metrics_jsonl(am_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from w2vtk.am.config import TrainAMConfig
    from w2vtk.am.train import train_am
    from w2vtk.config import load_config

    lang, train, valid = am_data
    exp = tmp_path / "exp"
    cfg = load_config(TrainAMConfig, "conf/am/tiny.yaml", ["max_epochs=2", "model.layers=[[32,5,1]]", "amp=none",
                                                         "device=cpu"])
    train_am(cfg, lang_dir=lang, train_dir=train, valid_dir=valid, exp_dir=exp)
    acc = EventAccumulator(str(exp / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train_loss", "dev_loss", "ler", "wer", "lr"} <= tags, tags
    steps = [e.step for e in acc.Scalars("train_loss")]
    assert steps == [1, 2]
    recs = [json.loads(line) for line in (exp / "metrics.jsonl").read_text().splitlines()]
    for event, rec in zip(acc.Scalars("train_loss"), recs):  # float32 in the event file
        assert abs(event.value - rec["train_loss"]) <= 1e-6 * abs(rec["train_loss"])
