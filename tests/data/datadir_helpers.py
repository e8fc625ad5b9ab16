"""Small data-dir builders shared by the tests in tests/data and tests/corpora/test_common.py."""

from __future__ import annotations

from pathlib import Path

# Speakers: 3, utterance ids prefixed by the speaker (the Kaldi sorting rule).
SPEAKERS = {"spkA": 4, "spkB": 3, "spkC": 2}


def good_tables(durations: bool = True) -> dict:
    """Keyword arguments for write_data_dir: 9 utterances of 3 speakers, 1.0 .. 1.8 s long."""
    wav, text, utt2spk, utt2dur, words = {}, {}, {}, {}, {}
    i = 0
    for spk, count in SPEAKERS.items():
        for n in range(count):
            utt = f"{spk}-{n:03d}"
            wav[utt] = f"/corpus/{spk}/{n}.flac" if n % 2 == 0 else f"sox /corpus/{spk}/{n}.wav -t wav - |"
            text[utt] = f"hello world {i}"
            words[utt] = f"HELLO WORLD {i}"
            utt2spk[utt] = spk
            utt2dur[utt] = 1.0 + 0.1 * i
            i += 1
    kwargs = dict(wav_scp=wav, text=text, utt2spk=utt2spk, spk2gender={"spkA": "f", "spkB": "m", "spkC": "f"},
                  extra={"text.words": words})
    if durations:
        kwargs["utt2dur"] = utt2dur
    return kwargs


def write_raw(directory: Path, files: dict[str, str | bytes]) -> Path:
    """Write files verbatim (no sorting, no checks) to build broken dirs."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = directory / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", newline="")
    return directory


def raw_good() -> dict[str, str]:
    """A small valid dir as raw file texts (2 speakers, 3 utterances)."""
    return {
        "wav.scp": "a-1 /x/a1.wav\na-2 /x/a2.wav\nb-1 /x/b1.wav\n",
        "text": "a-1 one\na-2 two\nb-1 three\n",
        "utt2spk": "a-1 a\na-2 a\nb-1 b\n",
        "spk2utt": "a a-1 a-2\nb b-1\n",
        "utt2dur": "a-1 1.5\na-2 2\nb-1 0.5\n",
    }
