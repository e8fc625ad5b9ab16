"""fix_data_dir, subset_data_dir, combine_data_dirs and the balanced order behind subset."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datadir_helpers import good_tables, raw_good, write_raw
from w2vtk.data import (balanced_order, combine_data_dirs, fix_data_dir, load_data_dir, read_kv,
                        subset_data_dir, validate_data_dir, write_data_dir)
from w2vtk.errors import W2vtkError

# ------------------------------------------------------------------------------------------ fix


def test_fix_keeps_intersection_with_extras_and_backs_up(tmp_path):
    files = {
        # b-1 lacks text.words, c-1 lacks text, d-1 has a bad duration, e-1 a bad utt2spk line,
        # the text is unsorted with a CR and a duplicate.
        "wav.scp": "a-1 /x/a1.wav\na-2 /x/a2.wav\nb-1 /x/b1.wav\nc-1 /x/c1.wav\nd-1 /x/d1.wav\ne-1 /x/e1.wav\n",
        "text": "a-2 two\r\na-1 one\nb-1 three\nd-1 four\ne-1 five\na-1 again\n",
        "text.words": "a-1 ONE\na-2 TWO\nc-1 C\nd-1 FOUR\ne-1 FIVE\n",
        "utt2spk": "a-1 a\na-2 a\nb-1 b\nc-1 c\nd-1 d\ne-1 e extra\n",
        "utt2dur": "a-1 1\na-2 2\nb-1 3\nc-1 4\nd-1 0\ne-1 5\n",
        "spk2gender": "a f\nb m\nc m\nd f\ne m\n",
    }
    d = write_raw(tmp_path / "d", files)
    assert validate_data_dir(d) != []
    kept, total = fix_data_dir(d)
    assert (kept, total) == (2, 6)
    assert validate_data_dir(d) == []
    assert (d / "text").read_text() == "a-1 one\na-2 two\n"  # first of the duplicates kept
    assert (d / "text.words").read_text() == "a-1 ONE\na-2 TWO\n"
    assert (d / "wav.scp").read_text() == "a-1 /x/a1.wav\na-2 /x/a2.wav\n"
    assert (d / "spk2utt").read_text() == "a a-1 a-2\n"
    assert (d / "spk2gender").read_text() == "a f\n"
    for name, content in files.items():
        assert (d / ".backup" / name).read_bytes() == content.encode()


def test_fix_segments_keeps_used_recordings_only(tmp_path):
    d = write_raw(tmp_path / "d", {
        "wav.scp": "r1 /x/r1.wav\nr2 /x/r2.wav\nr3 /x/r3.wav\n",
        "segments": "a-1 r1 0 1\na-2 r2 2 1\nb-1 r3 0 2\nb-2 r9 0 1\n",
        "text": "a-1 x\na-2 y\nb-1 z\nb-2 w\n",
        "utt2spk": "a-1 a\na-2 a\nb-1 b\nb-2 b\n",
        "reco2dur": "r1 5\nr2 5\nr3 5\n",
    })
    assert fix_data_dir(d) == (2, 4)
    assert (d / "segments").read_text() == "a-1 r1 0 1\nb-1 r3 0 2\n"
    assert (d / "wav.scp").read_text() == "r1 /x/r1.wav\nr3 /x/r3.wav\n"
    assert (d / "reco2dur").read_text() == "r1 5\nr3 5\n"
    assert (d / "spk2utt").read_text() == "a a-1\nb b-1\n"  # spk2utt created
    assert validate_data_dir(d) == []


def test_fix_nothing_in_common_writes_nothing(tmp_path):
    files = {**raw_good(), "text": "z-1 nothing\n"}
    d = write_raw(tmp_path / "d", files)
    with pytest.raises(W2vtkError, match="no utterance is present and valid in every file"):
        fix_data_dir(d)
    assert (d / "utt2spk").read_text() == raw_good()["utt2spk"]
    assert not (d / ".backup").exists()


def test_fix_cannot_repair_speaker_order_and_says_so_via_validate(tmp_path):
    d = write_raw(tmp_path / "d", {**raw_good(), "utt2spk": "a-1 z\na-2 a\nb-1 b\n"})
    assert fix_data_dir(d) == (3, 3)
    assert any("not sorted when grouped by speaker" in p for p in validate_data_dir(d))


def test_fix_non_utf8_raises(tmp_path):
    d = write_raw(tmp_path / "d", {**raw_good(), "text": b"a-1 \xff\n"})
    with pytest.raises(W2vtkError, match="text:1: not valid UTF-8"):
        fix_data_dir(d)


# ---------------------------------------------------------------------------------- subset

@pytest.fixture()
def src(tmp_path):
    d = tmp_path / "src"
    write_data_dir(d, **good_tables())
    return d


def _per_speaker(d):
    return Counter(read_kv(d / "utt2spk").values())


def test_subset_utts_balanced_deterministic_and_in_step(tmp_path, src):
    a = subset_data_dir(src, tmp_path / "a", utts=6, seed=3)
    b = subset_data_dir(src, tmp_path / "b", utts=6, seed=3)
    assert a.utt_ids == b.utt_ids and len(a.utt_ids) == 6
    assert sorted(_per_speaker(tmp_path / "a").values()) == [2, 2, 2]
    for name in ("wav.scp", "text", "utt2spk", "spk2utt", "utt2dur", "text.words", "spk2gender"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    assert validate_data_dir(tmp_path / "a") == []
    assert set(read_kv(tmp_path / "a" / "text.words")) == set(a.utt_ids)
    src_text = read_kv(src / "text")
    assert all(src_text[u] == t for u, t in a.text.items())
    picks = {tuple(subset_data_dir(src, tmp_path / f"s{s}", utts=4, seed=s).utt_ids) for s in range(6)}
    assert len(picks) > 1  # the seed matters


def test_subset_few_utts_spread_over_speakers_and_drops_unused_genders(tmp_path, src):
    dd = subset_data_dir(src, tmp_path / "a", utts=2, seed=0)
    assert len(set(dd.utt2spk.values())) == 2
    assert set(read_kv(tmp_path / "a" / "spk2gender")) == set(dd.utt2spk.values())


def test_subset_hours(tmp_path, src):
    durations = {u: float(v) for u, v in read_kv(src / "utt2dur").items()}
    target_h = 5.0 / 3600
    dd = subset_data_dir(src, tmp_path / "h", hours=target_h, seed=1)
    picked = [durations[u] for u in dd.utt_ids]
    assert sum(picked) >= 5.0
    assert sum(picked) - max(picked) < 5.0 + 1e-9 or len(picked) == 1
    assert subset_data_dir(src, tmp_path / "h2", hours=target_h, seed=1).utt_ids == dd.utt_ids
    assert max(_per_speaker(tmp_path / "h").values()) - min(_per_speaker(tmp_path / "h").values()) <= 1


def test_subset_hours_from_segments(tmp_path):
    d = write_raw(tmp_path / "d", {
        "wav.scp": "r1 /x/r1.wav\nr2 /x/r2.wav\n",
        "segments": "a-1 r1 0 10\na-2 r1 10 20\nb-1 r2 0 10\n",
        "text": "a-1 x\na-2 y\nb-1 z\n",
        "utt2spk": "a-1 a\na-2 a\nb-1 b\n",
        "spk2utt": "a a-1 a-2\nb b-1\n",
    })
    dd = subset_data_dir(d, tmp_path / "o", hours=15 / 3600)
    assert len(dd.utt_ids) == 2 and set(dd.utt2spk.values()) == {"a", "b"}
    assert set((tmp_path / "o" / "wav.scp").read_text().split()) >= {"r1", "r2"}


def test_subset_copies_speaker_and_recording_tables(tmp_path):
    d = write_raw(tmp_path / "d", {
        "wav.scp": "r1 /x/r1.wav\nr2 /x/r2.wav\n",
        "segments": "a-1 r1 0 10\na-2 r1 10 20\nb-1 r2 0 10\n",
        "text": "a-1 x\na-2 y\nb-1 z\n", "utt2spk": "a-1 a\na-2 a\nb-1 b\n",
        "spk2utt": "a a-1 a-2\nb b-1\n", "reco2dur": "r1 20\nr2 10\n",
        "cmvn.scp": "a cmvn.ark:1\nb cmvn.ark:9\n", "reco2file_and_channel": "r1 r1 A\nr2 r2 A\n"})
    subset_data_dir(d, tmp_path / "o", spk_list=["b"])
    o = tmp_path / "o"
    assert (o / "cmvn.scp").read_text() == "b cmvn.ark:9\n"
    assert (o / "reco2file_and_channel").read_text() == "r2 r2 A\n"
    assert (o / "reco2dur").read_text() == "r2 10\n" and (o / "wav.scp").read_text() == "r2 /x/r2.wav\n"
    assert validate_data_dir(o) == []


def test_subset_spk_list(tmp_path, src):
    lst = tmp_path / "spk.list"
    lst.write_text("spkC\nspkA extra-field\n\n")
    dd = subset_data_dir(src, tmp_path / "o", spk_list=lst)
    assert set(dd.utt2spk.values()) == {"spkA", "spkC"} and len(dd.utt_ids) == 6
    assert (tmp_path / "o" / "spk2gender").read_text() == "spkA f\nspkC f\n"
    assert subset_data_dir(src, tmp_path / "o2", spk_list=["spkB"]).utt_ids == ["spkB-000", "spkB-001", "spkB-002"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(utts=10), "asked for 10 utterances but"),
    (dict(utts=0), "must be > 0"),
    (dict(hours=1.0), "asked for 1 h but"),
    (dict(spk_list=["spkA", "nobody"]), "1 speaker\\(s\\) not in .*spk2utt: nobody"),
    (dict(utts=2, hours=1.0), "exactly one of"),
    (dict(), "exactly one of"),
])
def test_subset_errors(tmp_path, src, kwargs, message):
    with pytest.raises(W2vtkError, match=message):
        subset_data_dir(src, tmp_path / "o", **kwargs)
    assert not (tmp_path / "o").exists()


def test_subset_refuses_same_dir_and_hours_without_durations(tmp_path, src):
    with pytest.raises(W2vtkError, match="is the source"):
        subset_data_dir(src, src, utts=1)
    d = tmp_path / "nodur"
    write_data_dir(d, **good_tables(durations=False))
    with pytest.raises(W2vtkError, match="neither utt2dur nor segments"):
        subset_data_dir(d, tmp_path / "o", hours=0.001)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=6), st.integers(0, 1000))
def test_balanced_order_prefixes_are_balanced(counts, seed):
    speakers = {f"s{i}": [f"s{i}-{j}" for j in range(c)] for i, c in enumerate(counts)}
    order = balanced_order(speakers, seed)
    assert sorted(order) == sorted(u for us in speakers.values() for u in us)
    assert order == balanced_order(speakers, seed)
    for n in range(1, len(order) + 1):
        per = Counter(u.split("-")[0] for u in order[:n])
        not_exhausted = [per.get(s, 0) for s in speakers if per.get(s, 0) < len(speakers[s])]
        if not_exhausted:
            assert max(per.values()) - min(not_exhausted) <= 1


# --------------------------------------------------------------------------------- combine

def _two_dirs(tmp_path):
    kw = good_tables()
    keep_a = {u for u in kw["utt2spk"] if u.startswith("spkA")}

    def part(keep):
        out = {}
        for name, table in kw.items():
            if name == "extra":
                out[name] = {n: {u: v for u, v in t.items() if u in keep} for n, t in table.items()}
            elif name == "spk2gender":
                out[name] = {s: g for s, g in table.items() if any(u.startswith(s) for u in keep)}
            else:
                out[name] = {u: v for u, v in table.items() if u in keep}
        return out

    write_data_dir(tmp_path / "a", **part(keep_a))
    write_data_dir(tmp_path / "b", **part(set(kw["utt2spk"]) - keep_a))
    return tmp_path / "a", tmp_path / "b"


def test_combine_two_dirs(tmp_path):
    a, b = _two_dirs(tmp_path)
    whole = tmp_path / "whole"
    write_data_dir(whole, **good_tables())
    assert combine_data_dirs(tmp_path / "c", [b, a]) == []
    for name in ("wav.scp", "text", "utt2spk", "spk2utt", "utt2dur", "text.words", "spk2gender"):
        assert (tmp_path / "c" / name).read_text() == (whole / name).read_text()


def test_combine_drops_files_missing_in_some_with_warning(tmp_path):
    a, b = _two_dirs(tmp_path)
    (b / "text.words").unlink()
    (b / "utt2dur").unlink()
    warnings = combine_data_dirs(tmp_path / "c", [a, b])
    assert warnings == [f"combine: text.words missing in {b}; not written to {tmp_path / 'c'}",
                        f"combine: utt2dur missing in {b}; not written to {tmp_path / 'c'}"]
    assert not (tmp_path / "c" / "utt2dur").exists() and not (tmp_path / "c" / "text.words").exists()
    assert validate_data_dir(tmp_path / "c") == []


def test_combine_duplicate_ids_named(tmp_path):
    a, b = _two_dirs(tmp_path)
    with pytest.raises(W2vtkError, match=r"4 utterance id\(s\) in more than one source: spkA-000 \("):
        combine_data_dirs(tmp_path / "c", [a, b, _copy(a, tmp_path / "a2")])
    assert not (tmp_path / "c").exists()


def _copy(src, dst):
    import shutil
    shutil.copytree(src, dst)
    return dst


def test_combine_mixed_segments_and_invalid_source(tmp_path):
    seg = write_raw(tmp_path / "seg", {
        "wav.scp": "rec /x/rec.wav\n", "segments": "x-1 rec 0 1\nx-2 rec 1 3\n",
        "text": "x-1 a\nx-2 b\n", "utt2spk": "x-1 x\nx-2 x\n", "spk2utt": "x x-1 x-2\n",
        "utt2dur": "x-1 1\nx-2 2\n"})
    plain = write_raw(tmp_path / "plain", raw_good())
    assert combine_data_dirs(tmp_path / "c", [seg, plain]) == []
    dd = load_data_dir(tmp_path / "c")
    assert dd.segments["a-2"] == "a-2 0 2" and dd.segments["x-2"] == "rec 1 3"
    assert set(dd.wav_scp) == {"rec", "a-1", "a-2", "b-1"}
    broken = write_raw(tmp_path / "broken", {**raw_good(), "text": "a-2 two\na-1 one\nb-1 x\n"})
    with pytest.raises(W2vtkError, match=r"broken/text:2: not sorted"):
        combine_data_dirs(tmp_path / "c2", [seg, broken])


def test_combine_conflicting_recording(tmp_path):
    files = {"wav.scp": "rec /x/one.wav\n", "segments": "x-1 rec 0 1\n", "text": "x-1 a\n",
             "utt2spk": "x-1 x\n", "spk2utt": "x x-1\n"}
    one = write_raw(tmp_path / "one", files)
    two = write_raw(tmp_path / "two", {**files, "wav.scp": "rec /x/two.wav\n", "segments": "y-1 rec 1 2\n",
                                       "text": "y-1 b\n", "utt2spk": "y-1 y\n", "spk2utt": "y y-1\n"})
    with pytest.raises(W2vtkError, match="wav.scp 'rec' differs between"):
        combine_data_dirs(tmp_path / "c", [one, two])


def test_subset_and_combine_keep_the_role(tmp_path, src):
    from w2vtk.data.kaldi_dir import read_role, write_role

    write_role(src, "test")
    subset_data_dir(src, tmp_path / "sub", utts=2)
    assert read_role(tmp_path / "sub") == "test"
    speakers = sorted(load_data_dir(src).speakers())
    subset_data_dir(src, tmp_path / "a", spk_list=speakers[:1])
    subset_data_dir(src, tmp_path / "b", spk_list=speakers[1:2])
    write_role(tmp_path / "b", "dev")
    combine_data_dirs(tmp_path / "both", [tmp_path / "a", tmp_path / "b"])
    assert read_role(tmp_path / "both") == "test"  # any test source makes a test set
    write_role(tmp_path / "a", "train")
    combine_data_dirs(tmp_path / "mixed", [tmp_path / "a", tmp_path / "b"])
    assert read_role(tmp_path / "mixed") is None  # train + dev: no single role
    with pytest.raises(W2vtkError, match="role must be one of"):
        write_role(tmp_path / "b", "eval")
