"""LibriSpeech prep on a fake OpenSLR 12 tree (synthesized 16 kHz FLAC, SPEAKERS.TXT, trans files,
OpenSLR 11 LM resources)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from w2vtk.cli import main
from w2vtk.corpora.librispeech import prepare_librispeech, read_speakers_txt
from w2vtk.data import load_data_dir, read_kv, validate_data_dir
from w2vtk.errors import W2vtkError

# subset -> {reader: [chapters]}; reader 19 has two chapters so the speaker modes differ.
TREE = {
    "dev-clean": {"84": ["121123"], "174": ["50561"]},
    "test-clean": {"1089": ["134686"]},
    "train-clean-100": {"19": ["198", "227"], "26": ["495"]},
    "train-clean-360": {"100": ["121669"]},
    "train-other-500": {"20": ["205"]},
}
GENDERS = {"84": "F", "174": "M", "1089": "M", "19": "F", "26": "M", "100": "F", "20": "F"}
UTTS_PER_CHAPTER = 3
DEV_SENTENCE = "THE DEV SENTENCE THAT MUST STAY OUT OF THE LM"
LM_NORM = ["A BOOK SENTENCE FOR THE LANGUAGE MODEL", DEV_SENTENCE, "ANOTHER ONE FROM THE BOOKS"]


def _text(subset: str, reader: str, chapter: str, i: int) -> str:
    if subset == "dev-clean" and i == 0 and reader == "84":
        return DEV_SENTENCE
    words = subset.upper().replace("-", " ")
    return f"{words} READER {reader} CHAPTER {chapter} LINE {i} IT'S FINE"


def make_librispeech(root: Path, tree=TREE, *, with_lm: bool = True) -> Path:
    """Fake release under root/LibriSpeech; returns root (the directory holding LibriSpeech/)."""
    ls = root / "LibriSpeech"
    rng = np.random.default_rng(0)
    lines = [";ID  |SEX| SUBSET           |MINUTES| NAME"]
    for subset, readers in tree.items():
        for reader, chapters in readers.items():
            # a name containing '|' exists in the real file (reader 60, '|CBW|Simon')
            lines.append(f"{reader:<5}| {GENDERS[reader]} | {subset:<17}| 12.34 | |CBW|Name {reader}")
            for chapter in chapters:
                d = ls / subset / reader / chapter
                d.mkdir(parents=True)
                trans = []
                for i in range(UTTS_PER_CHAPTER):
                    utt = f"{reader}-{chapter}-{i:04d}"
                    n = 1600 + 800 * i
                    sf.write(d / f"{utt}.flac", (rng.standard_normal(n) * 0.05).astype(np.float32),
                             16000, subtype="PCM_16")
                    trans.append(f"{utt} {_text(subset, reader, chapter, i)}\n")
                (d / f"{reader}-{chapter}.trans.txt").write_text("".join(trans))
    (ls / "SPEAKERS.TXT").write_text("; comment line\n" + "\n".join(lines) + "\n")
    for name in ("README.TXT", "CHAPTERS.TXT", "BOOKS.TXT", "LICENSE.TXT"):
        (ls / name).write_text("x\n")
    if with_lm:
        with gzip.open(root / "librispeech-lm-norm.txt.gz", "wt") as fh:
            fh.write("\n".join(LM_NORM) + "\n")
        with gzip.open(root / "4-gram.arpa.gz", "wt") as fh:
            fh.write("\\data\\\n")
        (root / "librispeech-lexicon.txt").write_text("A\tA\n")
    return root


@pytest.fixture(scope="module")
def fake_ls(tmp_path_factory) -> Path:
    return make_librispeech(tmp_path_factory.mktemp("ls"))


@pytest.fixture(scope="module")
def prepared(fake_ls, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("ls_out") / "data"
    summary = prepare_librispeech(fake_ls, out, quiet=True)
    return out, summary


def test_sets_ids_speakers_and_sorting(prepared):
    out, summary = prepared
    expected_sets = {"dev_clean", "test_clean", "train_clean_100", "train_clean_360",
                     "train_other_500", "train_960"}
    assert set(summary["sets"]) == expected_sets
    for name in expected_sets:
        assert validate_data_dir(out / name) == [], name
        for file in ("wav.scp", "text", "utt2spk", "utt2dur", "spk2gender", "spk2utt"):
            lines = (out / name / file).read_text().splitlines()
            keys = [line.split(" ", 1)[0] for line in lines]
            assert keys == sorted(keys) and len(set(keys)) == len(keys), (name, file)
    dd = load_data_dir(out / "train_clean_100")
    assert set(dd.utt2spk) == {f"{r}-{c}-{i:04d}" for r, cs in TREE["train-clean-100"].items()
                               for c in cs for i in range(UTTS_PER_CHAPTER)}
    assert dd.utt2spk["19-198-0001"] == "19-198" and dd.utt2spk["19-227-0002"] == "19-227"
    assert dd.spk2gender == {"19-198": "f", "19-227": "f", "26-495": "m"}
    assert dd.text["19-198-0001"] == "TRAIN CLEAN 100 READER 19 CHAPTER 198 LINE 1 IT'S FINE"
    path = Path(dd.wav_scp["19-198-0001"])
    assert path.is_absolute() and path.name == "19-198-0001.flac" and path.is_file()
    assert float(dd.utt2dur["19-198-0001"]) == pytest.approx(2400 / 16000)
    train_960 = load_data_dir(out / "train_960")
    parts = [load_data_dir(out / n) for n in ("train_clean_100", "train_clean_360", "train_other_500")]
    assert set(train_960.utt2spk) == set().union(*(set(p.utt2spk) for p in parts))
    assert summary["sets"]["train_960"]["utterances"] == 5 * UTTS_PER_CHAPTER


def test_lm_text_training_only_and_resources(prepared, fake_ls):
    out, _ = prepared
    lm = (out / "local" / "lm_text.txt").read_text().splitlines()
    dev_test = set()
    for name in ("dev_clean", "test_clean"):
        dev_test.update(load_data_dir(out / name).text.values())
    assert DEV_SENTENCE in dev_test and not dev_test & set(lm)
    train_text = load_data_dir(out / "train_960").text.values()
    assert set(train_text) <= set(lm)
    assert LM_NORM[0] in lm and LM_NORM[2] in lm
    # train transcripts once each (train_960 is not counted twice), then the two book lines
    assert len(lm) == 5 * UTTS_PER_CHAPTER + 2
    link = out / "local" / "4-gram.arpa.gz"
    assert link.is_symlink() and link.resolve() == (fake_ls / "4-gram.arpa.gz").resolve()
    assert (out / "local" / "librispeech-lexicon.txt").is_symlink()
    recorded = json.loads((out / "local" / "lm_resources.json").read_text())
    assert set(recorded) == {"4-gram.arpa.gz", "librispeech-lexicon.txt", "librispeech-lm-norm.txt.gz"}


def test_count_mismatch_warns_per_set(prepared):
    _, summary = prepared
    for name in ("dev_clean", "train_clean_100", "train_960"):
        assert any(name in w for w in summary["warnings"]), name
    assert summary["sets"]["dev_clean"]["expected"] == 2703


def test_reader_speakers_subsets_and_librispeech_dir(fake_ls, tmp_path, capsys):
    out = tmp_path / "data"
    with pytest.raises(SystemExit) as exit_info:
        main(["prep", "librispeech", str(fake_ls / "LibriSpeech"), str(out), "--speaker", "reader",
              "--subsets", "train_clean_100,dev-clean"])
    assert exit_info.value.code == 0
    assert sorted(p.name for p in out.iterdir()) == ["dev_clean", "local", "train_clean_100"]
    dd = load_data_dir(out / "train_clean_100")
    assert set(dd.spk2utt) == {"19", "26"} and dd.utt2spk["19-227-0000"] == "19"
    assert dd.spk2gender == {"19": "f", "26": "m"}
    assert "warning:" in capsys.readouterr().out  # counts differ from the real release
    # only train_clean_100 is training text; the dev sentence stays out
    lm = (out / "local" / "lm_text.txt").read_text().splitlines()
    assert len(lm) == 3 * UTTS_PER_CHAPTER + 2 and DEV_SENTENCE not in lm


def test_train_960_from_subsets_and_rerun_skips(fake_ls, tmp_path):
    out = tmp_path / "data"
    prepare_librispeech(fake_ls, out, subsets=["train_960"], quiet=True)
    assert sorted(p.name for p in out.iterdir()) == ["local", "train_960", "train_clean_100",
                                                     "train_clean_360", "train_other_500"]
    stamp = (out / "train_960" / "text").stat().st_mtime_ns
    assert prepare_librispeech(fake_ls, out, subsets=["train_960"], quiet=True) is None
    assert (out / "train_960" / "text").stat().st_mtime_ns == stamp
    # different options: redone
    assert prepare_librispeech(fake_ls, out, subsets=["train_960"], speaker="reader", quiet=True)
    assert read_kv(out / "train_960" / "utt2spk")["20-205-0000"] == "20"


def test_speakers_txt_and_missing_gender(tmp_path):
    root = make_librispeech(tmp_path, {"dev-clean": {"84": ["121123"]}}, with_lm=False)
    assert read_speakers_txt(root / "LibriSpeech" / "SPEAKERS.TXT") == {"84": "f"}
    (root / "LibriSpeech" / "SPEAKERS.TXT").write_text(";ID|SEX\n999 | M | dev-clean | 1 | x\n")
    summary = prepare_librispeech(root, tmp_path / "out", quiet=True)
    assert not (tmp_path / "out" / "dev_clean" / "spk2gender").exists()
    assert summary["sets"]["dev_clean"]["utterances"] == UTTS_PER_CHAPTER
    assert (tmp_path / "out" / "local" / "lm_text.txt").read_text() == ""  # no train set, no LM text


def _run_cli_error(args, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error:"), err
    return err[0]


def test_bad_input_one_line_errors(tmp_path, capsys):
    out = tmp_path / "out"
    assert "does not exist" in _run_cli_error(["prep", "librispeech", str(tmp_path / "nope"), str(out)],
                                              capsys)
    wrong = tmp_path / "wrong"
    (wrong / "LibriSpeech" / "dev-clean" / "notes").mkdir(parents=True)
    assert "no LibriSpeech subsets" in _run_cli_error(["prep", "librispeech", str(wrong), str(out)], capsys)
    root = make_librispeech(tmp_path / "c", {"dev-clean": {"84": ["121123"], "174": ["50561"]}},
                            with_lm=False)
    msg = _run_cli_error(["prep", "librispeech", str(root / "LibriSpeech" / "dev-clean"), str(out)], capsys)
    assert "one subset" in msg
    msg = _run_cli_error(["prep", "librispeech", str(root), str(out), "--subsets", "test-other"], capsys)
    assert "test-other" in msg and "dev-clean" in msg
    assert "--speaker" in _run_cli_error(["prep", "librispeech", str(root), str(out), "--speaker", "book"],
                                         capsys)
    # a FLAC without a transcript line
    chapter = root / "LibriSpeech" / "dev-clean" / "84" / "121123"
    trans = chapter / "84-121123.trans.txt"
    trans.write_text("".join(trans.read_text().splitlines(keepends=True)[:-1]))
    msg = _run_cli_error(["prep", "librispeech", str(root), str(out)], capsys)
    assert "84-121123-0002.flac" in msg and "no transcript line" in msg
    assert not out.exists()  # nothing written, nothing that looks finished


def test_unreadable_stereo_and_non_utf8(tmp_path):
    root = make_librispeech(tmp_path / "c", {"dev-clean": {"84": ["121123"]}}, with_lm=False)
    chapter = root / "LibriSpeech" / "dev-clean" / "84" / "121123"
    flac = chapter / "84-121123-0001.flac"
    flac.write_bytes(b"fLaC garbage")
    with pytest.raises(W2vtkError, match="84-121123-0001.flac: unreadable audio"):
        prepare_librispeech(root, tmp_path / "o1", quiet=True)
    sf.write(flac, np.zeros((800, 2), dtype=np.float32), 16000, subtype="PCM_16")
    with pytest.raises(W2vtkError, match="2 channels"):
        prepare_librispeech(root, tmp_path / "o2", quiet=True)
    sf.write(flac, np.zeros(800, dtype=np.float32), 16000, subtype="PCM_16")
    (chapter / "84-121123.trans.txt").write_bytes(b"84-121123-0000 CAF\xe9\n")
    with pytest.raises(W2vtkError, match=r"84-121123\.trans\.txt:1: not valid UTF-8"):
        prepare_librispeech(root, tmp_path / "o3", quiet=True)
    for name in ("o1", "o2", "o3"):
        assert not (tmp_path / name).exists()


def test_console_script_error_contract(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "w2vtk", "prep", "librispeech",
                           str(tmp_path / "missing"), str(tmp_path / "out")],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "missing" in lines[0]


def test_transcript_without_audio_is_a_warning(tmp_path, capsys):
    root = make_librispeech(tmp_path / "c", {"dev-clean": {"84": ["121123"]}}, with_lm=False)
    (root / "LibriSpeech" / "dev-clean" / "84" / "121123" / "84-121123-0001.flac").unlink()
    summary = prepare_librispeech(root, tmp_path / "out")
    assert summary["sets"]["dev_clean"]["utterances"] == UTTS_PER_CHAPTER - 1
    out = capsys.readouterr().out
    assert "warning:" in out and "without audio" in out
    assert "84-121123-0001" not in read_kv(tmp_path / "out" / "dev_clean" / "text")
