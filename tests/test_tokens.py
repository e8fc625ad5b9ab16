"""Token sets: letters / phones / spm lang dirs, encode/decode round trips, bad input, CLI."""

import pytest
import yaml

from cli_helpers import run_main
from w2vtk.errors import W2vtkError
from w2vtk.tokens import (TokenSet, asg_collapse, build_lang, pack_replabels, read_tokens_txt, read_transcripts,
                          unpack_replabels)

LOWER = ["u1 it's a dog", "u2 the cat sat on the mat", "u3 mr. smith went home", "u4"]
UPPER = ["1-2-0001 IT'S A DOG", "1-2-0002 THE QUICK BROWN FOX", "1-2-0003 JUMPS OVER THE LAZY DOG"]


def _text(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _tokens_file(lang):
    return [line.split() for line in (lang / "tokens.txt").read_text().splitlines()]


def test_letters_lower_case_is_wav2letter_wsj_set(tmp_path):
    text = _text(tmp_path / "text", LOWER)
    build_lang(text, tmp_path / "lang", "letters")
    rows = _tokens_file(tmp_path / "lang")
    # <blk> + | ' . a-z: wav2letter's 29 WSJ letters, whatever letters this text happens to use
    assert [t for t, _ in rows] == ["<blk>", "|", "'", "."] + [chr(c) for c in range(97, 123)]
    assert [int(i) for _, i in rows] == list(range(30))
    info = yaml.safe_load((tmp_path / "lang" / "lang.yaml").read_text())
    assert info["type"] == "letters" and info["boundary"] == 1 and info["case"] == "lower"
    assert info["letters_set"] == "standard-lower" and len(info["source_text_sha256"]) == 64

    ts = TokenSet.load(tmp_path / "lang")
    assert ts.type == "letters" and ts.blank == 0 and ts.boundary == 1 and len(ts) == 30
    ids = ts.encode("it's a")
    assert [ts.tokens[i] for i in ids] == ["i", "t", "'", "s", "|", "a"]
    for utt, words in read_transcripts(text).items():
        assert ts.decode(ts.encode(words, utt=utt)) == words
    # blanks dropped; doubled / edge boundaries make no empty words
    assert ts.decode([0, 1, ts.index("a"), 1, 1, 0, ts.index("b"), 1]) == "a b"


def test_letters_upper_case_is_librispeech_set(tmp_path):
    build_lang(_text(tmp_path / "text", UPPER), tmp_path / "lang", "letters")
    ts = TokenSet.load(tmp_path / "lang")
    assert ts.tokens == ["<blk>", "|", "'"] + [chr(c) for c in range(65, 91)]
    assert ts.info.case == "upper" and ts.info.letters_set == "standard-upper"
    assert ts.decode(ts.encode("IT'S A DOG")) == "IT'S A DOG"
    # a character of another case is outside the set: named, not silently mapped
    with pytest.raises(W2vtkError, match=r"utterance 'u9': character 'x' is not in the letters token set"
                                         r".*`w2vtk prep lang \.\.\. --unk-token <unk>`"):
        ts.encode("FOX x", utt="u9")


def test_letters_outside_standard_sets_come_from_the_data(tmp_path):
    build_lang(_text(tmp_path / "text", ["a café 42", "b Naïve"]), tmp_path / "lang", "letters")
    ts = TokenSet.load(tmp_path / "lang")
    assert ts.info.letters_set == "data" and ts.info.case == "mixed"
    assert ts.tokens == ["<blk>", "|", "2", "4", "N", "a", "c", "e", "f", "v", "é", "ï"]
    assert ts.decode(ts.encode("café Naïve")) == "café Naïve"


def test_unk_token_maps_outside_characters(tmp_path):
    build_lang(_text(tmp_path / "text", LOWER), tmp_path / "lang", "letters", unk_token="<unk>")
    ts = TokenSet.load(tmp_path / "lang")
    assert ts.tokens[-1] == "<unk>"
    ids = ts.encode("a9b")
    assert ids == [ts.index("a"), ts.index("<unk>"), ts.index("b")]
    assert ts.decode(ids) == "a<unk>b"


def test_boundary_or_blank_in_transcript_is_refused(tmp_path):
    with pytest.raises(W2vtkError, match=r"utterance 'u2'.*'\|'"):
        build_lang(_text(tmp_path / "text", ["u1 a b", "u2 a|b"]), tmp_path / "lang", "letters")
    assert not (tmp_path / "lang" / "tokens.txt").exists()


PHONES48 = ["s1 sil dh ax k ae t cl s ae t vcl sil", "s2 sil ix z epi el en zh ao sil"]


def test_phones_48_and_39(tmp_path):
    text = _text(tmp_path / "text", PHONES48)
    build_lang(text, tmp_path / "l48", "phones")
    ts = TokenSet.load(tmp_path / "l48")
    assert ts.type == "phones" and ts.boundary is None and len(ts) == 49
    for words in read_transcripts(text).values():
        assert ts.decode(ts.encode(words)) == words
    # 61-phone labels fold to 48 at encode time; q is deleted
    assert ts.decode(ts.encode("h# bcl b q ux")) == "sil vcl b uw"

    build_lang(text, tmp_path / "l39", "phones", phone_set=39)
    ts39 = TokenSet.load(tmp_path / "l39")
    assert len(ts39) == 40 and ts39.info.phone_set == 39
    assert ts39.decode(ts39.encode(read_transcripts(text)["s2"])) == "sil ih z sil l n sh aa sil"
    with pytest.raises(W2vtkError, match="utterance 's9'.*'xx'"):
        ts39.encode("sil xx", utt="s9")


def test_phones_text_with_non_phone_is_named(tmp_path):
    text = _text(tmp_path / "text", ["s1 sil aa", "s2 the cat"])
    with pytest.raises(W2vtkError, match=r"text: utterance 's2': phone 'the'"):
        build_lang(text, tmp_path / "lang", "phones")


@pytest.mark.parametrize("spm_type", ["unigram", "bpe"])
def test_spm_trained_and_applied(tmp_path, spm_type):
    sentences = [f"u{i:02d} " + s for i, s in enumerate([
        "the quick brown fox jumps over the lazy dog", "a cat sat on the mat",
        "she sells sea shells by the sea shore", "peter piper picked a peck of pickled peppers",
        "how much wood would a woodchuck chuck", "the rain in spain stays mainly in the plain"] * 3)]
    text = _text(tmp_path / "text", sentences)
    build_lang(text, tmp_path / "lang", "spm", vocab_size=40, spm_type=spm_type)
    ts = TokenSet.load(tmp_path / "lang")
    assert ts.type == "spm" and ts.blank == 0 and ts.tokens[0] == "<blk>" and len(ts) == 40
    assert ts.info.spm_type == spm_type and (tmp_path / "lang" / "spm.model").is_file()
    assert ts.tokens[1] == "<unk>"
    for words in read_transcripts(text).values():
        ids = ts.encode(words)
        assert 0 not in ids and ts.decode(ids) == words
    # pieces, not letters: "the sea" (7 characters) takes fewer tokens
    assert len(ts.encode("the sea")) < len("the sea")
    assert "".join(ts.pieces("woodchuck")).lstrip("\u2581") == "woodchuck"
    with pytest.raises(W2vtkError, match="utterance 'x1'.*not covered"):
        ts.encode("the 7th", utt="x1")  # digits never occur in the training text
    build_lang(text, tmp_path / "lang_unk", "spm", vocab_size=40, spm_type=spm_type, unk_token="<UNK>")
    ts = TokenSet.load(tmp_path / "lang_unk")
    assert ts.tokens[1] == "<UNK>" and 1 in ts.encode("the 7th")


def test_spm_vocab_too_large_is_one_line(tmp_path):
    text = _text(tmp_path / "text", ["u1 ab ab", "u2 ba"])
    with pytest.raises(W2vtkError, match="sentencepiece training failed.*--vocab-size"):
        build_lang(text, tmp_path / "lang", "spm", vocab_size=5000)


def test_load_without_lang_yaml_infers_type(tmp_path):
    build_lang(_text(tmp_path / "text", LOWER), tmp_path / "lang", "letters")
    (tmp_path / "lang" / "lang.yaml").unlink()
    ts = TokenSet.load(tmp_path / "lang")
    assert ts.type == "letters" and ts.boundary == 1


def test_bad_tokens_txt(tmp_path):
    (tmp_path / "tokens.txt").write_text("<blk> 0\na 2\n")
    with pytest.raises(W2vtkError, match=r"tokens.txt:2: index 2 out of order"):
        read_tokens_txt(tmp_path / "tokens.txt")
    (tmp_path / "tokens.txt").write_text("a 0\n<blk> 1\n")
    with pytest.raises(W2vtkError, match=r"tokens.txt:2: the blank '<blk>' must be index 0"):
        read_tokens_txt(tmp_path / "tokens.txt")
    # a lang.yaml that promises the CTC blank, over a tokens.txt without one
    (tmp_path / "tokens.txt").write_text("| 0\na 1\n")
    (tmp_path / "lang.yaml").write_text("type: letters\nblank: 0\n")
    with pytest.raises(W2vtkError, match="index 0 must be the blank"):
        TokenSet.load(tmp_path)
    # and the other way round: blank: null with a <blk> in the set
    (tmp_path / "tokens.txt").write_text("<blk> 0\n| 1\na 2\n")
    (tmp_path / "lang.yaml").write_text("type: letters\nblank: null\n")
    with pytest.raises(W2vtkError, match="without a blank .* lists '<blk>' at index 0"):
        TokenSet.load(tmp_path)


def test_cli_prep_lang(tmp_path, capsys):
    text = _text(tmp_path / "text", LOWER)
    code, out, err = run_main(capsys, ["prep", "lang", "--type", "letters", "--text", str(text),
                                   "--out", str(tmp_path / "lang")])
    assert code == 0, err
    assert "standard-lower" in out and (tmp_path / "lang" / "lang.yaml").is_file()
    code, out, err = run_main(capsys, ["prep", "lang", "--type", "words", "--text", str(text),
                                   "--out", str(tmp_path / "l2")])
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and "letters, phones or spm" in lines[0]
    bad = tmp_path / "bad"
    bad.write_bytes(b"u1 ok\nu2 caf\xe9\n")
    code, out, err = run_main(capsys, ["prep", "lang", "--type", "letters", "--text", str(bad),
                                   "--out", str(tmp_path / "l3")])
    assert code == 1 and f"{bad}:2: not valid UTF-8" in err
    assert not (tmp_path / "l3" / "tokens.txt").exists()


def test_digits_in_a_letters_set_are_reported(tmp_path):
    text = tmp_path / "text"
    text.write_text("u1 the year 1990\nu2 no digits here\n")
    tset = build_lang(text, tmp_path / "lang", "letters")
    assert "1" in tset.tokens and len(tset.warnings) == 1
    assert "1 transcript(s) contain digits (e.g. u1: '1990')" in tset.warnings[0]
    text.write_text("u1 the year nineteen ninety\n")
    assert build_lang(text, tmp_path / "lang2", "letters").warnings == []


@pytest.mark.parametrize("ids,packed", [
    ([5, 5, 6], [5, 1, 6]),            # "ee" -> e 1
    ([5, 5, 5, 6, 6], [5, 2, 6, 1]),   # "eee" -> e 2
    ([5, 5, 5, 5], [5, 2, 5]),         # a run longer than N + 1 starts again
    ([5, 6, 5], [5, 6, 5]),
    ([], []),
])
def test_replabels_pack_and_unpack_like_wav2letter(ids, packed):
    rep = [1, 2]  # token ids of "1" and "2" (--replabel 2)
    assert pack_replabels(ids, rep) == packed
    assert unpack_replabels(packed, rep) == ids
    assert all(a != b for a, b in zip(packed, packed[1:]))  # what ASG needs
    assert unpack_replabels([2, 5, 1], rep) == [5, 5]  # a leading repetition label is dropped


def test_asg_collapse_merges_runs_without_a_blank():
    assert asg_collapse([3, 3, 0, 0, 4, 3, 3]) == [3, 0, 4, 3]


def test_replabels_equal_flashlight_texts():
    from flashlight.lib.text.dictionary import Dictionary
    from flashlight.lib.text.dictionary import pack_replabels as fl_pack

    d = Dictionary()
    for tok in ["|", "a", "b", "<1>", "<2>", "<3>"]:
        d.add_entry(tok)
    rep = [d.get_index(f"<{k}>") for k in (1, 2, 3)]
    for word in ("aaaab", "aab", "abba", "aaaaaaab", "b"):
        ids = [d.get_index(c) for c in word]
        for n in (1, 2, 3):
            assert pack_replabels(ids, rep[:n]) == list(fl_pack(ids, d, n)), (word, n)


def test_prep_lang_replabel_appends_repetition_labels(tmp_path, capsys):
    from cli_helpers import run_main

    (tmp_path / "text").write_text("u1 the cat\nu2 see a bee\n")
    code, out, _ = run_main(capsys, ["prep", "lang", "--type", "letters", "--text", str(tmp_path / "text"),
                                     "--out", str(tmp_path / "lang"), "--replabel", "2"])
    assert code == 0 and "repetition labels" in out
    assert "no blank: ASG" in out
    ts = TokenSet.load(tmp_path / "lang")
    assert ts.tokens[-2:] == ["<1>", "<2>"] and ts.replabel_ids == [len(ts) - 2, len(ts) - 1]
    # wav2letter's WSJ layout: no blank, '|' first; | ' . a-z and two labels are the paper's 31 graphemes
    assert ts.blank is None and "<blk>" not in ts.tokens and ts.tokens[0] == "|" and ts.boundary == 0
    assert len(ts) == 31 and ts.symbols == ts.tokens
    assert (tmp_path / "lang" / "tokens.txt").read_text().startswith("| 0\n")
    ids = ts.encode("see a bee")
    assert 0 in ids  # the boundary is a real token id now, not dropped as a blank would be
    assert ts.decode(unpack_replabels(pack_replabels(ids, ts.replabel_ids), ts.replabel_ids)) == "see a bee"
    with pytest.raises(W2vtkError, match="--replabel 12"):
        build_lang(tmp_path / "text", tmp_path / "lang2", "letters", replabel=12)
    with pytest.raises(W2vtkError, match="repetition labels are ASG's"):
        build_lang(tmp_path / "text", tmp_path / "lang2", "letters", replabel=2, criterion="ctc")
    with pytest.raises(W2vtkError, match="sentencepiece set keeps its blank"):
        build_lang(tmp_path / "text", tmp_path / "lang2", "spm", criterion="asg")
    # ASG phones (TIMIT, --replabel 1): no blank either
    (tmp_path / "ptext").write_text("u1 sil ae sil\n")
    ph = build_lang(tmp_path / "ptext", tmp_path / "plang", "phones", phone_set=39, criterion="asg", replabel=1)
    assert ph.blank is None and len(ph) == 40 and TokenSet.load(tmp_path / "plang").tokens == ph.tokens


def test_ctc_refuses_a_token_set_without_blank(tmp_path):
    from w2vtk.am.criterion import make_criterion
    from w2vtk.models.am import AMConfig, build_am

    (tmp_path / "text").write_text("u1 the cat\n")
    ts = build_lang(tmp_path / "text", tmp_path / "lang", "letters", replabel=1)
    model = build_am(AMConfig(block="conv", layers=[[8, 3, 1]]), 4, len(ts))
    with pytest.raises(W2vtkError, match="criterion ctc needs the blank"):
        make_criterion(model, ts)
