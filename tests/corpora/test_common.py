"""finish_prep / start_prep / is_prep_done: the shared end of every corpus preparer."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from w2vtk.corpora.common import DONE_MARKER, finish_prep, is_prep_done, start_prep
from w2vtk.data import validate_data_dir
from w2vtk.errors import W2vtkError


def _set(prefix: str, speakers: int, per_speaker: int, dur: float = 1.5) -> dict:
    wav, text, utt2spk, utt2dur = {}, {}, {}, {}
    for s in range(speakers):
        for n in range(per_speaker):
            utt = f"{prefix}{s}-{n:02d}"
            wav[utt] = f"/c/{utt}.flac"
            text[utt] = f"word{s} word{n}"
            utt2spk[utt] = f"{prefix}{s}"
            utt2dur[utt] = dur
    return dict(wav_scp=wav, text=text, utt2spk=utt2spk, utt2dur=utt2dur,
                extra={"text.words": dict(text)})


def _console():
    buf = io.StringIO()
    return Console(file=buf, width=200, color_system=None), buf


SIG = {"corpus_dir": "/c", "option": 1}


def test_finish_prep_writes_everything(tmp_path):
    console, buf = _console()
    sets = {"train": _set("tr", 3, 4), "test": _set("te", 2, 2, dur=3600.0)}
    assert not start_prep(tmp_path, SIG)
    summary = finish_prep(tmp_path, "foo", sets, lm_lines=iter(["a  b", "", "c d\n"]),
                          expected_counts={"train": 12, "test": 5, "dev": 1}, signature=SIG,
                          console=console)
    for name in sets:
        assert validate_data_dir(tmp_path / name) == []
    assert (tmp_path / "train" / "text.words").exists()
    assert (tmp_path / "local" / "lm_text.txt").read_text() == "a b\nc d\n"
    assert summary["sets"]["train"] == {"utterances": 12, "speakers": 3, "hours": 0.005, "expected": 12}
    assert summary["sets"]["test"]["hours"] == 4.0
    assert summary["warnings"] == ["foo set test: 4 utterances, expected 5 (incomplete or modified corpus?)"]
    assert json.loads((tmp_path / "local" / "prep_summary.json").read_text()) == summary
    text = buf.getvalue()
    warning_lines = [line for line in text.splitlines() if line.startswith("warning:")]
    assert warning_lines == ["warning: foo set test: 4 utterances, expected 5 (incomplete or modified corpus?)"]
    assert "train" in text and "4.000" in text and "lm_text.txt (2 lines)" in text
    assert is_prep_done(tmp_path, {"option": 1, "corpus_dir": "/c"})  # key order does not matter
    assert not is_prep_done(tmp_path, {**SIG, "option": 2})
    assert start_prep(tmp_path, SIG)


def test_marker_paths_are_canonical_and_missing_set_means_not_done(tmp_path):
    from pathlib import Path
    sig = {"corpus_dir": Path("/c"), "subsets": ("a", "b")}
    finish_prep(tmp_path, "foo", {"train": _set("tr", 1, 1)}, [], signature=sig, console=_console()[0])
    assert is_prep_done(tmp_path, {"corpus_dir": "/c", "subsets": ["a", "b"]})
    (tmp_path / "train" / "utt2spk").unlink()
    assert not is_prep_done(tmp_path, sig)


def test_half_finished_prep_is_redone_and_stale_sets_removed(tmp_path):
    console, _ = _console()
    finish_prep(tmp_path, "foo", {"train": _set("tr", 2, 2)}, ["x"], signature=SIG, console=console)
    (tmp_path / "train" / "utt2num_frames").write_text("stale 1\n")
    (tmp_path / "train" / "split2").mkdir()
    # A different run starts, is cut off: no marker any more, so the old signature is not done.
    assert not start_prep(tmp_path, {**SIG, "option": 2})
    assert not (tmp_path / DONE_MARKER).exists()
    assert not is_prep_done(tmp_path, SIG)
    finish_prep(tmp_path, "foo", {"train": _set("tr", 1, 3)}, ["y"], signature=SIG, console=console)
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == \
        ["role", "spk2utt", "text", "text.words", "utt2dur", "utt2spk", "wav.scp"]
    assert (tmp_path / "train" / "role").read_text() == "train\n"  # decode --tune reads it
    assert validate_data_dir(tmp_path / "train") == []


def test_invalid_set_raises_and_leaves_no_marker(tmp_path):
    bad = _set("tr", 1, 2)
    bad["text"]["tr0-00"] = "hello </s>"
    with pytest.raises(W2vtkError, match="reserved token"):
        finish_prep(tmp_path, "foo", {"train": bad}, [], signature=SIG, console=_console()[0])
    assert not (tmp_path / DONE_MARKER).exists() and not is_prep_done(tmp_path, SIG)


def test_refuses_to_replace_a_non_data_dir(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "thesis.tex").write_text("precious\n")
    with pytest.raises(W2vtkError, match="does not look like a data directory"):
        finish_prep(tmp_path, "foo", {"train": _set("tr", 1, 1)}, [], signature=SIG, console=_console()[0])
    assert (tmp_path / "train" / "thesis.tex").exists()
    with pytest.raises(W2vtkError, match="invalid set name"):
        finish_prep(tmp_path, "foo", {"local": _set("tr", 1, 1)}, [], console=_console()[0])
