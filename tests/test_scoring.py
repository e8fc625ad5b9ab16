"""Scoring: compute-wer counts (tie cases worked by hand), lines, LER/PER, filters, files, CLI."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cli_helpers import run_main
from w2vtk.errors import W2vtkError
from w2vtk.scoring import (Counts, align, counts_of, error_counts, format_alignment, kaldi_wsj_filter,
                           letters_of, score_files, score_texts)


def words(s):
    return s.split()


# --- counts and lines ---------------------------------------------------------------------------

def test_kaldi_line_format():
    c = Counts(ins=45, dels=22, subs=197, ref_len=5643)
    assert c.errors == 264
    assert c.kaldi_line() == "%WER 4.68 [ 264 / 5643, 45 ins, 22 del, 197 sub ]"
    assert c.kaldi_line("LER", partial=True) == "%LER 4.68 [ 264 / 5643, 45 ins, 22 del, 197 sub ] [PARTIAL]"
    assert Counts(0, 0, 1, 3).kaldi_line("PER") == "%PER 33.33 [ 1 / 3, 0 ins, 0 del, 1 sub ]"
    # compute-wer stores the percentage in a 32-bit float before printing: 98.054996... -> 98.06
    assert Counts(0, 0, 1462, 1491).kaldi_line().startswith("%WER 98.06 [")
    assert Counts(0, 0, 1074, 1541).kaldi_line().startswith("%WER 69.69 [")


# Hand-worked with Kaldi's rule (going back from the end: match/sub only when strictly cheaper,
# else deletion when strictly cheaper than insertion, else insertion).
#  ref a b / hyp c a: at (b, a) sub=2, del=2, ins=3 -> del b; (a, a) match; c inserted.
#     rapidfuzz's editops gives 2 sub here: same distance, different split.
#  ref a b / hyp b c: at (b, c) sub=2, ins=2, del=3 -> ins c; (b, b) match; a deleted.
#  ref a / hyp b c: at (a, c) sub=2, ins=2 -> ins c; (a, b) sub.
#  ref a b c / hyp a x c: one sub, no tie.
#  ref x / hyp x x: at (x, 2nd x) match=1 ties ins=1 -> the 2nd x is the insertion.
TIES = [
    ("a b", "c a", (1, 1, 0), [(None, "c"), ("a", "a"), ("b", None)]),
    ("a b", "b c", (1, 1, 0), [("a", None), ("b", "b"), (None, "c")]),
    ("a", "b c", (1, 0, 1), [("a", "b"), (None, "c")]),
    ("a b c", "a x c", (0, 0, 1), [("a", "a"), ("b", "x"), ("c", "c")]),
    ("x", "x x", (1, 0, 0), [("x", "x"), (None, "x")]),
    ("a b", "", (0, 2, 0), [("a", None), ("b", None)]),
    ("", "a", (1, 0, 0), [(None, "a")]),
]


@pytest.mark.parametrize("ref,hyp,split,alignment", TIES)
def test_tie_cases_split_like_kaldi(ref, hyp, split, alignment):
    ali = align(words(ref), words(hyp))
    assert ali == alignment
    c = counts_of(ali)
    assert (c.ins, c.dels, c.subs) == split
    assert c.ref_len == len(words(ref))
    assert error_counts([words(ref)], [words(hyp)]) == c


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from("abc"), max_size=9), st.lists(st.sampled_from("abcd"), max_size=9))
def test_counts_match_levenshtein_and_kaldi_edit_distance(ref, hyp):
    import kaldialign
    from rapidfuzz.distance import Levenshtein

    c = error_counts([ref], [hyp])
    # Total: an independent implementation of unit-cost Levenshtein.
    assert c.errors == Levenshtein.distance(ref, hyp)
    assert c.ins - c.dels == len(hyp) - len(ref)
    # Split: Kaldi's LevenshteinEditDistance (compute-wer's function), not the alignment routine.
    if ref and hyp:
        kd = kaldialign.edit_distance(ref, hyp)
        assert (c.ins, c.dels, c.subs) == (kd["ins"], kd["del"], kd["sub"])


def test_error_counts_sums_utterances():
    c = error_counts([words("a b"), words("a b c d")], [words("c a"), words("a c d e")])
    assert c == Counts(ins=2, dels=2, subs=0, ref_len=6)


# --- metrics ------------------------------------------------------------------------------------

def test_ler_is_wav2letter_letters():
    assert letters_of(["ab", "cd"]) == ["a", "b", "|", "c", "d"]
    assert letters_of([]) == []
    r = score_texts({"u1": "the cat"}, {"u1": "the cap"}, ["ler"])
    assert r.metrics["ler"].kaldi_line() == "%LER 14.29 [ 1 / 7, 0 ins, 0 del, 1 sub ]"
    # A missing word boundary costs one deletion: "thecat" vs "the cat".
    r = score_texts({"u1": "the cat"}, {"u1": "thecat"}, ["ler", "wer"], check_tokens=False)
    assert r.metrics["ler"].counts == Counts(0, 1, 0, 7)
    assert r.metrics["wer"].counts == Counts(0, 1, 1, 2)


def test_per_folds_both_sides_to_39():
    # ref: q deleted, ao->aa, ax->ah, pcl->sil; hyp already 48/39 labels.
    r = score_texts({"u1": "h# ao q ax pcl dx"}, {"u1": "sil aa ah cl dx"}, ["per"])
    assert r.metrics["per"].kaldi_line() == "%PER 0.00 [ 0 / 5, 0 ins, 0 del, 0 sub ]"
    r = score_texts({"u1": "sil ao ax dx"}, {"u1": "sil aa ix dx sil"}, ["per"])  # ix->ih != ah
    assert r.metrics["per"].counts == Counts(ins=1, dels=0, subs=1, ref_len=4)
    assert r.metrics["per"].alignments["u1"][-1] == (None, "sil")  # repeated sil is not merged


def test_per_unknown_phone_names_utterance():
    with pytest.raises(W2vtkError, match="utt7.*'xx'"):
        score_texts({"utt7": "sil aa"}, {"utt7": "sil xx"}, ["per"], hyp_name="hyp.txt")


def test_empty_reference_line_counts_insertions():
    r = score_texts({"u1": "", "u2": "a b"}, {"u1": "x y", "u2": "a b"}, ["wer"], check_tokens=False)
    assert r.metrics["wer"].kaldi_line() == "%WER 100.00 [ 2 / 2, 2 ins, 0 del, 0 sub ]"
    assert r.metrics["wer"].utt_counts["u1"].rate is None
    assert r.lines()[-2:] == ["%SER 50.00 [ 1 / 2 ]", "Scored 2 sentences, 0 not present in hyp."]
    with pytest.raises(W2vtkError, match="no reference tokens"):
        score_texts({"u1": ""}, {"u1": "x"}, ["wer"], check_tokens=False)


# --- missing and unknown hypotheses -------------------------------------------------------------

REF = {"u1": "a b c", "u2": "d e", "u3": "f"}


def test_missing_hypothesis_mode_all_counts_deletions_and_is_partial():
    r = score_texts(REF, {"u1": "a b c", "u3": "f"}, ["wer"])
    assert r.lines() == ["%WER 33.33 [ 2 / 6, 0 ins, 2 del, 0 sub ] [PARTIAL]",
                         "%SER 33.33 [ 1 / 3 ]",
                         "Scored 3 sentences, 1 not present in hyp."]
    assert r.missing == ["u2"]


def test_missing_hypothesis_mode_present_skips():
    r = score_texts(REF, {"u1": "a x c", "u3": "f"}, ["wer"], mode="present")
    assert r.lines() == ["%WER 25.00 [ 1 / 4, 0 ins, 0 del, 1 sub ] [PARTIAL]",
                         "%SER 50.00 [ 1 / 2 ]",
                         "Scored 2 sentences, 1 not present in hyp."]


def test_missing_hypothesis_mode_strict_refuses():
    with pytest.raises(W2vtkError, match="u2"):
        score_texts(REF, {"u1": "a b c", "u3": "f"}, ["wer"], mode="strict")


def test_unknown_hypothesis_ids_are_named():
    with pytest.raises(W2vtkError, match=r"hyp\.txt: 2 utterance id\(s\) not in ref\.txt: zz1, zz2"):
        score_texts(REF, {"u1": "a", "zz1": "a", "zz2": "b"}, ref_name="ref.txt", hyp_name="hyp.txt")


# --- guard, case, filter ------------------------------------------------------------------------

def test_wrong_case_guard_and_case_fold():
    ref = {"u1": "THE CAT SAT", "u2": "ON THE MAT"}
    hyp = {"u1": "the cat sat", "u2": "on the hat"}
    with pytest.raises(W2vtkError, match="only 0 of 6 hypothesis words.*--case-fold"):
        score_texts(ref, hyp, ["wer"])
    r = score_texts(ref, hyp, ["wer", "ler"], case_fold=True)
    assert r.metrics["wer"].counts == Counts(0, 0, 1, 6)
    assert r.metrics["ler"].counts == Counts(0, 0, 1, 21)  # 9 + 2 and 8 + 2 tokens
    r = score_texts(ref, hyp, ["wer"], check_tokens=False)
    assert r.metrics["wer"].counts.errors == 6


def test_wrong_token_set_guard():
    with pytest.raises(W2vtkError, match="wrong case or wrong token set"):
        score_texts({"u1": "the cat sat"}, {"u1": "dh ah k ae t"}, ["wer"])
    # exactly half found passes (the rule is "fewer than half")
    r = score_texts({"u1": "a b"}, {"u1": "a z"}, ["wer"])
    assert r.metrics["wer"].counts.subs == 1


def test_kaldi_wsj_filter():
    assert kaldi_wsj_filter(words("<NOISE> THE *CAT* SAT: <SPOKEN_NOISE> <UNK> : *")) == ["THE", "CAT", "SAT"]
    ref = {"u1": "<NOISE> THE *CAT* SAT: ON IT"}
    hyp = {"u1": "THE CAT <UNK> SAT ON IT <SPOKEN_NOISE>"}
    r = score_texts(ref, hyp, ["wer"], filter="kaldi-wsj")
    assert r.metrics["wer"].kaldi_line() == "%WER 0.00 [ 0 / 5, 0 ins, 0 del, 0 sub ]"
    # Unfiltered: <NOISE> deleted; *CAT* SAT: vs CAT <UNK> SAT: 2 sub + 1 ins; <SPOKEN_NOISE> inserted.
    r = score_texts(ref, hyp, ["wer"], check_tokens=False)
    assert r.metrics["wer"].counts == Counts(ins=2, dels=1, subs=2, ref_len=6)
    with pytest.raises(W2vtkError, match="unknown filter"):
        score_texts(ref, hyp, ["wer"], filter="kaldi-swbd")


# --- files and CLI ------------------------------------------------------------------------------

def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_score_files_writes_reports(tmp_path):
    ref = _write(tmp_path / "ref.txt", ["u1 a b c", "u2 d e", "u3"])
    dec = tmp_path / "decode"
    dec.mkdir()
    hyp = _write(dec / "hyp.txt", ["u1 a x c y", "u3 z"])
    spk = _write(tmp_path / "utt2spk", ["u1 s1", "u2 s1", "u3 s2"])
    r = score_files(ref, hyp, ["wer", "ler"], utt2spk=spk, check_tokens=False)
    assert (dec / "wer.txt").read_text().splitlines() == [
        "%WER 100.00 [ 5 / 5, 2 ins, 2 del, 1 sub ] [PARTIAL]",
        # letters: u1 a|b|c vs a|x|c|y (1 sub, 2 ins), u2 d|e deleted (3), u3 z inserted (1)
        "%LER 87.50 [ 7 / 8, 3 ins, 3 del, 1 sub ] [PARTIAL]",
        "%SER 100.00 [ 3 / 3 ]",
        "Scored 3 sentences, 1 not present in hyp."]
    assert (dec / "alignments.txt").read_text() == (
        "u1 ref  a b c ***\n"
        "u1 hyp  a x c y\n"
        "u1 op   C S C I\n"
        "u1 #csid 2 1 1 0\n"
        "u2 ref  d   e\n"
        "u2 hyp  *** ***\n"
        "u2 op   D   D\n"
        "u2 #csid 0 0 0 2\n"
        "u3 ref  ***\n"
        "u3 hyp  z\n"
        "u3 op   I\n"
        "u3 #csid 0 0 1 0\n")
    assert (dec / "alignments_ler.txt").is_file()
    data = json.loads((dec / "score.json").read_text())
    assert data["metrics"]["wer"] == {"rate": 100.0, "errors": 5, "ins": 2, "del": 2, "sub": 1,
                                      "ref_tokens": 5, "partial": True, "missing": 1,
                                      "line": "%WER 100.00 [ 5 / 5, 2 ins, 2 del, 1 sub ] [PARTIAL]"}
    assert data["missing_ids"] == ["u2"]
    assert data["per_speaker"]["s2"]["wer"]["rate"] is None  # empty reference: undefined rate
    assert data["per_speaker"]["s1"]["wer"]["errors"] == 4
    assert (dec / "per_speaker.tsv").read_text().splitlines()[1].startswith("s1\t2\t80.00\t4\t")
    assert r.per_speaker["s1"]["wer"] == Counts(1, 2, 1, 5)


def test_format_alignment_pads_columns():
    text = format_alignment("u", [("hello", "hullo"), (None, "x")])
    assert text.splitlines()[:3] == ["u ref  hello ***", "u hyp  hullo x", "u op   S     I"]


def test_cli_score_success_and_out_dir(tmp_path, capsys):
    ref = _write(tmp_path / "ref", ["u1 the cat sat", "u2 on the mat"])
    hyp = _write(tmp_path / "hyp", ["u1 the cat sat", "u2 on a mat"])
    code, out, err = run_main(capsys, ["score", "--wer", str(ref), str(hyp), "--out-dir", str(tmp_path / "o")])
    assert code == 0, err
    assert "%WER 16.67 [ 1 / 6, 0 ins, 0 del, 1 sub ]" in out
    assert (tmp_path / "o" / "wer.txt").read_text().startswith("%WER 16.67")
    assert not (tmp_path / "wer.txt").exists()
    # default metrics: WER and LER; a data dir as REF means its text
    (tmp_path / "data").mkdir()
    ref.rename(tmp_path / "data" / "text")
    code, out, _ = run_main(capsys, ["score", str(tmp_path / "data"), str(hyp)])
    assert code == 0 and "%LER" in out and (tmp_path / "wer.txt").is_file()


def test_two_hypotheses_in_one_dir_keep_one_report_each(tmp_path, capsys):
    ref = _write(tmp_path / "ref", ["u1 the cat sat", "u2 on the mat"])
    dec = tmp_path / "dec"
    dec.mkdir()
    _write(dec / "hyp.txt", ["u1 the cat sat", "u2 on the mat"])
    _write(dec / "hyp_greedy.txt", ["u1 the cat sat", "u2 on a mat"])
    assert run_main(capsys, ["score", "--wer", str(ref), str(dec / "hyp.txt")])[0] == 0
    code, out, _ = run_main(capsys, ["score", "--wer", str(ref), str(dec / "hyp_greedy.txt")])
    assert code == 0 and "wer_hyp_greedy.txt" in out
    assert (dec / "wer.txt").read_text().startswith("%WER 0.00")  # not overwritten by the second
    assert (dec / "wer_hyp_greedy.txt").read_text().startswith("%WER 16.67")
    assert json.loads((dec / "score_hyp_greedy.json").read_text())["metrics"]["wer"]["errors"] == 1
    assert (dec / "alignments_hyp_greedy.txt").is_file()


@pytest.mark.parametrize("hyp_lines,expect", [
    (["u1 the cat", "u9 x"], "u9"),                             # id not in the reference
    (["u1 THE CAT SAT", "u2 ON THE MAT"], "--case-fold"),       # wrong case
    (["u1 the", "u1 cat"], "duplicate utterance id 'u1'"),
])
def test_cli_score_bad_input_one_line_no_outputs(tmp_path, capsys, hyp_lines, expect):
    ref = _write(tmp_path / "ref", ["u1 the cat sat", "u2 on the mat"])
    hyp = _write(tmp_path / "hyp", hyp_lines)
    code, out, err = run_main(capsys, ["score", "--wer", str(ref), str(hyp)])
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error:") and expect in lines[0]
    assert not any((tmp_path / n).exists() for n in ("wer.txt", "score.json", "alignments.txt"))


def test_cli_score_non_utf8_and_missing_file(tmp_path, capsys):
    ref = _write(tmp_path / "ref", ["u1 a"])
    hyp = tmp_path / "hyp"
    hyp.write_bytes(b"u1 a\nu2 \xff\n")
    code, _, err = run_main(capsys, ["score", str(ref), str(hyp)])
    assert code == 1 and f"{hyp}:2: not valid UTF-8" in err
    code, _, err = run_main(capsys, ["score", str(ref), str(tmp_path / "nope")])
    assert code == 1 and "nope: no such file" in err
    code, _, err = run_main(capsys, ["score", str(ref), str(ref), "--mode", "sometimes"])
    assert code == 1 and "unknown mode" in err
