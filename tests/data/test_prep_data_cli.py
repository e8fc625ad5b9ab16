"""`w2vtk prep validate|fix|subset|combine` through the console-script entry point."""

from __future__ import annotations

import subprocess
import sys

import pytest

from datadir_helpers import good_tables, raw_good, write_raw
from w2vtk.cli import main
from w2vtk.data import read_kv, validate_data_dir, write_data_dir


def run(capsys, *argv):
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    return info.value.code or 0, out, err


def test_validate_ok_and_problems(tmp_path, capsys):
    good = tmp_path / "good"
    write_data_dir(good, **good_tables())
    code, out, _ = run(capsys, "prep", "validate", str(good))
    assert code == 0 and out.strip() == f"OK {good}: 9 utterances, 3 speakers, 0.004 h"
    bad = write_raw(tmp_path / "bad", {**raw_good(), "text": "a-2 two\r\na-1 one\n"})
    code, out, err = run(capsys, "prep", "validate", str(bad))
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"{bad}/text:1: contains a carriage return (CR); convert with dos2unix"
    assert any(line.startswith(f"{bad}/text:2: not sorted") for line in lines)
    assert any("text: 1 utterance(s) of utt2spk missing (b-1)" in line for line in lines)
    assert f"{bad}: {len(lines)} problem(s)" in err


def test_validate_user_errors_are_one_line(tmp_path, capsys):
    code, out, err = run(capsys, "prep", "validate", str(tmp_path / "missing"))
    assert code == 1 and err.strip() == f"error: {tmp_path / 'missing'}: data directory does not exist"
    bad = write_raw(tmp_path / "bad", {**raw_good(), "text": b"a-1 \xc3\x28\n"})
    code, out, err = run(capsys, "prep", "validate", str(bad))
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: {bad}/text:1: not valid UTF-8")


def test_fix_reports_kept_of_total(tmp_path, capsys):
    d = write_raw(tmp_path / "d", {**raw_good(), "text": "a-1 one\nb-1 three\n"})
    code, out, _ = run(capsys, "prep", "fix", str(d))
    assert code == 0 and out.strip() == f"fix {d}: kept 2 of 3 utterances (originals in {d}/.backup)"
    assert validate_data_dir(d) == []
    assert (d / ".backup" / "utt2spk").read_text() == raw_good()["utt2spk"]


def test_fix_exit_1_when_problems_remain(tmp_path, capsys):
    d = write_raw(tmp_path / "d", {**raw_good(), "utt2spk": "a-1 z\na-2 a\nb-1 b\n"})
    code, out, err = run(capsys, "prep", "fix", str(d))
    assert code == 1 and "not sorted when grouped by speaker" in out and "remain" in err


def test_subset_and_option_errors(tmp_path, capsys):
    src = tmp_path / "src"
    write_data_dir(src, **good_tables())
    code, out, _ = run(capsys, "prep", "subset", str(src), str(tmp_path / "o"), "--utts", "3", "--seed", "7")
    assert code == 0 and "3 utterances, 3 speakers" in out
    assert validate_data_dir(tmp_path / "o") == []
    code, out, err = run(capsys, "prep", "subset", str(src), str(tmp_path / "x"), "--utts", "3",
                         "--hours", "1")
    assert code == 1 and err.strip() == "error: prep subset: give exactly one of --hours, --utts, --spk-list"
    code, out, err = run(capsys, "prep", "subset", str(src), str(tmp_path / "x"), "--utts", "99")
    assert code == 1 and err.startswith("error: subset: asked for 99 utterances")
    assert not (tmp_path / "x").exists()
    lst = tmp_path / "spk"
    lst.write_text("spkB\n")
    code, out, _ = run(capsys, "prep", "subset", str(src), str(tmp_path / "s"), "--spk-list", str(lst))
    assert code == 0 and set(read_kv(tmp_path / "s" / "utt2spk").values()) == {"spkB"}


def test_combine_cli(tmp_path, capsys):
    a = write_raw(tmp_path / "a", raw_good())
    files_b = {"wav.scp": "c-1 /x/c1.wav\n", "text": "c-1 four\n", "utt2spk": "c-1 c\n", "spk2utt": "c c-1\n"}
    b = write_raw(tmp_path / "b", files_b)
    code, out, err = run(capsys, "prep", "combine", str(tmp_path / "c"), str(a), str(b))
    assert code == 0 and "4 utterances, 3 speakers" in out
    assert err.strip() == f"warning: combine: utt2dur missing in {b}; not written to {tmp_path / 'c'}"
    code, out, err = run(capsys, "prep", "combine", str(tmp_path / "d"), str(a), str(tmp_path / "c"))
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "3 utterance id(s) in more than one source: a-1" in err
    assert not (tmp_path / "d").exists()


def test_console_script_subprocess_exit_code(tmp_path):
    bad = write_raw(tmp_path / "bad", {**raw_good(), "utt2spk": "a-1 a b\na-2 a\nb-1 b\n"})
    proc = subprocess.run([sys.executable, "-m", "w2vtk", "prep", "validate", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"{bad}/utt2spk:1: expected exactly 2 fields (<utt-id> <spk-id>), got 3" in proc.stdout.splitlines()
