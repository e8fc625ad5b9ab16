"""Content checks on the parsed tables of a Kaldi data directory (the rules of
:mod:`w2vtk.data.kaldi_dir`): one function per file, each appending one message per problem."""

from __future__ import annotations

import math
from typing import Iterable, Mapping

# Files with a fixed meaning.  Anything else named ``text.*`` or ``utt2*`` is an extra per-utterance
# file that must have the same keys as utt2spk; other files (cmvn.scp, conf/, feats dirs...) are
# left alone except where noted.
KNOWN_FILES = ("wav.scp", "text", "utt2spk", "spk2utt", "segments", "utt2dur", "utt2num_frames",
               "feats.scp", "spk2gender", "reco2dur")
SPK_FILES = ("spk2gender", "cmvn.scp")  # keyed by speaker: filtered to the kept speakers
RECO_FILES = ("reco2dur", "reco2file_and_channel")  # keyed by recording
FORBIDDEN_TOKENS = frozenset({"<s>", "</s>", "#0"})


def is_extra_name(name: str) -> bool:
    """True for a file name that is an extra per-utterance table (``text.words``, ``utt2lang``).

    Hidden files, temporaries and backups (``.x``, ``*.tmp``, ``*.bak``, ``*~``) never count.
    """
    if name in KNOWN_FILES or name in RECO_FILES or name in SPK_FILES:
        return False
    if name.startswith(".") or name.endswith((".tmp", ".bak", "~")):
        return False
    return name.startswith("text.") or name.startswith("utt2")


def examples(keys: Iterable[str], limit: int = 3) -> str:
    """The first ``limit`` sorted keys, comma-separated, with ", ..." when there are more."""
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (", ..." if len(keys) > limit else "")


def is_positive(value: str, integer: bool) -> bool:
    """``value`` parses as a finite number (an integer if ``integer``) greater than 0."""
    try:
        number = int(value) if integer else float(value)
    except ValueError:
        return False
    return math.isfinite(number) and number > 0


def spk2utt_from_utt2spk(utt2spk: Mapping[str, str]) -> dict[str, str]:
    """Derive spk2utt (speaker -> space-joined sorted utterance ids) from utt2spk."""
    groups: dict[str, list[str]] = {}
    for utt in sorted(utt2spk):
        groups.setdefault(utt2spk[utt], []).append(utt)
    return {spk: " ".join(utts) for spk, utts in groups.items()}


class _Problems(list):
    """The problem messages found so far, and where a key sits (``file:line``, else ``file: 'key'``)."""

    def __init__(self, lines: dict[str, dict[str, int]]):
        super().__init__()
        self.lines = lines

    def where(self, name: str, key: str) -> str:
        line = self.lines.get(name, {}).get(key)
        return f"{name}:{line}" if line is not None else f"{name}: {key!r}"

    def key_sets(self, name: str, keys: set[str], ref: set[str], what: str, ref_name: str) -> None:
        """Keys of ``ref`` missing from ``name`` and keys of ``name`` not in ``ref``."""
        missing = ref - keys
        if missing:
            self.append(f"{name}: {len(missing)} {what}(s) of {ref_name} missing ({examples(missing)})")
        unknown = keys - ref
        if unknown:
            self.append(f"{name}: {len(unknown)} {what}(s) not in {ref_name} ({examples(unknown)})")


def check_tables(tables: dict[str, dict[str, str]], lines: dict[str, dict[str, int]],
                 require_text: bool) -> list[str]:
    """Content checks on parsed tables (file name -> table); ``lines`` gives line numbers for
    messages (missing -> messages without a line).  Returns one string per problem."""
    problems = _Problems(lines)
    for name in ("wav.scp", "utt2spk"):
        if name not in tables:
            problems.append(f"{name}: missing (required)")
    if require_text and "text" not in tables:
        problems.append("text: missing (required)")
    if "wav.scp" not in tables or "utt2spk" not in tables:
        return list(problems)
    _check_wav_scp(problems, tables["wav.scp"])
    if "text" in tables:
        _check_text(problems, tables["text"])
    utt2spk = tables["utt2spk"]
    _check_utt2spk(problems, utt2spk)
    derived = spk2utt_from_utt2spk(utt2spk)
    _check_spk2utt(problems, tables.get("spk2utt"), derived)
    if "spk2gender" in tables:
        _check_spk2gender(problems, tables["spk2gender"], derived)
    _check_recordings(problems, tables, set(utt2spk))
    _check_per_utterance(problems, tables, set(utt2spk))
    return list(problems)


def _check_wav_scp(problems: _Problems, wav: dict[str, str]) -> None:
    for reco, value in wav.items():
        where = problems.where("wav.scp", reco)
        if not value:
            problems.append(f"{where}: recording {reco!r} has no path or command")
        elif value.endswith("|"):
            if not value[:-1].strip():
                problems.append(f"{where}: empty pipe command")
        elif value.startswith("~"):
            problems.append(f"{where}: path {value!r} starts with '~' "
                            "(not expanded by Kaldi tools: write the absolute path)")
        elif "|" in value:
            problems.append(f"{where}: '|' inside a path; a pipe command must end with ' |'")


def _check_text(problems: _Problems, text: dict[str, str]) -> None:
    for utt, value in text.items():
        bad = sorted(set(value.split()) & FORBIDDEN_TOKENS)
        if bad:
            problems.append(f"{problems.where('text', utt)}: utterance {utt!r} contains reserved "
                            f"token(s) {' '.join(bad)}")


def _check_utt2spk(problems: _Problems, utt2spk: dict[str, str]) -> None:
    for utt, value in utt2spk.items():
        fields = value.split()
        if len(fields) != 1:
            problems.append(f"{problems.where('utt2spk', utt)}: expected exactly 2 fields "
                            f"(<utt-id> <spk-id>), got {len(fields) + 1}")
    # Grouped by speaker, the utterances must come out in the same order as sorted utterances:
    # Kaldi tools iterate spk2utt and utt2spk in lockstep.
    by_speaker = sorted(utt2spk, key=lambda u: (utt2spk[u], u))
    for got, want in zip(by_speaker, sorted(utt2spk)):
        if got != want:
            problems.append(f"{problems.where('utt2spk', want)}: not sorted when grouped by speaker: "
                            f"{want!r} (speaker {utt2spk[want]!r}) vs {got!r} (speaker "
                            f"{utt2spk[got]!r}); make the speaker id a prefix of the utterance id")
            break


def _check_spk2utt(problems: _Problems, spk2utt: dict[str, str] | None, derived: dict[str, str]) -> None:
    if spk2utt is None:
        problems.append("spk2utt: missing (derive it from utt2spk: w2vtk prep fix DIR)")
        return
    for spk, value in spk2utt.items():
        if spk not in derived:
            problems.append(f"{problems.where('spk2utt', spk)}: speaker {spk!r} is not in utt2spk")
        elif value.split() != derived[spk].split():
            problems.append(f"{problems.where('spk2utt', spk)}: utterances of speaker {spk!r} differ "
                            "from utt2spk")
    missing = set(derived) - set(spk2utt)
    if missing:
        problems.append(f"spk2utt: {len(missing)} speaker(s) of utt2spk missing ({examples(missing)})")


def _check_spk2gender(problems: _Problems, genders: dict[str, str], derived: dict[str, str]) -> None:
    for spk, value in genders.items():
        if value not in ("m", "f"):
            problems.append(f"{problems.where('spk2gender', spk)}: gender of {spk!r} must be m or f, "
                            f"got {value!r}")
    problems.key_sets("spk2gender", set(genders), set(derived), "speaker", "utt2spk")


def _check_recordings(problems: _Problems, tables: dict[str, dict[str, str]], utts: set[str]) -> None:
    """segments (else wav.scp keyed by utterance) and reco2dur against wav.scp."""
    wav = tables["wav.scp"]
    if "segments" in tables:
        segments = tables["segments"]
        for utt, value in segments.items():
            _check_segment(problems, utt, value, wav)
        problems.key_sets("segments", set(segments), utts, "utterance", "utt2spk")
    else:
        problems.key_sets("wav.scp", set(wav), utts, "utterance", "utt2spk")
    if "reco2dur" in tables:
        for reco, value in tables["reco2dur"].items():
            if not is_positive(value, integer=False):
                problems.append(f"{problems.where('reco2dur', reco)}: duration must be > 0, got {value!r}")
        problems.key_sets("reco2dur", set(tables["reco2dur"]), set(wav), "recording", "wav.scp")


def _check_segment(problems: _Problems, utt: str, value: str, wav: dict[str, str]) -> None:
    where = problems.where("segments", utt)
    fields = value.split()
    if len(fields) != 3:
        problems.append(f"{where}: expected 4 fields (<utt-id> <reco-id> <start> <end>), got {len(fields) + 1}")
        return
    reco, start, end = fields
    try:
        t0, t1 = float(start), float(end)
    except ValueError:
        problems.append(f"{where}: start/end not numbers: {start} {end}")
        return
    if not (math.isfinite(t0) and math.isfinite(t1)) or t0 < 0 or t1 <= t0:
        problems.append(f"{where}: need 0 <= start < end, got {start} {end}")
    if reco not in wav:
        problems.append(f"{where}: recording {reco!r} not in wav.scp")


def _check_per_utterance(problems: _Problems, tables: dict[str, dict[str, str]], utts: set[str]) -> None:
    """Durations, frame counts and feats.scp values, and every per-utterance table's keys."""
    for name, integer in (("utt2dur", False), ("utt2num_frames", True)):
        for utt, value in tables.get(name, {}).items():
            if not is_positive(value, integer):
                kind = "an integer" if integer else "a number"
                problems.append(f"{problems.where(name, utt)}: must be {kind} > 0, got {value!r}")
    for utt, value in tables.get("feats.scp", {}).items():
        if not value:
            problems.append(f"{problems.where('feats.scp', utt)}: utterance {utt!r} has no rxfilename")
    for name in sorted(tables):
        if name in ("text", "utt2dur", "utt2num_frames", "feats.scp") or is_extra_name(name):
            problems.key_sets(name, set(tables[name]), utts, "utterance", "utt2spk")
