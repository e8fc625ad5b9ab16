"""The synthesized mini corpus: determinism, disjoint speakers, durations, LM text, CLI."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
import soundfile as sf

from w2vtk.cli import main
from w2vtk.corpora import mini_grammar
from w2vtk.corpora.mini import estimate_seconds, plan_mini, synthesize_corpus, synthesize_mini
from w2vtk.data import load_data_dir, validate_data_dir
from w2vtk.data.kaldi_dir import read_role
from w2vtk.errors import W2vtkError

# conftest's mini_corpus settings (the fixture documents them)
FIXTURE = dict(minutes=1.5, seed=0, speakers=6, lm_sentences=5000)


def _hashes(corpus_dir: Path) -> dict[str, str]:
    """relative path -> sha256 of every corpus file."""
    return {str(p.relative_to(corpus_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(corpus_dir.rglob("*")) if p.is_file()}


def test_sets_validate_and_speakers_disjoint(mini_corpus):
    dirs = {name: load_data_dir(mini_corpus / name) for name in ("train", "dev", "test")}
    for name, dd in dirs.items():
        assert validate_data_dir(mini_corpus / name) == [], name
        assert dd.utt2spk and dd.spk2gender and set(dd.spk2gender) == set(dd.spk2utt)
    speakers = {name: set(dd.spk2utt) for name, dd in dirs.items()}
    assert len(speakers["train"]) == 4 and len(speakers["dev"]) == 1 and len(speakers["test"]) == 1
    assert not speakers["train"] & speakers["dev"] and not speakers["train"] & speakers["test"]
    assert not speakers["dev"] & speakers["test"]
    assert set(dirs["train"].spk2gender.values()) == {"m", "f"}
    texts = [t for dd in dirs.values() for t in dd.text.values()]
    assert len(set(texts)) == len(texts)  # no sentence twice in the corpus
    # each set's role is recorded for decode --tune (a renamed copy of test stays a test set)
    assert {name: read_role(mini_corpus / name) for name in dirs} == {"train": "train", "dev": "dev",
                                                                       "test": "test"}


def test_audio_format_and_durations(mini_corpus):
    total = 0.0
    for name in ("train", "dev", "test"):
        dd = load_data_dir(mini_corpus / name)
        for utt, path in dd.wav_scp.items():
            info = sf.info(path)
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert float(dd.utt2dur[utt]) == pytest.approx(info.duration, abs=1e-3)
            assert 0.8 < info.duration < 15.0, (utt, info.duration)
            total += info.duration
    # planned from a speaking-rate estimate: about 90 s
    assert 60.0 < total < 120.0
    audio, rate = sf.read(load_data_dir(mini_corpus / "dev").wav_scp.popitem()[1])
    assert rate == 16000 and 0.2 < abs(audio).max() <= 1.0  # speech at a sane level, not silence


def test_lm_text(mini_corpus):
    lm = (mini_corpus / "local" / "lm_text.txt").read_text().splitlines()
    train = load_data_dir(mini_corpus / "train").text
    held_out = set(load_data_dir(mini_corpus / "dev").text.values()) | \
        set(load_data_dir(mini_corpus / "test").text.values())
    assert set(train.values()) <= set(lm)
    assert not held_out & set(lm)
    assert len(lm) == len(train) + FIXTURE["lm_sentences"]
    vocab = mini_grammar.vocabulary()
    words = {w for line in lm for w in line.split()}
    assert words <= vocab and len(words) > 400
    assert all(set(line) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ' ") for line in lm)


def test_same_seed_identical_bytes_and_resume(mini_corpus, tmp_path):
    # One worker here against the fixture's default pool: byte-identity must not depend on it.
    out = synthesize_mini(tmp_path / "data", workers=1, quiet=True, **FIXTURE)
    reference = _hashes(mini_corpus / "corpus")
    assert _hashes(out / "corpus") == reference
    assert any(k.endswith(".flac") for k in reference)
    for name in ("train", "dev", "test"):
        assert (out / name / "text").read_bytes() == (mini_corpus / name / "text").read_bytes()
    assert (out / "local" / "lm_text.txt").read_bytes() == \
        (mini_corpus / "local" / "lm_text.txt").read_bytes()
    # an interrupted run: one chapter unfinished, no done marker -> finished identically
    corpus = out / "corpus"
    trans = next(corpus.rglob("*.trans.txt"))
    trans.unlink()
    next(trans.parent.glob("*.flac")).unlink()
    (corpus / ".done").unlink()
    synthesize_corpus(corpus, workers=2, **FIXTURE)
    assert _hashes(corpus) == reference


def test_different_seed_differs(tmp_path):
    small = dict(minutes=0.25, speakers=3, lm_sentences=20)
    a = synthesize_corpus(tmp_path / "a", seed=0, **small)
    b = synthesize_corpus(tmp_path / "b", seed=1, **small)
    flacs_a = sorted(a.rglob("*.flac"))
    flacs_b = sorted(b.rglob("*.flac"))
    assert flacs_a and flacs_b
    assert {p.name for p in flacs_a}.isdisjoint({p.name for p in flacs_b})  # other readers
    assert {hashlib.sha256(p.read_bytes()).digest() for p in flacs_a}.isdisjoint(
        {hashlib.sha256(p.read_bytes()).digest() for p in flacs_b})
    plan_a, plan_b = plan_mini(0.25, 0, speakers=3, lm_sentences=20), plan_mini(0.25, 1, speakers=3,
                                                                             lm_sentences=20)
    assert plan_a.lm_sentences != plan_b.lm_sentences
    assert plan_a == plan_mini(0.25, 0, speakers=3, lm_sentences=20)


def test_plan_scales_speakers_and_splits():
    plan = plan_mini(30, 0, lm_sentences=0)
    subsets = [s.subset for s in plan.speakers]
    assert len(plan.speakers) == 24
    assert subsets.count("dev") == 3 and subsets.count("test") == 3 and subsets.count("train") == 18
    assert len({s.voice for s in plan.speakers}) == 24
    assert len({s.reader for s in plan.speakers}) == 24
    for subset in ("dev", "test"):
        assert {s.gender for s in plan.speakers if s.subset == subset} == {"m", "f"}
    assert len(plan_mini(1, 0, lm_sentences=0).speakers) == 6


@pytest.mark.parametrize("seed", [0, 1, 7, 12345])
def test_held_out_sets_have_their_own_voices_and_minutes(seed):
    # The recipe's corpus: 8 speakers and 10 minutes in each of dev and test, voices never in train.
    plan = plan_mini(80, seed, speakers=64, held_speakers=8, held_minutes=10, lm_sentences=0)
    by_set = {name: [s for s in plan.speakers if s.subset == name] for name in ("train", "dev", "test")}
    assert [len(by_set[n]) for n in ("train", "dev", "test")] == [48, 8, 8]
    held_voices = {s.voice for s in by_set["dev"] + by_set["test"]}
    assert len(held_voices) == 16                                   # no voice twice in dev + test
    assert held_voices.isdisjoint({s.voice for s in by_set["train"]})
    for name in ("dev", "test"):
        assert {s.gender for s in by_set[name]} == {"m", "f"}
        planned = sum(estimate_seconds(text, spk.rate) for spk in by_set[name]
                      for _, text in plan.utterances[spk.speaker_id])
        assert 600 <= planned < 600 + 8 * 12                        # 10 minutes, one sentence over each
    train = sum(estimate_seconds(text, spk.rate) for spk in by_set["train"]
                for _, text in plan.utterances[spk.speaker_id])
    assert 3600 <= train < 3600 + 48 * 12


def test_more_train_speakers_than_voices_reuse_train_voices_only():
    plan = plan_mini(300, 3, speakers=140, held_speakers=8, held_minutes=10, lm_sentences=0)
    held = {s.voice for s in plan.speakers if s.subset != "train"}
    train = [s.voice for s in plan.speakers if s.subset == "train"]
    assert len(train) == 124 and len(set(train)) < len(train)       # 104 voices: some reused
    assert held.isdisjoint(train)
    # the default split (an eighth each, equal shares) keeps its voices apart too
    plan = plan_mini(150, 0, lm_sentences=0)
    assert {s.voice for s in plan.speakers if s.subset != "train"}.isdisjoint(
        {s.voice for s in plan.speakers if s.subset == "train"})


@pytest.mark.parametrize("kwargs, message", [
    (dict(minutes=20, held_speakers=8, speakers=16), "cannot hold 8 dev"),
    (dict(minutes=20, held_minutes=10), "leaves no train audio"),
    (dict(minutes=20, held_minutes=0.0), "--held-minutes must be a positive"),
    (dict(minutes=400, speakers=200, held_speakers=60), "more distinct espeak-ng voices"),
])
def test_impossible_held_out_sets_are_one_line_errors(kwargs, message):
    with pytest.raises(W2vtkError, match=message):
        plan_mini(seed=0, lm_sentences=0, **kwargs)


def test_rerun_skips_and_other_settings_refused(mini_corpus, capsys):
    flac = next((mini_corpus / "corpus").rglob("*.flac"))
    stamp = flac.stat().st_mtime_ns
    assert synthesize_mini(mini_corpus, **FIXTURE) == mini_corpus
    assert flac.stat().st_mtime_ns == stamp
    assert "already prepared" in capsys.readouterr().out
    with pytest.raises(W2vtkError, match="other settings"):
        synthesize_corpus(mini_corpus / "corpus", minutes=1.5, seed=7, speakers=6, lm_sentences=5000)
    assert flac.stat().st_mtime_ns == stamp


def test_grammar_is_deterministic_and_varied():
    a = mini_grammar.sentences(random.Random("s"), 300)
    assert a == mini_grammar.sentences(random.Random("s"), 300)
    assert len(set(a)) == 300
    lengths = [len(s.split()) for s in a]
    assert min(lengths) >= 4 and max(lengths) <= 24 and max(lengths) - min(lengths) > 10
    assert len(mini_grammar.vocabulary()) > 500
    assert mini_grammar.plural("LADY") == "LADIES" and mini_grammar.plural("BOX") == "BOXES"


def test_cli_prep_mini_and_bad_options(tmp_path, capsys):
    out = tmp_path / "data"
    with pytest.raises(SystemExit) as exit_info:
        main(["prep", "mini", str(out), "--minutes", "0.2", "--speakers", "3", "--lm-sentences", "10",
              "--corpus-dir", str(tmp_path / "corpus")])
    assert exit_info.value.code == 0
    assert (tmp_path / "corpus" / "LibriSpeech" / "SPEAKERS.TXT").is_file()
    assert validate_data_dir(out / "test") == []
    printed = capsys.readouterr().out
    assert "mini -> " in printed and "librispeech ->" not in printed and "LM resources" not in printed
    for bad, expected in ((["--minutes", "0"], "--minutes"), (["--speakers", "2"], "at least 3")):
        with pytest.raises(SystemExit) as exit_info:
            main(["prep", "mini", str(tmp_path / "bad")] + bad)
        assert exit_info.value.code == 1
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and err[0].startswith("error:") and expected in err[0]
        assert not (tmp_path / "bad").exists()


def test_worker_failure_is_one_line_error(tmp_path):
    from dataclasses import asdict, replace

    from w2vtk.corpora.mini import _run_workers

    plan = plan_mini(0.1, 0, speakers=3, lm_sentences=0)
    spk = replace(plan.speakers[0], voice="xx-novoice+m1")
    job = {"speaker": asdict(spk), "speaker_id": spk.speaker_id, "chapter_dir": str(tmp_path / "c"),
           "seed": 0, "utterances": plan.utterances[spk.speaker_id]}
    with pytest.raises(W2vtkError, match="no voice 'xx-novoice"):
        _run_workers([job, dict(job, speaker_id="x")], 1, lambda j: 1.0, lambda r: None)
    assert not list(tmp_path.rglob("*.trans.txt"))
