"""LibriSpeech (OpenSLR 12, with the OpenSLR 11 LM resources) -> Kaldi data dirs + LM text.

Layout read (``CORPUS_DIR`` is ``LibriSpeech/`` itself or the directory holding it)::

    LibriSpeech/SPEAKERS.TXT                                   ``ID | SEX | SUBSET | MINUTES | NAME``
    LibriSpeech/<subset>/<reader>/<chapter>/<reader>-<chapter>-<NNNN>.flac     16 kHz mono FLAC
    LibriSpeech/<subset>/<reader>/<chapter>/<reader>-<chapter>.trans.txt      ``<utt-id> <TEXT>``

Written to ``OUT_DIR``:

- one data dir per subset, ``-`` -> ``_`` (``dev-clean`` -> ``dev_clean``), plus ``train_960`` when
  train-clean-100, train-clean-360 and train-other-500 are all prepared; utterance ids raw
  (``19-198-0001``), ``wav.scp`` absolute FLAC paths, ``utt2dur`` from the FLAC headers,
  speaker = ``<reader>-<chapter>`` (default, as Kaldi's recipe) or ``<reader>``, ``spk2gender``
  from SPEAKERS.TXT keyed by that speaker id;
- ``local/lm_text.txt``: transcripts of the prepared ``train*`` subsets, then
  ``librispeech-lm-norm.txt[.gz]`` when present; any line equal to a dev/test transcript of the
  corpus is dropped (the count is printed);
- ``local/<name>`` symlinks to the official LM resources found (``4-gram.arpa.gz``,
  ``librispeech-lexicon.txt``, ``librispeech-vocab.txt``, ...) and ``local/lm_resources.json``
  mapping each name to its absolute path.

LM resources are looked for in ``--lm-dir`` when given, else in ``LibriSpeech/`` and its parent.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from pathlib import Path
from typing import Iterable, Iterator

from w2vtk.corpora.common import finish_prep, start_prep
from w2vtk.errors import W2vtkError
from w2vtk.data.kaldi_dir import iter_text_lines
from w2vtk.io import atomic_write_text, existing_dir
from w2vtk.progress import LoggedConsole, progress

# utterances per subset (OpenSLR 12); a mismatch is a warning naming the set.
EXPECTED_UTTERANCES = {
    "dev_clean": 2703, "test_clean": 2620, "dev_other": 2864, "test_other": 2939,
    "train_clean_100": 28539, "train_clean_360": 104014, "train_other_500": 148688,
    "train_960": 28539 + 104014 + 148688,
}
TRAIN_960_PARTS = ("train_clean_100", "train_clean_360", "train_other_500")
LM_RESOURCES = ("4-gram.arpa.gz", "4-gram.arpa", "3-gram.arpa.gz", "3-gram.arpa",
                "3-gram.pruned.1e-7.arpa.gz", "3-gram.pruned.3e-7.arpa.gz", "librispeech-lexicon.txt",
                "librispeech-vocab.txt", "librispeech-lm-norm.txt.gz", "librispeech-lm-norm.txt")
LM_TEXT_NAMES = ("librispeech-lm-norm.txt", "librispeech-lm-norm.txt.gz")
SPEAKER_MODES = ("reader-chapter", "reader")
PREP_VERSION = 1


def set_name(subset: str) -> str:
    """Data-dir name of a LibriSpeech subset: ``train-clean-100`` -> ``train_clean_100``."""
    return subset.replace("-", "_")


def find_librispeech_root(corpus_dir: str | Path) -> Path:
    """The ``LibriSpeech/`` directory for ``corpus_dir`` (itself or its ``LibriSpeech`` child)."""
    corpus_dir = existing_dir(corpus_dir, "LibriSpeech corpus dir")
    child = corpus_dir / "LibriSpeech"
    if child.is_dir():
        return child
    return corpus_dir


def _is_digits_dir(entry: os.DirEntry) -> bool:
    return entry.is_dir() and entry.name.isdigit()


def _has_reader_chapter_dirs(path: Path) -> bool:
    """True when ``path`` has a numeric child holding a numeric child (<reader>/<chapter>/)."""
    with os.scandir(path) as children:
        for child in children:
            if _is_digits_dir(child):
                with os.scandir(child.path) as grandchildren:
                    if any(_is_digits_dir(g) for g in grandchildren):
                        return True
    return False


def find_subsets(root: Path) -> dict[str, Path]:
    """Subset directories under ``root`` (holding ``<reader>/<chapter>/`` numeric dirs), by name."""
    found: dict[str, Path] = {}
    entries = sorted(os.scandir(root), key=lambda e: e.name)
    for entry in entries:
        if entry.is_dir() and not entry.name.startswith("."):
            if _has_reader_chapter_dirs(Path(entry.path)):
                found[entry.name] = Path(entry.path)
    if not found:
        listing = ", ".join(e.name + ("/" if e.is_dir() else "") for e in entries[:12]) or "nothing"
        if any(_is_digits_dir(e) for e in entries):
            hint = " (this looks like one subset: pass the directory that holds LibriSpeech/)"
        else:
            hint = ""
        raise W2vtkError(f"{root}: no LibriSpeech subsets found (expected LibriSpeech/<subset>/"
                         f"<reader>/<chapter>/*.flac; found {listing}){hint}")
    return found


def read_speakers_txt(path: Path) -> dict[str, str]:
    """reader id -> gender ("m"/"f") from SPEAKERS.TXT (``;`` comments; names may contain ``|``)."""
    genders: dict[str, str] = {}
    for lineno, line in iter_text_lines(path):
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        fields = [f.strip() for f in line.split("|", 4)]
        if len(fields) < 3 or not fields[0].isdigit() or fields[1].lower() not in ("m", "f"):
            raise W2vtkError(f"{path}:{lineno}: expected 'ID | SEX | SUBSET | MINUTES | NAME', "
                             f"got {line.strip()[:60]!r}")
        genders[fields[0]] = fields[1].lower()
    return genders


def read_trans(path: Path) -> dict[str, str]:
    """utt id -> transcript of one ``<reader>-<chapter>.trans.txt``."""
    out: dict[str, str] = {}
    for lineno, line in iter_text_lines(path):
        if not line.strip():
            continue
        utt, _, text = line.strip().partition(" ")
        if utt in out:
            raise W2vtkError(f"{path}:{lineno}: utterance {utt!r} listed twice")
        out[utt] = " ".join(text.split())
    return out


class _Subset:
    """The tables of one subset, read from disk."""

    def __init__(self) -> None:
        self.wav: dict[str, str] = {}       # utt -> absolute FLAC path
        self.text: dict[str, str] = {}
        self.reader: dict[str, str] = {}    # utt -> reader id
        self.chapter: dict[str, str] = {}   # utt -> chapter id
        self.dur: dict[str, float] = {}


def scan_subset(subset_dir: Path, *, warn=None) -> _Subset:
    """Read a subset's FLAC files and transcripts (no audio decoding yet).

    A FLAC without a transcript line is an error; a transcript line without its FLAC is a warning.
    """
    out = _Subset()
    readers = sorted((e for e in os.scandir(subset_dir) if e.is_dir()), key=lambda e: e.name)
    for reader in readers:
        if not reader.name.isdigit():
            raise W2vtkError(f"{reader.path}: reader directory names are numbers in LibriSpeech "
                             "(expected <subset>/<reader>/<chapter>/)")
        chapters = sorted((e for e in os.scandir(reader.path) if e.is_dir()), key=lambda e: e.name)
        if not chapters:
            raise W2vtkError(f"{reader.path}: no chapter directories (expected "
                             "<subset>/<reader>/<chapter>/*.flac)")
        for chapter in chapters:
            _scan_chapter(Path(chapter.path), reader.name, chapter.name, out, warn)
    if not out.wav:
        raise W2vtkError(f"{subset_dir}: no .flac files found")
    return out


def _scan_chapter(chapter_dir: Path, reader: str, chapter: str, out: _Subset, warn) -> None:
    prefix = f"{reader}-{chapter}"
    trans_path = chapter_dir / f"{prefix}.trans.txt"
    flacs = sorted(e.name for e in os.scandir(chapter_dir) if e.name.endswith(".flac"))
    if not trans_path.is_file():
        if flacs:
            raise W2vtkError(f"{chapter_dir}: {len(flacs)} .flac files but no {trans_path.name}")
        return
    trans = read_trans(trans_path)
    absolute = chapter_dir.resolve()  # once per chapter: resolving 281k paths one by one is slow
    for name in flacs:
        utt = name[:-len(".flac")]
        if not utt.startswith(prefix + "-"):
            raise W2vtkError(f"{chapter_dir / name}: file name does not start with "
                             f"'{prefix}-' (its reader-chapter directories)")
        if utt not in trans:
            raise W2vtkError(f"{chapter_dir / name}: no transcript line for {utt} in {trans_path}")
        out.wav[utt] = str(absolute / name)
        out.text[utt] = trans[utt]
        out.reader[utt] = reader
        out.chapter[utt] = chapter
    missing = sorted(set(trans) - {n[:-len(".flac")] for n in flacs})
    if missing and warn is not None:
        warn(f"{trans_path}: {len(missing)} transcript line(s) without audio, skipped "
             f"(e.g. {missing[0]})")


def _flac_info(path: str):
    import soundfile as sf

    try:
        return sf.info(path), None
    except Exception as err:  # soundfile raises several types for a bad file
        return None, str(err).splitlines()[0] if str(err) else type(err).__name__


def read_durations(subset: _Subset, desc: str, threads: int = 8) -> None:
    """Fill ``subset.dur`` from the FLAC headers; unreadable or non-mono files are errors.

    Headers are read by a few threads (libsndfile releases the GIL): corpora often live on network
    storage, where one file at a time is latency-bound.
    """
    from concurrent.futures import ThreadPoolExecutor

    items = list(subset.wav.items())
    batch = 4096
    with progress(f"read {desc}", total=len(items), unit="utt") as bar, \
            ThreadPoolExecutor(max_workers=threads) as pool:
        for first in range(0, len(items), batch):
            chunk = items[first:first + batch]
            for (utt, path), (info, error) in zip(chunk, pool.map(_flac_info, [p for _, p in chunk])):
                if info is None:
                    raise W2vtkError(f"{path}: unreadable audio ({error})")
                if info.channels != 1:
                    raise W2vtkError(f"{path}: {info.channels} channels; LibriSpeech audio is mono")
                if info.frames <= 0 or info.samplerate <= 0:
                    raise W2vtkError(f"{path}: empty audio")
                subset.dur[utt] = info.frames / info.samplerate
            bar.advance(len(chunk))


def _open_lm_text(path: Path) -> Iterator[str]:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        fh = opener(path, "rb")
    except OSError as err:
        raise W2vtkError(f"{path}: cannot read ({err.strerror})") from None
    with fh:
        lineno = 0
        try:
            for lineno, raw in enumerate(fh, start=1):
                try:
                    yield raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise W2vtkError(f"{path}:{lineno}: not valid UTF-8") from None
        except (OSError, EOFError, zlib.error) as err:  # corrupt or truncated gzip
            raise W2vtkError(f"{path}: unreadable after line {lineno} ({err})") from None


def find_lm_resources(root: Path, lm_dir: str | Path | None) -> dict[str, Path]:
    """Official LM resource files present: name -> absolute path (first directory wins)."""
    if lm_dir is not None:
        lm_dir = Path(lm_dir)
        if not lm_dir.is_dir():
            raise W2vtkError(f"--lm-dir {lm_dir} is not a directory")
        dirs = [lm_dir]
    else:
        dirs = [root, root.parent]
    found: dict[str, Path] = {}
    for name in LM_RESOURCES:
        for d in dirs:
            if (d / name).is_file():
                found[name] = (d / name).resolve()
                break
    return found


def _link_resources(out_dir: Path, resources: dict[str, Path]) -> None:
    local = out_dir / "local"
    local.mkdir(parents=True, exist_ok=True)
    for name in LM_RESOURCES:  # links left by an earlier prep with other resources
        if name not in resources and (local / name).is_symlink():
            (local / name).unlink()
    for name, target in resources.items():
        link = local / name
        tmp = local / f".{name}.link.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, link)
    atomic_write_text(local / "lm_resources.json",
                      json.dumps({k: str(v) for k, v in resources.items()}, indent=2) + "\n")


def _lm_lines(train_sets: Iterable[_Subset], lm_text_path: Path | None, heldout: set[str],
              dropped: list[int]) -> Iterator[str]:
    """Training transcripts, then the corpus LM text, minus any dev/test sentence."""
    def keep(line: str) -> bool:
        if line in heldout:
            dropped[0] += 1
            return False
        return True

    for subset in train_sets:
        for utt in sorted(subset.text):
            if subset.text[utt] and keep(subset.text[utt]):
                yield subset.text[utt]
    if lm_text_path is not None:
        for raw in _open_lm_text(lm_text_path):
            line = " ".join(raw.split())
            if line and keep(line):
                yield line


def _heldout_sentences(subsets: dict[str, Path], scanned: dict[str, _Subset]) -> set[str]:
    """Every transcript of the corpus's dev* / test* subsets (prepared or not)."""
    sentences: set[str] = set()
    for name, path in subsets.items():
        if not name.startswith(("dev", "test")):
            continue
        key = set_name(name)
        if key in scanned:
            sentences.update(t for t in scanned[key].text.values() if t)
            continue
        for trans in sorted(path.glob("*/*/*.trans.txt")):
            sentences.update(t for t in read_trans(trans).values() if t)
    return sentences


def _resolve_subsets(found: dict[str, Path], requested: Iterable[str] | None, root: Path) -> list[str]:
    """Directory names of the subsets to prepare (``train_960`` expands to its three parts)."""
    if not requested:
        return list(found)
    by_set = {set_name(n): n for n in found}
    chosen: list[str] = []
    for item in requested:
        for token in (t.strip() for t in str(item).split(",")):
            if not token:
                continue
            names = TRAIN_960_PARTS if set_name(token) == "train_960" else (set_name(token),)
            for name in names:
                if name not in by_set:
                    raise W2vtkError(f"{root}: subset {token!r} not found (present: "
                                     f"{', '.join(sorted(found))})")
                if by_set[name] not in chosen:
                    chosen.append(by_set[name])
    if not chosen:
        raise W2vtkError("--subsets: no subset named")
    return chosen


def prepare_librispeech(corpus_dir: str | Path, out_dir: str | Path, *,
                        subsets: Iterable[str] | None = None, speaker: str = "reader-chapter",
                        lm_dir: str | Path | None = None, quiet: bool = False,
                        corpus_name: str = "librispeech") -> dict | None:
    """Prepare LibriSpeech subsets as Kaldi data dirs under ``out_dir`` (see the module doc).

    Args:
        corpus_dir: ``LibriSpeech/`` or the directory that holds it.
        out_dir: data root; gets ``<set>/`` dirs and ``local/lm_text.txt``.
        subsets: subset names (``dev-clean`` or ``dev_clean``; ``train_960`` = its three parts);
            default every subset present.
        speaker: ``reader-chapter`` (Kaldi's default) or ``reader``.
        lm_dir: directory with the OpenSLR 11 files; default ``LibriSpeech/`` and its parent.
        quiet: print nothing (tests).
        corpus_name: the corpus's name in what is printed (``prep mini`` prepares a synthesized corpus in
            LibriSpeech's layout through this function).
    Returns:
        the prep summary (also in ``local/prep_summary.json``), or None when already prepared.
    """
    console = LoggedConsole(quiet=quiet, stderr=False)
    if speaker not in SPEAKER_MODES:
        raise W2vtkError(f"--speaker must be one of {', '.join(SPEAKER_MODES)}, got {speaker!r}")
    root = find_librispeech_root(corpus_dir)
    found = find_subsets(root)
    chosen = _resolve_subsets(found, subsets, root)
    resources = find_lm_resources(root, lm_dir)
    out_dir = Path(out_dir)
    signature = {"corpus": "librispeech", "root": str(root.resolve()), "subsets": chosen,
                 "speaker": speaker, "lm_resources": {k: str(v) for k, v in resources.items()},
                 "version": PREP_VERSION}
    if start_prep(out_dir, signature):
        console.print(f"librispeech: {out_dir} already prepared ({', '.join(chosen)}); skipping",
                      highlight=False)
        return None

    def warn(msg: str) -> None:
        console.print(f"warning: {msg}", style="yellow", markup=False, highlight=False,
                      soft_wrap=True)

    speakers_txt = root / "SPEAKERS.TXT"
    genders = read_speakers_txt(speakers_txt) if speakers_txt.is_file() else None
    if genders is None:
        warn(f"{speakers_txt} not found: no spk2gender written")
    scanned = _scan_subsets(found, chosen, warn)
    sets = {key: _set_tables(key, subset, speaker, genders, speakers_txt, warn) for key, subset in scanned.items()}

    heldout = _heldout_sentences(found, scanned)
    train_sets = [scanned[set_name(n)] for n in chosen if n.startswith("train")]
    lm_text_path = next((resources[n] for n in LM_TEXT_NAMES if n in resources), None)
    dropped = [0]
    lm_lines = _lm_lines(train_sets, lm_text_path, heldout, dropped)
    _link_resources(out_dir, resources)  # before finish_prep, whose done marker comes last
    summary = finish_prep(out_dir, corpus_name, sets, lm_lines, expected_counts=EXPECTED_UTTERANCES,
                          signature=signature, console=console)
    if dropped[0]:
        console.print(f"LM text: dropped {dropped[0]} line(s) equal to a dev/test transcript",
                      highlight=False)
    if resources and corpus_name == "librispeech":
        console.print(f"LM resources linked into {out_dir / 'local'}: {', '.join(resources)}",
                      highlight=False)
    elif resources:  # a corpus in LibriSpeech's layout (prep mini): its own LM text, LibriSpeech's file name
        console.print(f"{corpus_name} LM text linked into {out_dir / 'local'} (in LibriSpeech's layout): "
                      f"{', '.join(resources)}", highlight=False)
    return summary


def _scan_subsets(found: dict[str, Path], chosen: list[str], warn) -> dict[str, "_Subset"]:
    """Each chosen subset scanned (with durations) under its set name, plus ``train_960`` when all
    three training parts are there."""
    scanned: dict[str, _Subset] = {}
    for name in chosen:
        subset = scan_subset(found[name], warn=warn)
        read_durations(subset, name)
        scanned[set_name(name)] = subset
    if all(part in scanned for part in TRAIN_960_PARTS):
        combined = _Subset()
        for part in TRAIN_960_PARTS:
            for field in ("wav", "text", "reader", "chapter", "dur"):
                getattr(combined, field).update(getattr(scanned[part], field))
        scanned["train_960"] = combined
    return scanned


def _set_tables(key: str, subset: "_Subset", speaker: str, genders: dict[str, str] | None, speakers_txt: Path,
                warn) -> dict:
    """One set's tables for finish_prep: speakers as readers or reader-chapters, genders from
    SPEAKERS.TXT (none for the set when a reader is missing there)."""
    if speaker == "reader":
        utt2spk = dict(subset.reader)
    else:
        utt2spk = {u: f"{subset.reader[u]}-{subset.chapter[u]}" for u in subset.reader}
    spk2gender = None
    if genders is not None:
        spk_reader = {utt2spk[u]: subset.reader[u] for u in utt2spk}
        unknown = sorted({r for r in spk_reader.values() if r not in genders}, key=int)
        if unknown:
            warn(f"set {key}: reader(s) {', '.join(unknown[:5])} not in {speakers_txt}; "
                 "no spk2gender for this set")
        else:
            spk2gender = {spk: genders[r] for spk, r in spk_reader.items()}
    return {"wav_scp": subset.wav, "text": subset.text, "utt2spk": utt2spk, "utt2dur": subset.dur,
            "spk2gender": spk2gender}
