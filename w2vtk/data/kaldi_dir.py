"""Kaldi data directories: read, write and validate (the contract of docs/corpora.md).

A data directory is a set of small text tables, one entry per line, ``<key> <value...>``:

==================  ==========  ==================================================================
file                keyed by    value
==================  ==========  ==================================================================
wav.scp             recording   a path, or a shell command ending in ``|`` whose stdout is WAV
text                utterance   the transcript (may be empty)
utt2spk             utterance   exactly one speaker id
spk2utt             speaker     the speaker's utterances, sorted; always derived from utt2spk
segments            utterance   ``<reco-id> <start-s> <end-s>``, end > start (optional)
utt2dur             utterance   duration in seconds, > 0 (optional)
utt2num_frames      utterance   number of feature frames, integer > 0 (optional)
feats.scp           utterance   a Kaldi rxfilename such as ``feats.ark:123`` (optional)
spk2gender          speaker     ``m`` or ``f`` (optional)
text.*, utt2*       utterance   "extra" per-utterance files (e.g. ``text.words``), kept in step
reco2dur            recording   recording duration in seconds (optional)
==================  ==========  ==================================================================

Every file is UTF-8, has no CR, ends in a newline, and is sorted and unique on its first field in
C-locale (byte) order.  Python's ``sorted`` on ``str`` is that order: UTF-8 preserves code-point
order byte for byte.  Without ``segments`` the recording id is the utterance id.  ``utt2spk`` must
stay sorted when grouped by speaker, which holds when every utterance id starts with its speaker
id and ``-`` (``-`` sorts before letters and digits).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

from w2vtk.errors import W2vtkError
from w2vtk.io import atomic_open, atomic_write_text, existing_dir

from w2vtk.data.checks import KNOWN_FILES, RECO_FILES, SPK_FILES, check_tables, is_extra_name, spk2utt_from_utt2spk

BACKUP_DIR = ".backup"

_FIELD_SPLIT = re.compile(r"[ \t]+")


@dataclass
class DataDir:
    """A loaded data directory.  Every table maps the first field to the rest of the line.

    ``text`` is ``{}`` only when the directory has no ``text`` (loaded with ``require_text=False``).
    ``extra`` maps a file name (``"text.words"``) to its table.
    """

    path: Path
    wav_scp: dict[str, str]
    text: dict[str, str]
    utt2spk: dict[str, str]
    spk2utt: dict[str, str]
    segments: dict[str, str] | None = None
    utt2dur: dict[str, str] | None = None
    utt2num_frames: dict[str, str] | None = None
    feats_scp: dict[str, str] | None = None
    spk2gender: dict[str, str] | None = None
    extra: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def utt_ids(self) -> list[str]:
        """Utterance ids in C-locale order."""
        return sorted(self.utt2spk)

    def speakers(self) -> dict[str, list[str]]:
        """Speaker id -> its utterance ids (sorted)."""
        return {spk: utts.split() for spk, utts in self.spk2utt.items()}

    def durations(self) -> dict[str, float] | None:
        """Utterance id -> duration in seconds, from utt2dur, else from segments; None if neither."""
        if self.utt2dur is not None:
            return {u: float(v) for u, v in self.utt2dur.items()}
        if self.segments is not None:
            out = {}
            for u, v in self.segments.items():
                _, start, end = v.split()
                out[u] = float(end) - float(start)
            return out
        return None

    def recording(self, utt: str) -> tuple[str, float, float | None]:
        """(recording id, start s, end s or None for the whole recording) of an utterance."""
        if self.segments is not None:
            reco, start, end = self.segments[utt].split()
            return reco, float(start), float(end)
        return utt, 0.0, None


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

def _read_lines(path: Path, problems: list[str], *, repair: bool = False, any_order: bool = False,
                what: str = "key") -> list[tuple[int, str, str]]:
    """Parse ``path`` into (line number, key, value) entries; file-level problems (CR, blank
    lines, missing final newline, order, duplicates) go to ``problems`` as
    ``"<name>:<line>: ..."``.

    Non-UTF-8 always raises, naming the line: no later step can trust such a file.  With
    ``repair`` CRs and blank lines are dropped silently (fix_data_dir).  ``any_order``: keys in
    any order and the final newline optional (a hypothesis file, a hand-written wav.scp).
    ``what`` names a key in the duplicate message.
    """
    name = path.name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise W2vtkError(f"{path}: no such file") from None
    except OSError as err:
        raise W2vtkError(f"{path}: cannot read ({err.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        lineno = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise W2vtkError(f"{path}:{lineno}: not valid UTF-8 (byte {column} of the line)") from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the empty string after the final newline
    elif not repair and not any_order:
        problems.append(f"{name}:{len(lines)}: last line is not newline-terminated")
    has_cr = "\r" in text
    entries: list[tuple[int, str, str]] = []
    prev_key = ""
    seen: dict[str, int] = {}
    for lineno, line in enumerate(lines, start=1):
        if has_cr and "\r" in line:
            if not repair:
                problems.append(f"{name}:{lineno}: contains a carriage return (CR); "
                                "convert with dos2unix")
            line = line.replace("\r", "")
        if "\t" in line or line[:1] == " ":
            line = line.strip(" \t")
            if not line:
                if not repair:
                    problems.append(f"{name}:{lineno}: empty line")
                continue
            parts = _FIELD_SPLIT.split(line, maxsplit=1)
            key, value = parts[0], (parts[1] if len(parts) > 1 else "")
        else:  # the common case, kept cheap: tables of LibriSpeech size have 10^5..10^6 lines
            if not line:
                if not repair:
                    problems.append(f"{name}:{lineno}: empty line")
                continue
            key, _, value = line.partition(" ")
            value = value.strip(" ")
        if key in seen:
            problems.append(f"{name}:{lineno}: duplicate {what} {key!r} (first on line {seen[key]})")
        else:
            seen[key] = lineno
            if key < prev_key and not any_order:
                problems.append(f"{name}:{lineno}: not sorted: {key!r} after {prev_key!r} "
                                "(sort with LC_ALL=C sort -k1,1)")
            else:
                prev_key = key
        entries.append((lineno, key, value))
    return entries


def read_kv(path: str | Path, *, any_order: bool = False, what: str = "key") -> dict[str, str]:
    """Read a Kaldi table ``<key> <rest of line>`` into a dict (key -> rest, ``""`` if none), in
    the file's order. w2vtk's one table reader: data dirs, feats.scp, text and hypothesis files.

    Strict: non-UTF-8, a CR, a blank line, a missing final newline, an unsorted or a duplicate key
    raises :class:`W2vtkError` naming the file and line.  ``any_order`` accepts unsorted keys and
    a missing final newline (files that are not a data dir's tables: hypotheses, a lone wav.scp);
    ``what`` names a key in the duplicate message (``"utterance id"``).
    """
    path = Path(path)
    problems: list[str] = []
    entries = _read_lines(path, problems, any_order=any_order, what=what)
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise W2vtkError(f"{path.parent}/{problems[0]}{more}")
    return {key: value for _, key, value in entries}


def _format_value(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise TypeError("bool is not a table value")
    if isinstance(value, float):
        return format_seconds(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return " ".join(_format_value(v) for v in value)
    return str(value)


def format_seconds(seconds: float) -> str:
    """Seconds in fixed point with trailing zeros dropped; 7 decimals keep any multiple of a
    16 kHz sample (62.5 us) exact, so start/end convert back to the same sample index."""
    text = f"{seconds:.7f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def write_kv(path: str | Path, mapping: Mapping[str, object]) -> None:
    """Write ``mapping`` as a Kaldi table, C-locale sorted, atomically.

    Values may be strings, numbers or sequences of them (joined by spaces); an empty value writes
    the key alone.  A key with whitespace or a value with a newline raises :class:`W2vtkError`.
    """
    path = Path(path)
    lines = []
    for key in sorted(mapping):
        if not key or any(c in key for c in " \t\r\n"):
            raise W2vtkError(f"{path}: invalid key {key!r} (empty or contains whitespace)")
        value = _format_value(mapping[key]).strip(" \t")
        if "\n" in value or "\r" in value:
            raise W2vtkError(f"{path}: value of {key!r} contains a line break")
        lines.append(f"{key} {value}\n" if value else f"{key}\n")
    with atomic_open(path, "w") as fh:
        fh.writelines(lines)


# --------------------------------------------------------------------------------------------
# Content checks (shared by validate_data_dir and write_data_dir)
# --------------------------------------------------------------------------------------------

# --------------------------------------------------------------------------------------------
# Directory-level API
# --------------------------------------------------------------------------------------------

def _table_files(path: Path) -> list[str]:
    """Names of the table files of a data dir that the contract knows about (known + extras)."""
    names = []
    for entry in sorted(os.listdir(path)):
        if not (path / entry).is_file():
            continue
        if entry in KNOWN_FILES or entry in RECO_FILES or entry in SPK_FILES or is_extra_name(entry):
            names.append(entry)
    return names


def _checked_dir(path: str | Path) -> Path:
    return existing_dir(path, "data directory")


def _read_dir(path: Path, problems: list[str], *, repair: bool = False,
              ) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, int]]]:
    tables: dict[str, dict[str, str]] = {}
    lines: dict[str, dict[str, int]] = {}
    for name in _table_files(path):
        entries = _read_lines(path / name, problems, repair=repair)
        table: dict[str, str] = {}
        numbers: dict[str, int] = {}
        for lineno, key, value in entries:
            if key not in table:  # first occurrence wins (duplicates were reported)
                table[key] = value
                numbers[key] = lineno
        tables[name] = table
        lines[name] = numbers
    return tables, lines


def validate_data_dir(path: str | Path, *, require_text: bool = True) -> list[str]:
    """Check a data directory against the contract; returns one line per problem (empty: valid).

    Lines read ``"<file>:<line>: <problem>"`` where a line is known, else ``"<file>: <problem>"``.
    Non-UTF-8 content or a missing directory raises :class:`W2vtkError` instead.
    """
    path = _checked_dir(path)
    problems: list[str] = []
    tables, lines = _read_dir(path, problems)
    problems.extend(check_tables(tables, lines, require_text))
    return problems


def _raise_problems(path: Path, problems: list[str]) -> None:
    more = f" (and {len(problems) - 1} more; run: w2vtk prep validate {path})" \
        if len(problems) > 1 else ""
    raise W2vtkError(f"{path}/{problems[0]}{more}")


def _tables_to_datadir(path: Path, tables: dict[str, dict[str, str]]) -> DataDir:
    return DataDir(
        path=path,
        wav_scp=tables["wav.scp"],
        text=tables.get("text", {}),
        utt2spk=tables["utt2spk"],
        spk2utt=tables.get("spk2utt") or spk2utt_from_utt2spk(tables["utt2spk"]),
        segments=tables.get("segments"),
        utt2dur=tables.get("utt2dur"),
        utt2num_frames=tables.get("utt2num_frames"),
        feats_scp=tables.get("feats.scp"),
        spk2gender=tables.get("spk2gender"),
        extra={name: t for name, t in tables.items() if is_extra_name(name)},
    )


def load_data_dir(path: str | Path, *, validate: bool = True, require_text: bool = True) -> DataDir:
    """Load a data directory.  With ``validate`` (default) any contract problem raises
    :class:`W2vtkError` naming the first one (file and line) and how many there are."""
    path = _checked_dir(path)
    problems: list[str] = []
    tables, lines = _read_dir(path, problems)
    if validate:
        problems.extend(check_tables(tables, lines, require_text))
        if problems:
            _raise_problems(path, problems)
    for name in ("wav.scp", "utt2spk"):
        if name not in tables:
            raise W2vtkError(f"{path}/{name}: missing (required)")
    return _tables_to_datadir(path, tables)


def _stringify(name: str, table: Mapping[str, object] | None) -> dict[str, str] | None:
    if table is None:
        return None
    out = {}
    for key, value in table.items():
        if not isinstance(key, str):
            raise W2vtkError(f"{name}: key {key!r} is not a string")
        out[key] = _format_value(value).strip(" \t")
    return out


def write_data_dir(out_dir: str | Path, *, wav_scp: Mapping[str, object],
                   text: Mapping[str, object] | None, utt2spk: Mapping[str, str],
                   segments: Mapping[str, object] | None = None,
                   utt2dur: Mapping[str, object] | None = None,
                   spk2gender: Mapping[str, str] | None = None,
                   utt2num_frames: Mapping[str, object] | None = None,
                   feats_scp: Mapping[str, str] | None = None,
                   extra: Mapping[str, Mapping[str, object]] | None = None,
                   reco2dur: Mapping[str, object] | None = None) -> DataDir:
    """Validate the tables in memory, then write them to ``out_dir`` (created), sorted, atomically.

    ``spk2utt`` is derived from ``utt2spk``.  Values may be strings, numbers (seconds are written
    with at most 7 decimals) or sequences (segments as ``(reco, start_s, end_s)``, text as a word
    list).  ``text=None`` writes no ``text`` (unlabelled audio).  ``extra`` maps file names such as
    ``"text.words"`` to per-utterance tables.  Known data files and extras already in ``out_dir``
    that are not written now are removed, so the directory never mixes two preparations.
    Invalid input raises :class:`W2vtkError` before anything is written.
    """
    out_dir = Path(out_dir)
    tables: dict[str, dict[str, str]] = {}
    for name, table in (("wav.scp", wav_scp), ("text", text), ("utt2spk", utt2spk),
                        ("segments", segments), ("utt2dur", utt2dur), ("spk2gender", spk2gender),
                        ("utt2num_frames", utt2num_frames), ("feats.scp", feats_scp),
                        ("reco2dur", reco2dur)):
        converted = _stringify(name, table)
        if converted is not None:
            tables[name] = converted
    for name, table in (extra or {}).items():
        if not is_extra_name(name):
            raise W2vtkError(f"{out_dir}: extra file name {name!r} must start with 'text.' or "
                             "'utt2' and not be a known data file")
        tables[name] = _stringify(name, table)  # type: ignore[assignment]
    for name, table in tables.items():
        for key, value in table.items():
            if not key or any(c in key for c in " \t\r\n"):
                raise W2vtkError(f"{out_dir}/{name}: invalid key {key!r} (empty or whitespace)")
            if "\n" in value or "\r" in value:
                raise W2vtkError(f"{out_dir}/{name}: value of {key!r} contains a line break")
    tables["spk2utt"] = spk2utt_from_utt2spk(tables["utt2spk"])
    problems = check_tables(tables, {}, require_text=text is not None)
    if problems:
        _raise_problems(out_dir, problems)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in _table_files(out_dir):
        if name not in tables and name not in ("cmvn.scp", "reco2file_and_channel"):
            (out_dir / name).unlink()
    for name in sorted(tables):
        write_kv(out_dir / name, tables[name])
    return _tables_to_datadir(out_dir, tables)


def write_tables(out_dir: str | Path, tables: Mapping[str, Mapping[str, object]]) -> DataDir:
    """:func:`write_data_dir` from a ``{file name: table}`` mapping (``wav.scp``, ``utt2spk`` required;
    ``text``, ``segments``, ``utt2dur``, ``utt2num_frames``, ``feats.scp``, ``spk2gender``,
    ``reco2dur`` and extra per-utterance tables when present; other names are ignored)."""
    return write_data_dir(
        out_dir, wav_scp=tables["wav.scp"], text=tables.get("text"), utt2spk=tables["utt2spk"],
        segments=tables.get("segments"), utt2dur=tables.get("utt2dur"), spk2gender=tables.get("spk2gender"),
        utt2num_frames=tables.get("utt2num_frames"), feats_scp=tables.get("feats.scp"),
        extra={n: t for n, t in tables.items() if is_extra_name(n)}, reco2dur=tables.get("reco2dur"))


def iter_text_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, line without newline) of a UTF-8 text file; non-UTF-8 raises W2vtkError
    naming the file and line.  For lists such as ``--spk-list`` files."""
    path = Path(path)
    try:
        fh = open(path, "rb")
    except OSError as err:
        raise W2vtkError(f"{path}: cannot read ({err.strerror})") from None
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                yield lineno, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise W2vtkError(f"{path}:{lineno}: not valid UTF-8") from None


# ----------------------------------------------------------------------------------------------
# the set's role (train / dev / test), recorded at prep time

ROLE_FILE = "role"
ROLES = ("train", "dev", "test")
# Set names that are evaluation sets in the corpora w2vtk prepares (TIMIT, WSJ, LibriSpeech, mini).
TEST_SET_NAMES = ("test", "coretest", "core_test", "test_eval92", "test_eval93", "eval92", "eval93",
                  "nov92", "nov93", "test_clean", "test_other", "test-clean", "test-other")


def infer_role(set_name: str) -> str:
    """The role of a prepared set from its name: an evaluation set of TEST_SET_NAMES is ``test``, a
    name with ``dev`` (``dev_clean``, ``test_dev93`` = WSJ's nov93dev) is ``dev``, else ``train``."""
    if set_name in TEST_SET_NAMES:
        return "test"
    return "dev" if "dev" in set_name else "train"


def write_role(path: str | Path, role: str) -> None:
    """Record a data dir's role in ``DIR/role`` (one word), atomically. Kept by extract, subset and
    combine, so that ``decode --tune`` can refuse a test set whatever its directory is called."""
    if role not in ROLES:
        raise W2vtkError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    atomic_write_text(Path(path) / ROLE_FILE, role + "\n")


def read_role(path: str | Path) -> str | None:
    """The recorded role of data dir ``path`` (None when it has no ``role`` file or an unknown one)."""
    f = Path(path) / ROLE_FILE
    try:
        role = f.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return role if role in ROLES else None
