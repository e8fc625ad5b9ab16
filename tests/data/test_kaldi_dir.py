"""read/write/validate/load of Kaldi data dirs: good dirs and every kind of broken one."""

from __future__ import annotations

import pytest

from datadir_helpers import good_tables, raw_good, write_raw
from w2vtk.data import (format_seconds, load_data_dir, read_kv, validate_data_dir, write_data_dir,
                        write_kv)
from w2vtk.errors import W2vtkError


def test_write_kv_sorts_bytewise_and_read_kv_roundtrips(tmp_path):
    mapping = {"b_1": "x", "b-1": "y  z", "B-1": 1.25, "a": "", "é-1": 3}
    write_kv(tmp_path / "t", mapping)
    lines = (tmp_path / "t").read_text().splitlines()
    # C locale is byte order: 'B' (0x42) < 'a' < 'b-' ('-' 0x2d) < 'b_' ('_' 0x5f) < 'é' (0xc3 0xa9)
    assert [line.split()[0] for line in lines] == ["B-1", "a", "b-1", "b_1", "é-1"]
    assert lines[0] == "B-1 1.25" and lines[1] == "a"
    assert read_kv(tmp_path / "t") == {"B-1": "1.25", "a": "", "b-1": "y  z", "b_1": "x", "é-1": "3"}


def test_write_kv_rejects_bad_keys_and_values(tmp_path):
    with pytest.raises(W2vtkError, match="invalid key"):
        write_kv(tmp_path / "t", {"a b": "x"})
    with pytest.raises(W2vtkError, match="line break"):
        write_kv(tmp_path / "t", {"a": "x\ny"})
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("content, message", [
    (b"b x\na y\n", "t:2: not sorted"),
    (b"a x\na y\n", "t:2: duplicate key 'a'"),
    (b"a x\r\nb y\r\n", "t:1: contains a carriage return"),
    (b"a x\nb y", "t:2: last line is not newline-terminated"),
    (b"a x\n\nb y\n", "t:2: empty line"),
    (b"a x\nb \xff\xfe\n", "t:2: not valid UTF-8"),
])
def test_read_kv_strict_errors_name_file_and_line(tmp_path, content, message):
    (tmp_path / "t").write_bytes(content)
    with pytest.raises(W2vtkError, match=message):
        read_kv(tmp_path / "t")


def test_read_kv_missing_file(tmp_path):
    with pytest.raises(W2vtkError, match="no such file"):
        read_kv(tmp_path / "nope")


def test_write_data_dir_good_and_load(tmp_path):
    out = tmp_path / "d"
    dd = write_data_dir(out, **good_tables())
    assert validate_data_dir(out) == []
    assert (out / "spk2utt").read_text().splitlines()[0] == "spkA spkA-000 spkA-001 spkA-002 spkA-003"
    assert (out / "utt2dur").read_text().splitlines()[1] == "spkA-001 1.1"
    loaded = load_data_dir(out)
    assert loaded.utt_ids == dd.utt_ids and len(loaded.utt_ids) == 9
    assert loaded.text["spkB-000"] == "hello world 4"
    assert loaded.extra["text.words"]["spkB-000"] == "HELLO WORLD 4"
    assert loaded.wav_scp["spkA-001"].endswith("|")
    assert loaded.speakers()["spkC"] == ["spkC-000", "spkC-001"]
    assert loaded.spk2gender == {"spkA": "f", "spkB": "m", "spkC": "f"}
    assert loaded.segments is None and loaded.feats_scp is None
    assert loaded.recording("spkA-000") == ("spkA-000", 0.0, None)
    assert sum(loaded.durations().values()) == pytest.approx(sum(1.0 + 0.1 * i for i in range(9)))
    for name in ("wav.scp", "text", "utt2spk", "spk2utt", "utt2dur", "spk2gender", "text.words"):
        assert (out / name).read_bytes().endswith(b"\n")


def test_write_data_dir_segments_tuples_and_durations(tmp_path):
    out = tmp_path / "d"
    write_data_dir(out, wav_scp={"rec1": "/a.wav"}, text={"s-1": ["a", "b"], "s-2": "c"},
                   utt2spk={"s-1": "s", "s-2": "s"},
                   segments={"s-1": ("rec1", 0.0, 1.25), "s-2": ("rec1", 1.25, 3.0000625)})
    assert (out / "segments").read_text() == "s-1 rec1 0 1.25\ns-2 rec1 1.25 3.0000625\n"
    dd = load_data_dir(out)
    assert dd.text["s-1"] == "a b"
    assert dd.recording("s-2") == ("rec1", 1.25, 3.0000625)
    assert dd.durations()["s-1"] == pytest.approx(1.25)
    assert format_seconds(2.0) == "2" and format_seconds(0.00000001) == "0"
    assert format_seconds(1.3000000000000003) == "1.3"


def test_write_data_dir_invalid_writes_nothing(tmp_path):
    kwargs = good_tables()
    kwargs["text"]["spkA-000"] = "hello <s> world"
    out = tmp_path / "d"
    with pytest.raises(W2vtkError, match="reserved token"):
        write_data_dir(out, **kwargs)
    assert not out.exists()
    kwargs = good_tables()
    del kwargs["utt2dur"]["spkC-001"]
    with pytest.raises(W2vtkError, match=r"utt2dur: 1 utterance\(s\) of utt2spk missing \(spkC-001\)"):
        write_data_dir(out, **kwargs)
    assert not out.exists()


def test_write_data_dir_removes_stale_files(tmp_path):
    out = tmp_path / "d"
    write_data_dir(out, **good_tables())
    (out / "cmvn.scp").write_text("spkA x\n")
    kwargs = good_tables(durations=False)
    del kwargs["extra"]
    write_data_dir(out, **kwargs)
    assert not (out / "utt2dur").exists() and not (out / "text.words").exists()
    assert (out / "cmvn.scp").exists()  # not a table this function writes: left alone
    assert validate_data_dir(out) == []


def _problems(tmp_path, **changes):
    files = raw_good()
    for name, content in changes.items():
        name = name.replace("__", ".")
        if content is None:
            files.pop(name)
        else:
            files[name] = content
    write_raw(tmp_path / "d", files)
    return validate_data_dir(tmp_path / "d")


def test_raw_good_is_valid(tmp_path):
    assert _problems(tmp_path) == []


@pytest.mark.parametrize("changes, expected", [
    ({"text": "a-2 two\na-1 one\nb-1 three\n"}, "text:2: not sorted: 'a-1' after 'a-2'"),
    ({"text": "a-1 one\na-1 uno\na-2 two\nb-1 three\n"}, "text:2: duplicate key 'a-1'"),
    ({"text": "a-1 one\nb-1 three\n"}, "text: 1 utterance(s) of utt2spk missing (a-2)"),
    ({"utt2dur": "a-1 1.5\na-2 2\nb-1 0.5\nc-1 1\n"}, "utt2dur: 1 utterance(s) not in utt2spk (c-1)"),
    ({"text": "a-1 one\r\na-2 two\nb-1 three\n"}, "text:1: contains a carriage return"),
    ({"text": "a-1 one\na-2 two\nb-1 three"}, "text:3: last line is not newline-terminated"),
    ({"text": "a-1 one </s>\na-2 two\nb-1 three\n"}, "text:1: utterance 'a-1' contains reserved token(s) </s>"),
    ({"text": "a-1 #0\na-2 two\nb-1 three\n"}, "reserved token(s) #0"),
    ({"utt2spk": "a-1 a x\na-2 a\nb-1 b\n"}, "utt2spk:1: expected exactly 2 fields"),
    ({"utt2spk": "a-1 z\na-2 a\nb-1 b\n", "spk2utt": "a a-2\nb b-1\nz a-1\n"},
     "not sorted when grouped by speaker"),
    ({"spk2utt": "a a-1\nb b-1\n"}, "spk2utt:1: utterances of speaker 'a' differ from utt2spk"),
    ({"spk2utt": "a a-1 a-2\n"}, "spk2utt: 1 speaker(s) of utt2spk missing (b)"),
    ({"spk2utt": None}, "spk2utt: missing"),
    ({"text": None}, "text: missing (required)"),
    ({"wav__scp": "a-1 ~/a1.wav\na-2 /x/a2.wav\nb-1 /x/b1.wav\n"}, "wav.scp:1: path '~/a1.wav' starts with '~'"),
    ({"wav__scp": "a-1 /x/a1.wav\na-2 |\nb-1 /x/b1.wav\n"}, "wav.scp:2: empty pipe command"),
    ({"utt2dur": "a-1 1.5\na-2 0\nb-1 0.5\n"}, "utt2dur:2: must be a number > 0"),
    ({"utt2num_frames": "a-1 10\na-2 1.5\nb-1 3\n"}, "utt2num_frames:2: must be an integer > 0"),
    ({"spk2gender": "a m\nb x\n"}, "spk2gender:2: gender of 'b' must be m or f"),
    ({"spk2gender": "a m\n"}, "spk2gender: 1 speaker(s) of utt2spk missing (b)"),
    ({"text__words": "a-1 ONE\nb-1 THREE\n"}, "text.words: 1 utterance(s) of utt2spk missing (a-2)"),
    ({"feats__scp": "a-1 f.ark:1\na-2\nb-1 f.ark:9\n"}, "feats.scp:2: utterance 'a-2' has no rxfilename"),
    ({"text": "a-1 one\n\na-2 two\nb-1 three\n"}, "text:2: empty line"),
])
def test_validate_reports_each_problem(tmp_path, changes, expected):
    problems = _problems(tmp_path, **changes)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("segments, expected", [
    ("a-1 r1 0 1\na-2 r1 1 1\nb-1 r2 0 2\n", "segments:2: need 0 <= start < end, got 1 1"),
    ("a-1 r1 0 1\na-2 r1 2 1.5\nb-1 r2 0 2\n", "segments:2: need 0 <= start < end"),
    ("a-1 r1 0 1\na-2 r9 1 2\nb-1 r2 0 2\n", "segments:2: recording 'r9' not in wav.scp"),
    ("a-1 r1 0\na-2 r1 1 2\nb-1 r2 0 2\n", "segments:1: expected 4 fields"),
    ("a-1 r1 0 x\na-2 r1 1 2\nb-1 r2 0 2\n", "segments:1: start/end not numbers"),
    ("a-1 r1 0 1\nb-1 r2 0 2\n", "segments: 1 utterance(s) of utt2spk missing (a-2)"),
])
def test_validate_segments(tmp_path, segments, expected):
    problems = _problems(tmp_path, wav__scp="r1 /x/r1.wav\nr2 /x/r2.wav\n", segments=segments)
    assert any(expected in p for p in problems), problems


def test_validate_good_segments_dir(tmp_path):
    problems = _problems(tmp_path, wav__scp="r1 /x/r1.wav\nr2 /x/r2.wav\n",
                         segments="a-1 r1 0 1\na-2 r1 1 2.5\nb-1 r2 0.2 2\n", utt2dur=None)
    assert problems == []
    assert load_data_dir(tmp_path / "d").durations() == pytest.approx({"a-1": 1.0, "a-2": 1.5, "b-1": 1.8})


def test_validate_without_segments_needs_wav_keys_equal_utts(tmp_path):
    problems = _problems(tmp_path, wav__scp="a-1 /x/a1.wav\nb-1 /x/b1.wav\n")
    assert problems == ["wav.scp: 1 utterance(s) of utt2spk missing (a-2)"]


def test_validate_non_utf8_raises_with_file_and_line(tmp_path):
    write_raw(tmp_path / "d", {**raw_good(), "text": b"a-1 one\na-2 caf\xe9\nb-1 three\n"})
    with pytest.raises(W2vtkError, match=r"text:2: not valid UTF-8"):
        validate_data_dir(tmp_path / "d")


def test_validate_missing_dir(tmp_path):
    with pytest.raises(W2vtkError, match="does not exist"):
        validate_data_dir(tmp_path / "nope")


def test_load_data_dir_raises_first_problem_with_count(tmp_path):
    write_raw(tmp_path / "d", {**raw_good(), "text": "a-2 two\na-1 one\n"})
    with pytest.raises(W2vtkError) as info:
        load_data_dir(tmp_path / "d")
    message = str(info.value)
    assert "text:2: not sorted" in message and "and 1 more" in message and "\n" not in message
    dd = load_data_dir(tmp_path / "d", validate=False)
    assert set(dd.text) == {"a-1", "a-2"}


def test_load_without_text_when_allowed(tmp_path):
    files = raw_good()
    del files["text"]
    write_raw(tmp_path / "d", files)
    with pytest.raises(W2vtkError, match="text: missing"):
        load_data_dir(tmp_path / "d")
    assert load_data_dir(tmp_path / "d", require_text=False).text == {}


def test_read_kv_any_order_accepts_unsorted_and_unterminated_but_nothing_else(tmp_path):
    path = tmp_path / "hyp.txt"
    path.write_text("u2 b  c\nu1 a")
    with pytest.raises(W2vtkError, match="hyp.txt:2: last line is not newline-terminated .and 1 more"):
        read_kv(path)
    assert list(read_kv(path, any_order=True).items()) == [("u2", "b  c"), ("u1", "a")]  # file order
    path.write_text("u2 b\nu2 c\n")
    with pytest.raises(W2vtkError, match="hyp.txt:2: duplicate utterance id 'u2'"):
        read_kv(path, any_order=True, what="utterance id")
    for bad, where in (("u2 b\r\nu1 a\n", "hyp.txt:1: contains a carriage return"), ("u2 b\n\nu1 a\n", "hyp.txt:2: empty line")):
        path.write_text(bad)
        with pytest.raises(W2vtkError, match=where):
            read_kv(path, any_order=True)
