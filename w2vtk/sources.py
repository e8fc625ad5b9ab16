"""Where the audio of a run comes from: the one utterance type (:class:`AudioSource`) and the one
input discovery of ``extract`` and ``pretrain`` (:func:`discover_audio`): a Kaldi data dir
(``wav.scp`` [+ ``segments``, ``utt2dur``]), a lone ``wav.scp``, a fairseq ``.tsv`` manifest or a
directory of audio files. Reading the audio itself is :mod:`w2vtk.audio`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from w2vtk.audio import AUDIO_EXTENSIONS, TARGET_RATE, audio_duration, load_audio
from w2vtk.data.kaldi_dir import load_data_dir, read_kv
from w2vtk.errors import W2vtkError

@dataclass
class AudioSource:
    """One utterance to read: a ``wav.scp`` value plus an optional ``segments`` range (seconds)."""

    utt_id: str
    spec: str
    start: float = 0.0
    end: float | None = None
    duration_s: float | None = None

    @property
    def num_samples(self) -> int:
        """Declared length in samples at 16 kHz (pre-training plans its crops with it); needs
        ``duration_s`` (:func:`with_durations` fills it in)."""
        if self.duration_s is None:
            raise W2vtkError(f"{self.utt_id}: length unknown (no utt2dur, segments or audio header read)")
        return int(round(self.duration_s * TARGET_RATE))

    def load(self, sample_rate: int = TARGET_RATE, channel: int | None = None) -> np.ndarray:
        """(T,) float32 samples at ``sample_rate`` Hz."""
        return load_audio(self.spec, start=self.start, end=self.end, channel=channel,
                          sample_rate=sample_rate, name=self.utt_id)


def discover_audio(path: str | Path) -> tuple[list[AudioSource], Path | None]:
    """The utterances behind an input path, and the data dir they came from (None otherwise).

    ``path`` is a Kaldi data dir (``wav.scp`` [+ ``segments``, ``utt2dur``]), a ``wav.scp`` file, a
    fairseq ``.tsv`` manifest or a directory of audio files (recursive). The one input discovery of
    ``extract`` and ``pretrain``.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "wav.scp").is_file():
            return audio_sources(path), path
        return audio_dir_sources(path), None
    if path.is_file():
        if path.suffix == ".tsv":
            return read_manifest(path), None
        return audio_sources(path), None
    raise W2vtkError(f"{path}: no such data dir, wav.scp, .tsv manifest or audio directory")


def with_durations(sources: list[AudioSource]) -> list[AudioSource]:
    """``sources`` with every missing ``duration_s`` measured from the audio (headers; a pipe is run
    once), so :attr:`AudioSource.num_samples` is known."""
    out = []
    for src in sources:
        if src.duration_s is None:
            dur = audio_duration(src.spec, src.utt_id)
            if src.start or src.end is not None:
                dur = (src.end if src.end is not None else dur) - src.start
            src = dataclasses.replace(src, duration_s=dur)
        out.append(src)
    return out


def read_manifest(path: str | Path) -> list[AudioSource]:
    """A fairseq ``.tsv`` manifest: first line the root directory, then ``relpath<TAB>num_samples``.

    Utterance id = relpath without extension, ``/`` -> ``-`` (as for audio directories).  As in
    fairseq, ``num_samples`` counts samples of 16 kHz audio (other rates are resampled when read, and
    the declared length must then be given at 16 kHz).  A relative root is taken from the current
    directory when it exists there, else from the manifest's directory.  File order is kept.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise W2vtkError(f"{path}: cannot read manifest ({err})") from None
    if not lines or not lines[0].strip():
        raise W2vtkError(f"{path}: empty manifest (the first line must be the audio root directory)")
    root = Path(lines[0].strip())
    if not root.is_absolute():
        root = (path.parent / root) if not root.is_dir() else root
    out: list[AudioSource] = []
    seen: set[str] = set()
    for num, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 2:
            raise W2vtkError(f"{path}:{num}: expected '<relative path>\\t<num samples>'")
        try:
            n = int(parts[1])
        except ValueError:
            raise W2vtkError(f"{path}:{num}: number of samples {parts[1]!r} is not an integer") from None
        rel = parts[0]
        if Path(rel).name in ("", ".", ".."):
            raise W2vtkError(f"{path}:{num}: {rel!r} does not name an audio file")
        utt = str(Path(rel).with_suffix("")).replace("/", "-")
        if utt in seen:
            raise W2vtkError(f"{path}:{num}: duplicate entry {rel}")
        seen.add(utt)
        out.append(AudioSource(utt, str(root / rel), duration_s=n / TARGET_RATE))
    return out


def _float(value: str, where: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise W2vtkError(f"{where}: {value!r} is not a number") from None


def audio_sources(data_dir_or_path: str | Path) -> list[AudioSource]:
    """The utterances of a Kaldi data dir (``wav.scp`` [+ ``segments``] [+ ``utt2dur``]), sorted.

    Also accepts the path of a ``wav.scp`` file (each line one utterance).
    """
    path = Path(data_dir_or_path)
    if path.is_file():
        wav_scp, segments, utt2dur = read_kv(path, any_order=True), None, None
    elif path.is_dir():
        if not (path / "wav.scp").is_file():
            raise W2vtkError(f"{path}: not a data dir (no wav.scp)")
        if (path / "utt2spk").is_file():
            # Validated like every data dir; text is optional (unlabelled audio for pre-training).
            dd = load_data_dir(path, require_text=False)
            wav_scp, segments, utt2dur = dd.wav_scp, dd.segments, dd.utt2dur
        else:
            # a bare wav.scp [+ segments, utt2dur] directory: tables in any order, as a lone wav.scp
            wav_scp, segments, utt2dur = (read_kv(path / name, any_order=True) if (path / name).is_file()
                                          else None for name in ("wav.scp", "segments", "utt2dur"))
    else:
        raise W2vtkError(f"{path}: no such data dir or wav.scp")
    sources: list[AudioSource] = []
    if segments is not None:
        for utt, value in segments.items():
            fields = value.split()
            where = f"{path}/segments: {utt}"
            if len(fields) != 3:
                raise W2vtkError(f"{where}: expected '<utt> <reco> <start> <end>'")
            reco, start, end = fields[0], _float(fields[1], where), _float(fields[2], where)
            if reco not in wav_scp:
                raise W2vtkError(f"{where}: recording {reco} is not in wav.scp")
            dur = _float(utt2dur[utt], f"{path}/utt2dur: {utt}") if utt2dur and utt in utt2dur else None
            if dur is None and end > start:
                dur = end - start
            sources.append(AudioSource(utt, wav_scp[reco], start, end if end >= 0 else None, dur))
    else:
        for utt, spec in wav_scp.items():
            dur = _float(utt2dur[utt], f"{path}/utt2dur: {utt}") if utt2dur and utt in utt2dur else None
            sources.append(AudioSource(utt, spec, 0.0, None, dur))
    sources.sort(key=lambda s: s.utt_id.encode("utf-8"))
    return sources


def audio_dir_sources(directory: str | Path) -> list[AudioSource]:
    """Every audio file under ``directory`` (recursive; .wav .flac .sph .wv1 in any case).

    Utterance id = path relative to ``directory`` without the extension, ``/`` -> ``-``
    (``spk1/a.flac`` -> ``spk1-a``).  Two files mapping to one id are refused.  A converted copy
    next to its original (``SX127.WAV.wav`` beside ``SX127.WAV``) is skipped.  Sorted by id.
    """
    root = Path(directory)
    if not root.is_dir():
        raise W2vtkError(f"{root}: no such directory")
    seen: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in AUDIO_EXTENSIONS:
            continue
        inner = Path(path.stem)
        if inner.suffix.lower() in AUDIO_EXTENSIONS and path.with_name(inner.name).is_file():
            continue  # a converted copy next to its original (TIMIT zips' SX127.WAV.wav)
        rel = path.relative_to(root)
        utt = str(rel.with_suffix("")).replace(os.sep, "-").replace("/", "-")
        if any(c.isspace() for c in utt):
            raise W2vtkError(f"{path}: file names with white space cannot be utterance ids")
        if utt in seen:
            raise W2vtkError(f"{seen[utt]} and {path} both map to utterance id {utt}; rename one")
        seen[utt] = path
    if not seen:
        raise W2vtkError(f"{root}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) found")
    sources = []
    for utt, path in seen.items():
        try:
            dur = audio_duration(str(path), utt)
        except W2vtkError:
            dur = None  # reported when the file is actually loaded
        sources.append(AudioSource(utt, str(path), 0.0, None, dur))
    sources.sort(key=lambda s: s.utt_id.encode("utf-8"))
    return sources
