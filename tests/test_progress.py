"""The progress helper: readable at 80 columns on a terminal, plain periodic lines off it, and one
rate (the average since the start, as the commands' summaries report)."""

import io
import re

from rich.console import Console

import w2vtk.progress as progress_mod


def test_bar_keeps_count_rate_and_eta_at_80_columns(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(progress_mod, "console", Console(file=buf, width=80, force_terminal=True,
                                                         color_system=None))
    with progress_mod.progress("extract wav2vec", total=5000, unit="audio-s", enabled=True) as bar:
        bar.advance(1234)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buf.getvalue())  # cursor / line controls
    last = [line for line in text.replace("\r", "\n").splitlines() if line.strip()][-1]
    assert "1234/5000" in last and "audio-s/s" in last and "ETA" in last, last
    assert "…" not in last and "..." not in last, last


def test_rate_is_the_average_since_the_start():
    class Task:
        finished, finished_time, elapsed, completed = False, None, 10.0, 1620.0

    assert progress_mod.RateColumn("audio-s").render(Task()).plain == "162.0 audio-s/s"


def test_plain_lines_off_a_terminal(monkeypatch, capsys):
    monkeypatch.setenv("W2VTK_PROGRESS_EVERY", "0")
    monkeypatch.setattr(progress_mod, "_isatty", lambda stream: False)
    with progress_mod.progress("tune", total=4, unit="trial") as bar:
        for _ in range(4):
            bar.advance(1)
    lines = [line for line in capsys.readouterr().err.splitlines() if "tune:" in line]
    assert len(lines) == 5  # one per advance, and a final line
    assert re.search(r"tune: 2/4 trial \(50%\), [\d,.]+ trial/s, elapsed 0:00:00, ETA 0:00:00", lines[1])
    assert "4/4 trial (100%)" in lines[-1] and "ETA" not in lines[-1]


def test_log_file_waits_for_its_dir_and_stops_quietly_when_it_cannot_write(tmp_path, capsys):
    import logging

    from w2vtk import logs

    exp = tmp_path / "exp"
    logs.open_log(exp / "log" / "x.log", argv=["w2vtk", "x"])
    logs.LOGGER.info("before the exp dir exists")
    assert not exp.exists()  # nothing written yet: a command failing here leaves no trace
    exp.mkdir()
    logs.LOGGER.info("after")
    logs.close_log("done")
    lines = (exp / "log" / "x.log").read_text().splitlines()
    assert [line.split(" ", 3)[3] for line in lines[1:]] == ["before the exp dir exists", "after", "done"]
    assert lines[0].endswith(": w2vtk x") and " INFO w2vtk " in lines[0]
    # a log that cannot be written (here: its dir is a file) is dropped without a traceback
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "log").write_text("a file where the log dir should be")
    logs.open_log(bad / "log" / "x.log")
    logs.LOGGER.log(logging.INFO, "lost")
    logs.close_log("done")
    assert "Traceback" not in capsys.readouterr().err
