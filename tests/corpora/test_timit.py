"""TIMIT prep on fake trees in the LDC layout (both cases, optional data/ level, SA files and
converted *.WAV.wav copies present) with synthesised NIST SPHERE audio."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from shorten_encoder import write_sphere_pcm
from w2vtk.audio import load_audio
from w2vtk.cli import app
from w2vtk.corpora import timit
from w2vtk.data import load_data_dir, read_kv, validate_data_dir
from w2vtk.errors import W2vtkError

# (part, dialect, speaker): two train speakers, one dev, one core-test, one test speaker in neither.
SPEAKERS = [("TRAIN", "DR1", "FCJF0"), ("TRAIN", "DR2", "MABC0"), ("TEST", "DR1", "FAKS0"),
            ("TEST", "DR4", "MDAB0"), ("TEST", "DR2", "MXYZ0")]
SENTENCES = ["SA1", "SA2", "SI1027", "SX127"]
# 61-phone transcript exercising every kind of fold (and q, which is deleted).
PHN = ["h#", "q", "ax-h", "bcl", "b", "ao", "zh", "ix", "pau", "el", "en", "epi", "tcl", "t", "axr",
       "ux", "hv", "nx", "em", "eng", "h#"]
WORDS = ["quick", "quiet", "don't"]
FOLD_48 = "sil ax vcl b ao zh ix sil el en epi cl t er uw hh n m ng sil"
FOLD_39 = "sil ah sil b aa sh ih sil l n sil sil t er uw hh n m ng sil"


def make_timit(root: Path, *, lower: bool = False, data_level: bool = False) -> Path:
    """A fake TIMIT tree; returns the directory to pass to prep."""
    case = str.lower if lower else str
    base = root / "timit"
    top = base / "data" if data_level else base
    rng = np.random.default_rng(0)
    for part, dr, spk in SPEAKERS:
        d = top / case(part) / case(dr) / case(spk)
        d.mkdir(parents=True)
        for sent in SENTENCES:
            n = 1600 + 160 * len(sent)
            audio = (rng.standard_normal(n) * 1000).astype(np.int16)
            write_sphere_pcm(d / case(f"{sent}.WAV"), audio)
            step = n // len(PHN)
            (d / case(f"{sent}.PHN")).write_text(
                "".join(f"{i * step} {(i + 1) * step} {p}\n" for i, p in enumerate(PHN)))
            (d / case(f"{sent}.WRD")).write_text(
                "".join(f"{i * 100} {(i + 1) * 100} {w}\n" for i, w in enumerate(WORDS)))
            (d / case(f"{sent}.TXT")).write_text(f"0 {n} {' '.join(WORDS)}.\n")
            if sent == "SX127":  # converted copy of the popular zip: must not become an utterance
                (d / case(f"{sent}.WAV.wav")).write_bytes(b"RIFF....")
    return base


@pytest.fixture
def counts(monkeypatch):
    expected = {"train": 4, "dev": 2, "test": 2}
    monkeypatch.setattr(timit, "EXPECTED_COUNTS", expected)
    return expected


@pytest.mark.parametrize("lower,data_level", [(False, False), (True, False), (False, True), (True, True)])
def test_prep_timit_layouts(tmp_path, counts, lower, data_level):
    corpus = make_timit(tmp_path, lower=lower, data_level=data_level)
    out = tmp_path / "out"
    summary = timit.prep_timit(corpus, out)
    assert summary["warnings"] == []
    for name in ("train", "dev", "test"):
        assert validate_data_dir(out / name) == []
        assert summary["sets"][name]["utterances"] == counts[name]
    dd = load_data_dir(out / "train")
    assert list(dd.utt2spk) == ["fcjf0-si1027", "fcjf0-sx127", "mabc0-si1027", "mabc0-sx127"]
    assert dd.utt2spk["mabc0-sx127"] == "mabc0"
    assert dd.spk2gender == {"fcjf0": "f", "mabc0": "m"}
    assert set(load_data_dir(out / "dev").utt2spk) == {"faks0-si1027", "faks0-sx127"}
    assert set(load_data_dir(out / "test").utt2spk) == {"mdab0-si1027", "mdab0-sx127"}
    assert dd.text["fcjf0-si1027"] == FOLD_48
    # Words are never phone-folded: the letter q survives.
    assert dd.extra["text.words"]["fcjf0-si1027"] == "quick quiet don't"
    wav = dd.wav_scp["fcjf0-si1027"]
    assert Path(wav).is_file() and Path(wav).name.lower() == "si1027.wav"
    x = load_audio(wav)
    assert len(x) == 1600 + 160 * 6
    assert float(dd.utt2dur["fcjf0-si1027"]) == pytest.approx(len(x) / 16000, abs=1e-4)
    lm = (out / "local" / "lm_text.txt").read_text().splitlines()
    assert lm == [FOLD_48] * 4  # training transcripts only, never dev/test


def test_phone_set_39_and_rerun_skips(tmp_path, counts):
    corpus = make_timit(tmp_path)
    out = tmp_path / "out"
    timit.prep_timit(corpus, out, phone_set=39)
    assert read_kv(out / "dev" / "text")["faks0-sx127"] == FOLD_39
    marker = (out / "local" / "prep_done.json").read_text()
    assert timit.prep_timit(corpus, out, phone_set=39) is None  # finished: skipped
    assert (out / "local" / "prep_done.json").read_text() == marker
    summary = timit.prep_timit(corpus, out, phone_set=48)  # other options: redone
    assert summary is not None and read_kv(out / "dev" / "text")["faks0-sx127"] == FOLD_48


def test_count_mismatch_warns_naming_set(tmp_path, monkeypatch):
    monkeypatch.setattr(timit, "EXPECTED_COUNTS", {"train": 3696, "dev": 2, "test": 2})
    summary = timit.prep_timit(make_timit(tmp_path), tmp_path / "out")
    assert len(summary["warnings"]) == 1 and "train" in summary["warnings"][0]


def test_fold_maps():
    assert len(timit.PHONES_61) == 61 and len(timit.PHONES_48) == 48 and len(timit.PHONES_39) == 39
    assert set(v for v in timit.PHONE_MAP_48.values() if v) == set(timit.PHONES_48)
    assert set(v for v in timit.PHONE_MAP_39.values() if v) == set(timit.PHONES_39)
    assert timit.fold_to_39(["q", "ao", "cl", "vcl", "sil", "sil", "zh", "aa"]) == \
        ["aa", "sil", "sil", "sil", "sil", "sh", "aa"]
    assert timit.fold_to_39(timit.PHONES_48) == [timit.MAP_48_TO_39[p] for p in timit.PHONES_48]
    with pytest.raises(W2vtkError):
        timit.fold_to_39(["xx"])
    assert timit.fold_to_39(["xx"], strict=False) == ["xx"]


def test_cli_and_bad_input(tmp_path, counts):
    corpus = make_timit(tmp_path)
    result = CliRunner().invoke(app, ["prep", "timit", str(corpus), str(tmp_path / "out"),
                                      "--phone-set", "39"])
    assert result.exit_code == 0, result.output
    assert "dev" in result.output and read_kv(tmp_path / "out" / "test" / "text")
    summary = json.loads((tmp_path / "out" / "local" / "prep_summary.json").read_text())
    assert summary["sets"]["train"]["utterances"] == 4

    proc = subprocess.run([sys.executable, "-m", "w2vtk", "prep", "timit", str(tmp_path / "nope"),
                           str(tmp_path / "out2")], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.startswith("error:") and "nope" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "out2").exists()


def test_bad_phone_and_missing_file(tmp_path):
    corpus = make_timit(tmp_path)
    phn = corpus / "TRAIN" / "DR1" / "FCJF0" / "SI1027.PHN"
    phn.write_text("0 100 h#\n100 200 zz\n")
    with pytest.raises(W2vtkError, match=r"SI1027\.PHN.*zz"):
        timit.prep_timit(corpus, tmp_path / "out")
    phn.unlink()
    with pytest.raises(W2vtkError, match="SI1027.PHN is missing"):
        timit.prep_timit(corpus, tmp_path / "out")
    assert not (tmp_path / "out" / "local" / "prep_done.json").exists()
    phn.write_text("0 100 h#\n")
    wav = corpus / "TEST" / "DR4" / "MDAB0" / "SX127.WAV"
    wav.write_bytes(wav.read_bytes()[:-100])
    with pytest.raises(W2vtkError, match=r"mdab0-sx127 .*SX127\.WAV.*truncated"):
        timit.prep_timit(corpus, tmp_path / "out")
    wrong = tmp_path / "wrong"
    (wrong / "TRAIN").mkdir(parents=True)
    with pytest.raises(W2vtkError, match="not a TIMIT tree"):
        timit.prep_timit(wrong, tmp_path / "out")
