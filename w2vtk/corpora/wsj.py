"""WSJ (LDC93S6B WSJ0 + LDC94S13B WSJ1) -> Kaldi data dirs, transcripts and LM text.

Sets (Kaldi names; expected utterances): ``train_si284`` (37416), ``train_si84`` (7138),
``test_dev93`` (503), ``test_eval92`` (333), ``test_eval93`` (213), read from the LDC index files
(``.ndx``) with their known quirks:

- the nonexistent speaker dir ``11_2_1:wsj0/si_tr_s/401`` is dropped from the training indices;
- ``si_et_20.ndx`` (eval92) lists paths without the ``.wv1`` suffix: any suffix-less entry gets it;
- the eval93 index (on disc 13-32.1) names disc ``13_32_1`` where the audio is on ``13_33_1``;
- ``;`` lines are comments; entries look like ``11_1_1:wsj0/si_tr_s/01i/01ic0201.wv1`` (some
  with a space or a ``/`` after the colon).

Disc directories (``11-1.1`` ... ``13-34.1``, some copies with ``_``) are found under the given
``--wsj0`` / ``--wsj1`` roots (up to three levels down) by ``^\\d\\d[-_]\\d{1,2}\\.\\d$``,
case-insensitively; paths inside a disc are matched case-insensitively too.

Utterance id = the 8-character file stem in lower case (``01ic0201``), speaker = its first three
characters (a prefix of every utterance id, so Kaldi's sort orders agree).

Transcripts come from every ``*.dot`` file (``<words> (<uttid>)``) and are normalised one of two
ways, used alike for ``text`` and for the LM text:

- ``kaldi`` (default; Kaldi's ``normalize_transcript.pl``): upper case, backslashes dropped,
  ``%PERCENT`` -> ``PERCENT``, ``.POINT`` -> ``POINT``, ``[<x]`` ``[x>]`` ``[x/]`` ``[/x]`` ``~``
  ``.`` deleted, any other ``[noise]`` -> ``<NOISE>``, ``<word>`` -> ``word``, ``--DASH`` ->
  ``-DASH``; verbalised punctuation (``,COMMA``) kept.  Scoring later drops ``<NOISE>`` etc.
- ``wav2letter`` (the wav2letter WSJ recipe's word clean-up): noise markers deleted, ``<word>``
  -> ``word``, ``*word*`` -> ``word``, the same two Nov'93 fixes, `` ` `` -> ``'``, the recipe's
  spelling fixes, ``:`` and ``!`` emphasis marks removed (except in ``:COLON`` and
  ``!EXCLAMATION-POINT``), lower case.

LM text = the normalised ``train_si284`` transcripts plus the WSJ1 LM training text
``13-32.1/wsj1/doc/lng_modl/lm_train/np_data/{87,88,89}/*.z`` (compress(1) files; lines starting
with ``<`` are SGML markup and skipped), never a dev/test sentence.

Audio: ``.wv1`` is shorten-compressed NIST SPHERE.  Without ``audio_out`` ``wav.scp`` holds a
decoder pipe per utterance (see :func:`w2vtk.audio.shorten_pipe_command`); with it every file is
converted once to 16-bit FLAC (resumable, atomic per file) and ``wav.scp`` points at the FLACs,
so training does not start one decoder process per utterance per epoch.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator

from w2vtk.audio import read_shorten_sphere, read_sphere_header, shorten_decoder, shorten_pipe_command
from w2vtk.corpora.common import finish_prep, start_prep
from w2vtk.errors import W2vtkError
from w2vtk.progress import LoggedConsole, progress

DISC_RE = re.compile(r"^(\d\d)[-_](\d{1,2})\.(\d)$", re.IGNORECASE)
TRAIN_NDX_WSJ0 = ("11_13_1", "wsj0/doc/indices/train/tr_s_wv1.ndx")
TRAIN_NDX_WSJ1 = ("13_34_1", "wsj1/doc/indices/si_tr_s.ndx")
SET_INDICES: dict[str, list[tuple[str, str]]] = {
    "train_si284": [TRAIN_NDX_WSJ1, TRAIN_NDX_WSJ0],
    "train_si84": [TRAIN_NDX_WSJ0],
    "test_dev93": [("13_34_1", "wsj1/doc/indices/h1_p0.ndx")],
    "test_eval92": [("11_13_1", "wsj0/doc/indices/test/nvp/si_et_20.ndx")],
    "test_eval93": [("13_32_1", "wsj1/doc/indices/wsj1/eval/h1_p0.ndx")],
}
EXPECTED_COUNTS = {"train_si284": 37416, "train_si84": 7138, "test_dev93": 503,
                   "test_eval92": 333, "test_eval93": 213}
# Index entries under this (disc, path prefix) point at a speaker dir that does not exist.
DROPPED_PREFIX = ("11_2_1", "wsj0/si_tr_s/401")
# The eval93 index names the wrong disc.
DISC_FIXES = {"test_eval93": {"13_32_1": "13_33_1"}}
LM_DISC, LM_DIR, LM_YEARS = "13_32_1", "wsj1/doc/lng_modl/lm_train/np_data", ("87", "88", "89")
NORMALISATIONS = ("kaldi", "wav2letter")
NOISE_WORD = "<NOISE>"


# ------------------------------------------------------------------------------ normalisation

_KALDI_DELETE = [re.compile(p, re.ASCII) for p in
                 (r"^\[<\w+\]$", r"^\[\w+>\]$", r"\[\w+/\]$", r"\[/\w+\]$")]
_KALDI_NOISE = re.compile(r"\[\w+\]", re.ASCII)
_KALDI_VERBAL_DELETION = re.compile(r"^<([\w']+)>$", re.ASCII)


def normalize_kaldi(words: Iterable[str]) -> list[str]:
    """WSJ .dot words -> Kaldi's transcript words (see module doc)."""
    out = []
    for w in words:
        w = w.upper().replace("\\", "")
        if w == "%PERCENT":
            w = "PERCENT"
        elif w == ".POINT":
            w = "POINT"
        if w in ("~", ".") or any(p.search(w) for p in _KALDI_DELETE):
            continue
        if _KALDI_NOISE.search(w):
            out.append(NOISE_WORD)
            continue
        m = _KALDI_VERBAL_DELETION.match(w)
        if m:
            out.append(m.group(1))
        elif w == "--DASH":
            out.append("-DASH")
        elif w:
            out.append(w)
    return out


_W2L_DELETE = [re.compile(p) for p in
               (r"^\[<\S+\]$", r"^\[\S+>\]$", r"^\[\S+/\]$", r"^\[/\S+\]$", r"^\[\S+\]$")]
_W2L_SPELLING = {"%PERCENT": "PERCENT", ".POINT": "POINT", "(IN-PARENTHESIS": "(IN-PARENTHESES",
                 "Corp;": "Corp", "--DASH": "-DASH"}


def _wav2letter_word(w: str) -> str:
    if w in ("~", "~~"):
        return ""
    w = w.replace("\\", "")
    if any(p.match(w) for p in _W2L_DELETE):
        return ""
    if re.match(r"^<\S+>$", w) and w != NOISE_WORD:
        w = w[1:-1]
    if re.match(r"^\*\S+\*", w):
        w = w.replace("*", "")
    w = w.replace("`", "'")
    w = _W2L_SPELLING.get(w, w)
    if w != ":COLON":
        w = w.replace(":", "")
    if w != "!EXCLAMATION-POINT":
        w = w.replace("!", "")
    if w == ".":
        return ""
    return w.lower()


def normalize_wav2letter(words: Iterable[str]) -> list[str]:
    """WSJ .dot words -> wav2letter's WSJ recipe words (lower case, no noise markers)."""
    return [x for x in (_wav2letter_word(w) for w in words) if x]


def normalizer(variant: str) -> Callable[[Iterable[str]], list[str]]:
    if variant == "kaldi":
        return normalize_kaldi
    if variant == "wav2letter":
        return normalize_wav2letter
    raise W2vtkError(f"--transcripts must be one of {', '.join(NORMALISATIONS)}, not {variant!r}")


# ---------------------------------------------------------------------------------- discovery


def disc_key(name: str) -> str | None:
    """'11-13.1' / '11_13.1' -> '11_13_1' (the index files' spelling); None for other names."""
    m = DISC_RE.match(name)
    return None if m is None else f"{m.group(1)}_{int(m.group(2))}_{m.group(3)}"


def _disc_order(key: str) -> tuple[int, ...]:
    return tuple(int(x) for x in key.split("_"))


def _disc_label(key: str) -> str:
    a, b, c = key.split("_")
    return f"{a}-{b}.{c}"


def find_discs(*roots: str | Path, max_depth: int = 3) -> dict[str, Path]:
    """{'11_1_1': path, ...} for every disc directory under ``roots`` (the roots themselves too)."""
    discs: dict[str, Path] = {}

    def visit(d: Path, depth: int) -> None:
        key = disc_key(d.name)
        if key is not None:
            discs.setdefault(key, d)
            return
        if depth >= max_depth:
            return
        try:
            children = sorted(p for p in d.iterdir() if p.is_dir())
        except OSError:
            return
        for child in children:
            visit(child, depth + 1)

    for root in roots:
        visit(Path(root), 0)
    return discs


class _CaseInsensitiveFS:
    """Resolves 'wsj0/si_tr_s/01i/01ic0201.wv1' inside a disc whatever the case on disk."""

    def __init__(self) -> None:
        self._listing: dict[Path, dict[str, str]] = {}

    def _children(self, d: Path) -> dict[str, str]:
        if d not in self._listing:
            try:
                self._listing[d] = {name.lower(): name for name in os.listdir(d)}
            except OSError:
                self._listing[d] = {}
        return self._listing[d]

    def resolve(self, base: Path, rel: str) -> Path | None:
        exact = base / rel
        if exact.exists():
            return exact
        cur = base
        for part in rel.split("/"):
            if not part:
                continue
            name = self._children(cur).get(part.lower())
            if name is None:
                return None
            cur = cur / name
        return cur


def _missing_disc(key: str, discs: dict[str, Path], wsj0: Path, wsj1: Path) -> W2vtkError:
    found = ", ".join(_disc_label(k) for k in sorted(discs, key=_disc_order)) or "none"
    return W2vtkError(f"WSJ disc {_disc_label(key)} not found under --wsj0 {wsj0} or --wsj1 {wsj1} "
                      f"(discs found: {found})")


def read_ndx(path: Path, disc_fix: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(disc key, path inside the disc) of each entry of an index file, quirks applied."""
    entries = []
    try:
        text = path.read_text(encoding="latin-1")
    except OSError as err:
        raise W2vtkError(f"{path}: cannot read ({err.strerror})") from None
    for num, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(";"):
            continue
        disc_raw, sep, rel = line.partition(":")
        disc = disc_key(disc_raw.strip().replace("_", "-", 1).replace("_", ".", 1)) if sep else None
        if disc is None:
            raise W2vtkError(f"{path}:{num}: expected '<disc>:<path>' such as "
                             f"'11_1_1:wsj0/si_tr_s/01i/01ic0201.wv1', got {line!r}")
        if disc_fix:
            disc = disc_fix.get(disc, disc)
        rel = rel.strip().lstrip("/")
        if disc == DROPPED_PREFIX[0] and rel.lower().startswith(DROPPED_PREFIX[1]):
            continue
        if not Path(rel).suffix:
            rel += ".wv1"
        entries.append((disc, rel))
    return entries


def read_dot_transcripts(discs: dict[str, Path]) -> dict[str, str]:
    """{utt id (lower case): raw transcript} from every ``*.dot`` file on the discs."""
    trans: dict[str, str] = {}
    pattern = re.compile(r"^(.*)\((\w+)\)\s*$")
    for key in sorted(discs):
        for dirpath, dirnames, filenames in os.walk(discs[key]):
            dirnames.sort()
            for fname in sorted(filenames):
                if not fname.lower().endswith(".dot"):
                    continue
                path = Path(dirpath) / fname
                for num, line in enumerate(path.read_text(encoding="latin-1").splitlines(), 1):
                    if not line.strip():
                        continue
                    m = pattern.match(line.strip())
                    if m is None:
                        raise W2vtkError(f"{path}:{num}: expected '<transcript> (<utt-id>)'")
                    trans.setdefault(m.group(2).lower(), m.group(1).strip())
    return trans


def decompress_z(path: Path) -> bytes:
    """Contents of a compress(1) ``.z`` / ``.Z`` file (ncompress module, else ``gzip -dc``)."""
    try:
        import ncompress
    except ImportError:
        ncompress = None
    if ncompress is not None:
        try:
            return ncompress.decompress(path.read_bytes())
        except (ValueError, OSError) as err:
            raise W2vtkError(f"{path}: cannot decompress ({err})") from None
    if shutil.which("gzip") is None:
        raise W2vtkError(f"{path}: compress(1) file: install gzip or the python package ncompress")
    proc = subprocess.run(["gzip", "-dc", str(path)], capture_output=True)
    if proc.returncode != 0:
        raise W2vtkError(f"{path}: cannot decompress (gzip -dc exit status {proc.returncode})")
    return proc.stdout


def lm_text_files(discs: dict[str, Path], fs: _CaseInsensitiveFS) -> list[Path]:
    """The LM training text files np_data/{87,88,89}/*.z of disc 13-32.1, sorted."""
    if LM_DISC not in discs:
        return []
    files: list[Path] = []
    for year in LM_YEARS:
        d = fs.resolve(discs[LM_DISC], f"{LM_DIR}/{year}")
        if d is None or not d.is_dir():
            raise W2vtkError(f"{discs[LM_DISC]}/{LM_DIR}/{year}: LM text directory is missing")
        files.extend(sorted(p for p in d.iterdir() if p.suffix.lower() == ".z"))
    return files


def iter_lm_text(files: Iterable[Path], normalize: Callable[[Iterable[str]], list[str]]) -> Iterator[str]:
    """Normalised LM sentences: one per text line, SGML lines (starting with '<') skipped."""
    for path in files:
        for line in decompress_z(path).decode("latin-1").splitlines():
            if not line.strip() or line.lstrip().startswith("<"):
                continue
            words = normalize(line.split())
            if words:
                yield " ".join(words)


# ------------------------------------------------------------------------------------- prep


def _warn(message: str) -> None:
    LoggedConsole(stderr=True).print(f"warning: {message}", style="yellow", markup=False, highlight=False,
                               soft_wrap=True)


def scan_wsj(wsj0: str | Path, wsj1: str | Path, *, transcripts: str = "kaldi") -> dict:
    """Read the discs: {"sets": {set: {utt: Path of .wv1}}, "text": {set: {utt: text}},
    "discs": {...}, "lm_files": [...]}.  Missing utterance files or transcripts are warned about
    (naming the set) and left out."""
    wsj0, wsj1 = Path(wsj0), Path(wsj1)
    for flag, root in (("--wsj0", wsj0), ("--wsj1", wsj1)):
        if not root.is_dir():
            raise W2vtkError(f"{flag} {root}: directory does not exist")
    normalize = normalizer(transcripts)
    discs = find_discs(wsj0, wsj1)
    fs = _CaseInsensitiveFS()
    needed = sorted({d for entries in SET_INDICES.values() for d, _ in entries} | {"13_33_1"},
                    key=_disc_order)
    for key in needed:
        if key not in discs:
            raise _missing_disc(key, discs, wsj0, wsj1)
    raw_text = read_dot_transcripts(discs)
    sets: dict[str, dict[str, Path]] = {}
    texts: dict[str, dict[str, str]] = {}
    for name, indices in SET_INDICES.items():
        utts: dict[str, Path] = {}
        missing_audio: list[str] = []
        for disc, ndx_rel in indices:
            ndx = fs.resolve(discs[disc], ndx_rel)
            if ndx is None or not ndx.is_file():
                raise W2vtkError(f"{discs[disc]}/{ndx_rel}: index file for {name} is missing")
            for entry_disc, rel in read_ndx(ndx, DISC_FIXES.get(name)):
                if entry_disc not in discs:
                    raise _missing_disc(entry_disc, discs, wsj0, wsj1)
                path = fs.resolve(discs[entry_disc], rel)
                utt = Path(rel).stem.lower()
                if path is None or not path.is_file():
                    missing_audio.append(f"{_disc_label(entry_disc)}/{rel}")
                    continue
                utts.setdefault(utt, path)
        if missing_audio:
            _warn(f"wsj set {name}: {len(missing_audio)} indexed audio files missing, left out "
                  f"(e.g. {', '.join(missing_audio[:3])})")
        no_text = sorted(u for u in utts if u not in raw_text)
        if no_text:
            _warn(f"wsj set {name}: {len(no_text)} utterances have no .dot transcript, left out "
                  f"(e.g. {', '.join(no_text[:3])})")
            for u in no_text:
                del utts[u]
        if not utts:
            raise W2vtkError(f"wsj set {name}: no utterances found (index files point at missing audio)")
        sets[name] = utts
        texts[name] = {u: " ".join(normalize(raw_text[u].split())) for u in utts}
    return {"sets": sets, "text": texts, "discs": discs, "lm_files": lm_text_files(discs, fs)}


def _flac_path(audio_out: Path, utt: str) -> Path:
    return audio_out / utt[:3] / f"{utt}.flac"


def convert_to_flac(sources: dict[str, Path], audio_out: str | Path, *, decoder: str | None = None,
                    jobs: int | None = None) -> dict[str, Path]:
    """Decode each ``.wv1`` once to 16-bit FLAC under ``audio_out/<spk>/<utt>.flac``.

    Existing FLACs are kept (a rerun resumes); each file is written under a temporary name and
    renamed, so an interrupted run never leaves a half FLAC under the final name.
    """
    import soundfile as sf

    decoder = shorten_decoder(decoder)
    audio_out = Path(audio_out)
    audio_out.mkdir(parents=True, exist_ok=True)
    out = {utt: _flac_path(audio_out, utt) for utt in sources}
    todo = sorted(u for u in sources if not out[u].is_file())

    def seconds(utt: str) -> float:
        hdr = read_sphere_header(sources[utt]) or {}
        try:
            return int(hdr["sample_count"]) / int(hdr["sample_rate"])
        except (KeyError, ValueError, ZeroDivisionError):
            return 0.0

    def convert(utt: str) -> float:
        target = out[utt]
        target.parent.mkdir(parents=True, exist_ok=True)
        data, rate = read_shorten_sphere(sources[utt], decoder, name=utt)
        if len(data) == 0:
            raise W2vtkError(f"{utt} ({sources[utt]}): decoded to zero samples")
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            sf.write(str(tmp), data, rate, format="FLAC", subtype="PCM_16")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return len(data) / rate

    if not todo:
        return out
    total = sum(seconds(u) for u in todo)
    jobs = jobs or min(4, os.cpu_count() or 1)
    with progress(f"wv1 -> flac ({decoder})", total=total, unit="audio-s") as bar:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for dur in pool.map(convert, todo):
                bar.advance(dur)
    return out


def prep_wsj(wsj0: str | Path, wsj1: str | Path, out_dir: str | Path, *, transcripts: str = "kaldi",
             audio_out: str | Path | None = None, decoder: str | None = None,
             jobs: int | None = None) -> dict | None:
    """Prepare the five WSJ sets under ``out_dir`` and ``out_dir/local/lm_text.txt``.

    ``transcripts``: ``kaldi`` or ``wav2letter`` normalisation (text and LM text alike).
    ``audio_out``: convert the audio to FLAC there and point wav.scp at it; otherwise wav.scp
    holds decoder pipes.  ``decoder``: force sph2pipe / ffmpeg / desphere (default: first
    available).  Returns finish_prep's summary, or None when the same prep had finished.
    """
    normalizer(transcripts)
    decoder = shorten_decoder(decoder)  # stop at once, saying what to install, when none exists
    signature = {"corpus": "wsj", "wsj0": str(Path(wsj0).resolve()), "wsj1": str(Path(wsj1).resolve()),
                 "transcripts": transcripts,
                 "audio_out": None if audio_out is None else str(Path(audio_out).resolve()),
                 "decoder": None if audio_out is not None else decoder, "version": 1}
    if start_prep(out_dir, signature):
        print(f"{out_dir}: WSJ already prepared with these options; nothing to do")
        return None
    scan = scan_wsj(wsj0, wsj1, transcripts=transcripts)
    all_utts: dict[str, Path] = {}
    for utts in scan["sets"].values():
        for utt, path in utts.items():
            all_utts.setdefault(utt, path)
    durations: dict[str, float] = {}
    for utt, path in all_utts.items():
        hdr = read_sphere_header(path)
        try:
            durations[utt] = int(hdr["sample_count"]) / int(hdr["sample_rate"])  # type: ignore[index]
        except (TypeError, KeyError, ValueError, ZeroDivisionError):
            raise W2vtkError(f"{utt} ({path}): not a NIST SPHERE file with sample_count / sample_rate") from None
        if durations[utt] <= 0:
            raise W2vtkError(f"{utt} ({path}): zero-length audio")
    if audio_out is not None:
        flacs = convert_to_flac(all_utts, audio_out, decoder=decoder, jobs=jobs)
        specs = {u: str(p.resolve()) for u, p in flacs.items()}
    else:
        if decoder == "desphere":
            _warn("wav.scp will decode every .wv1 in pure Python (desphere) at each read; "
                  "install ffmpeg or use --audio-out DIR to convert once to FLAC")
        specs = {u: shorten_pipe_command(p.resolve(), decoder) for u, p in all_utts.items()}
    sets = {}
    for name, utts in scan["sets"].items():
        sets[name] = dict(wav_scp={u: specs[u] for u in utts}, text=scan["text"][name],
                          utt2spk={u: u[:3] for u in utts},
                          utt2dur={u: round(durations[u], 4) for u in utts})
    train = scan["text"]["train_si284"]
    normalize = normalizer(transcripts)

    def lm_lines() -> Iterator[str]:
        for u in sorted(train):
            yield train[u]
        yield from iter_lm_text(scan["lm_files"], normalize)

    return finish_prep(out_dir, f"wsj ({transcripts})", sets, lm_lines=lm_lines(),
                       expected_counts=EXPECTED_COUNTS, signature=signature)
