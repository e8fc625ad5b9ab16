"""Audio reading: any Kaldi ``wav.scp`` value -> float32 mono samples at 16 kHz.

A ``wav.scp`` value is either a path (WAV, FLAC, uncompressed NIST SPHERE: all read by
libsndfile through ``soundfile``; shorten-compressed SPHERE such as WSJ's ``.wv1``: decoded by an
external decoder) or a shell pipeline ending in ``|`` whose stdout is a WAV file, run with the
shell exactly as Kaldi does.  ``segments`` ranges cut a recording in seconds; other sample rates
are resampled with soxr (a real band-limited resampler, not interpolation); multi-channel audio
needs an explicit channel, because mixing down silently is never what a recipe wants.

Shorten-compressed SPHERE is decoded by the first available of ``sph2pipe``, ``ffmpeg`` (its
nistsphere demuxer hands the embedded shorten stream to its shorten decoder; it returns the last
block zero-padded, so the output is cut to the header's ``sample_count``) or the pure-Python
``desphere`` package (slow: convert once with ``w2vtk prep wsj --audio-out``).

Every problem (missing or truncated file, failing pipe, NaN / Inf samples, empty audio, a stereo
file without a channel) is a :class:`~w2vtk.errors.W2vtkError` naming the utterance and file.

What a header may claim: a WAV data chunk (or a SPHERE sample_count) larger than what the file, or a
pipe's output, holds is refused as truncated, unless the size is a writer's "unknown length" mark
(0, 0xFFFFFFFF as ffmpeg writes on a pipe, 0x7FFFF000 and up as sox does), when the data is read to
its end.  A data chunk smaller than the file is read as declared (by RIFF the rest belongs to other
chunks).  A native sample rate outside MIN_SAMPLE_RATE..MAX_SAMPLE_RATE (4 kHz..384 kHz) is refused
rather than resampled (a header claiming 1 Hz would be upsampled 16000-fold).  Any rate in that
range is resampled to 16 kHz with ``soxr.resample(x, rate, 16000, quality="HQ")``, so 8 kHz and
48 kHz audio give exactly the features of that resampled signal.  A header that mislabels its
samples (24-bit over 16-bit data, A-law over PCM) cannot be told from a real file of that format:
it decodes as declared, and the NaN / Inf check (here) and the finite-features check (extraction)
stop what would be non-finite.
"""

from __future__ import annotations

import io
import os
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np

from w2vtk.errors import W2vtkError
from w2vtk.io import run_pipe

TARGET_RATE = 16000
AUDIO_EXTENSIONS = (".wav", ".flac", ".sph", ".wv1")
SHORTEN_DECODERS = ("sph2pipe", "ffmpeg", "desphere")
# A segment may end a little after the recording (rounding in the corpus' own tables); Kaldi's
# extract-segments tolerates 0.5 s of overshoot by default and so do we.
MAX_SEGMENT_OVERSHOOT_S = 0.5
# Native sample rates outside this range are refused as a lying header, not resampled: a header
# claiming 1 Hz would otherwise make soxr upsample the samples 16000-fold (a 1-minute file -> 15 GB).
MIN_SAMPLE_RATE = 4000
MAX_SAMPLE_RATE = 384000
INSTALL_HINT = ("no decoder for shorten-compressed NIST SPHERE (WSJ .wv1): install ffmpeg "
                "(apt-get install ffmpeg) or sph2pipe, or the python package desphere "
                "(pip install desphere)")


def _who(name: str, spec: str) -> str:
    return f"{name} ({spec})" if name else spec


# ----------------------------------------------------------------------------------- SPHERE


def read_sphere_header(path: str | Path) -> dict[str, str] | None:
    """Fields of a NIST SPHERE header as strings, or None when ``path`` is not SPHERE.

    Adds ``header_size``.  Raises W2vtkError on a file that starts like SPHERE but has a broken
    header.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(1024)
            if not head.startswith(b"NIST_1A"):
                return None
            lines = head.split(b"\n", 2)
            try:
                size = int(lines[1].strip())
            except (IndexError, ValueError):
                raise W2vtkError(f"{path}: broken NIST SPHERE header (no header size)") from None
            if not 16 <= size <= 1 << 20:  # real headers are 1024 bytes; refuse before reading
                raise W2vtkError(f"{path}: broken NIST SPHERE header (header size {size})")
            if size > len(head):
                head += fh.read(size - len(head))
    except OSError as err:
        raise W2vtkError(f"{path}: cannot read ({err.strerror})") from None
    if len(head) < size:
        raise W2vtkError(f"{path}: truncated NIST SPHERE header")
    fields: dict[str, str] = {"header_size": str(size)}
    for raw in head[:size].decode("ascii", errors="replace").split("\n")[2:]:
        line = raw.strip()
        if line == "end_head":
            return fields
        parts = line.split(None, 2)
        if len(parts) == 3:
            fields[parts[0]] = parts[2].strip()
    raise W2vtkError(f"{path}: broken NIST SPHERE header (no end_head)")


def is_shorten_sphere(path: str | Path) -> bool:
    """True for NIST SPHERE files whose sample_coding names shorten compression (WSJ .wv1)."""
    hdr = read_sphere_header(path)
    return hdr is not None and "shorten" in hdr.get("sample_coding", "").lower()


def available_shorten_decoders() -> list[str]:
    """The shorten decoders usable here, in order of preference."""
    found = []
    for name in SHORTEN_DECODERS:
        if name == "desphere":
            try:
                import desphere  # noqa: F401
            except ImportError:
                continue
            found.append(name)
        elif shutil.which(name):
            found.append(name)
    return found


def shorten_decoder(prefer: str | None = None) -> str:
    """The decoder to use: ``prefer`` (or env W2VTK_SHORTEN_DECODER) if available, else the first.

    Raises W2vtkError with what to install when there is none.
    """
    prefer = prefer or os.environ.get("W2VTK_SHORTEN_DECODER") or None
    found = available_shorten_decoders()
    if prefer is not None:
        if prefer not in SHORTEN_DECODERS:
            raise W2vtkError(f"unknown shorten decoder {prefer!r} (choose from {', '.join(SHORTEN_DECODERS)})")
        if prefer not in found:
            raise W2vtkError(f"shorten decoder {prefer} is not available here "
                             f"(available: {', '.join(found) or 'none'})")
        return prefer
    if not found:
        raise W2vtkError(INSTALL_HINT)
    return found[0]


def _sample_count(path: Path) -> int:
    hdr = read_sphere_header(path) or {}
    try:
        return int(hdr["sample_count"])
    except (KeyError, ValueError):
        raise W2vtkError(f"{path}: NIST SPHERE header lacks a sample_count") from None


def shorten_pipe_command(path: str | Path, decoder: str | None = None) -> str:
    """A ``wav.scp`` pipe (ending in `` |``) that writes ``path`` as 16-bit WAV to stdout."""
    path = Path(path)
    decoder = shorten_decoder(decoder)
    q = shlex.quote(str(path))
    if decoder == "sph2pipe":
        return f"sph2pipe -f wav -p {q} |"
    if decoder == "ffmpeg":
        n = _sample_count(path)
        return (f"ffmpeg -nostdin -v error -i {q} -af atrim=end_sample={n} "
                f"-f wav -acodec pcm_s16le - |")
    return f"{shlex.quote(sys.executable)} -m desphere.cli {q} - |"


def decode_shorten_sphere(path: str | Path, decoder: str | None = None, name: str = "") -> bytes:
    """Decode a shorten-compressed SPHERE file to WAV bytes (16-bit PCM, header's sample_count).

    No length check here (ffmpeg quietly returns what a truncated stream holds): use
    :func:`read_shorten_sphere`, which compares with the header.
    """
    path = Path(path)
    decoder = shorten_decoder(decoder)
    if decoder == "desphere":
        import desphere

        try:
            return desphere.transcode_bytes(path.read_bytes())
        except (desphere.DesphereError, OSError) as err:
            raise W2vtkError(f"{_who(name, str(path))}: cannot decode shorten SPHERE: {err}") from None
    return run_pipe(shorten_pipe_command(path, decoder)[:-1], name or str(path))


def read_shorten_sphere(path: str | Path, decoder: str | None = None, name: str = "") -> tuple[np.ndarray, int]:
    """(T, C) int16 samples and the rate of a shorten SPHERE file, checked against its header."""
    import soundfile as sf

    path = Path(path)
    who = _who(name, str(path))
    expected = _sample_count(path)
    blob = decode_shorten_sphere(path, decoder, name)
    try:
        data, rate = sf.read(io.BytesIO(blob), dtype="int16", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        raise W2vtkError(f"{who}: decoder output is not readable audio ({err})") from None
    if len(data) < expected:
        raise W2vtkError(f"{who}: truncated or corrupt shorten SPHERE: decoded {len(data)} of "
                         f"{expected} samples")
    return data[:expected], rate


# ------------------------------------------------------------------------------------ reading




# Data-chunk sizes that writers use for "unknown length" when they cannot seek back to fix the
# header (ffmpeg on a pipe writes 0xFFFFFFFF, sox 0x7FFFF000 and up, some tools 0): read to the end.
_UNKNOWN_DATA_SIZES = (0, 0xFFFFFFFF)
_SOX_UNSPECIFIED = 0x7FFFF000


def _riff_data_shortfall(fh, size: int) -> tuple[int, int] | None:
    """(declared, held) bytes of a RIFF/WAVE data chunk that declares more than the ``size`` bytes
    of ``fh`` hold; None when complete, not RIFF/WAVE, or of unknown length."""
    fh.seek(0)
    head = fh.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos = 12
    while True:
        fh.seek(pos)
        chunk = fh.read(8)
        if len(chunk) < 8:
            return None
        cid, clen = chunk[:4], int.from_bytes(chunk[4:], "little")
        if cid == b"data":
            if clen in _UNKNOWN_DATA_SIZES or clen >= _SOX_UNSPECIFIED:
                return None
            held = size - pos - 8
            return (clen, held) if clen > held else None
        pos += 8 + clen + (clen & 1)


def _check_riff_complete(path: Path, who: str) -> None:
    """libsndfile quietly reads what is there of a truncated WAV; compare the data chunk size."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        short = _riff_data_shortfall(fh, size)
    if short is not None:
        raise W2vtkError(f"{who}: truncated WAV: data chunk declares {short[0]} bytes, file holds {short[1]}")


def _check_sphere_complete(path: Path, hdr: dict[str, str], who: str) -> None:
    try:
        n = int(hdr["sample_count"]) * int(hdr.get("channel_count", "1")) * int(hdr.get("sample_n_bytes", "2"))
    except (KeyError, ValueError):
        raise W2vtkError(f"{who}: NIST SPHERE header lacks sample_count") from None
    have = path.stat().st_size - int(hdr["header_size"])
    if have < n:
        raise W2vtkError(f"{who}: truncated NIST SPHERE: header declares {n} bytes of samples, "
                         f"file holds {have}")


def _check_rate(rate: int, who: str) -> None:
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise W2vtkError(f"{who}: the header claims a sample rate of {rate} Hz; w2vtk reads "
                         f"{MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz (a lying or corrupt header?)")


def _span_frames(total: int, rate: int, start: float, end: float | None, who: str) -> tuple[int, int]:
    """[first, last) frame range of a segment (seconds) in a recording of ``total`` frames."""
    if not start and (end is None or end < 0):
        return 0, total
    seconds = total / rate
    if start < 0 or start >= seconds:
        raise W2vtkError(f"{who}: segment start {start:.3f} s is outside the recording ({seconds:.3f} s)")
    first = int(round(start * rate))
    if end is None or end < 0:
        return first, total
    if end <= start:
        raise W2vtkError(f"{who}: segment end {end:.3f} s is not after its start {start:.3f} s")
    if end > seconds + MAX_SEGMENT_OVERSHOOT_S:
        raise W2vtkError(f"{who}: segment end {end:.3f} s is past the recording's end ({seconds:.3f} s)")
    return first, min(int(round(end * rate)), total)


def _read_file(path: Path, who: str, name: str = "", start: float = 0.0,
               end: float | None = None) -> tuple[np.ndarray, int]:
    """(T, C) float32 in [-1, 1) and the sample rate of a plain audio file, or of a segment of it.

    A segment of a seekable file is read alone (seek + read), so many short segments of one long
    recording do not each read the whole recording.
    """
    import soundfile as sf

    if not path.is_file():
        raise W2vtkError(f"{who}: no such audio file")
    hdr = read_sphere_header(path)
    if hdr is not None:
        if "shorten" in hdr.get("sample_coding", "").lower():
            pcm, rate = read_shorten_sphere(path, name=name)
            first, last = _span_frames(len(pcm), rate, start, end, who)
            # the same scaling as libsndfile's int16 -> float conversion
            return pcm[first:last].astype(np.float32) / 32768.0, rate
        _check_sphere_complete(path, hdr, who)
    else:
        _check_riff_complete(path, who)
    try:
        with sf.SoundFile(str(path)) as snd:
            rate = snd.samplerate
            total = snd.frames
            first, last = _span_frames(total, rate, start, end, who)
            if first:
                snd.seek(first)
            data = snd.read(last - first, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        raise W2vtkError(f"{who}: unreadable audio ({err})") from None
    if len(data) < last - first:
        raise W2vtkError(f"{who}: truncated audio: {first + len(data)} of {total} samples readable")
    return data, rate


def _read_bytes(blob: bytes, who: str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    if not blob:
        raise W2vtkError(f"{who}: produced no audio (empty output)")
    short = _riff_data_shortfall(io.BytesIO(blob), len(blob))
    if short is not None:
        # a decoder that died half-way (or `head -c`) but exited 0: libsndfile would return the part
        raise W2vtkError(f"{who}: output is a truncated WAV: its data chunk declares {short[0]} bytes, "
                         f"the command wrote {short[1]}")
    try:
        data, rate = sf.read(io.BytesIO(blob), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        raise W2vtkError(f"{who}: output is not readable audio ({err})") from None
    return data, rate


def read_audio_native(spec: str, name: str = "", start: float = 0.0,
                      end: float | None = None) -> tuple[np.ndarray, int]:
    """(T, C) float32 samples and the native sample rate for a ``wav.scp`` value.

    ``start`` / ``end``: an optional segment in seconds (``end`` None or negative = to the end).
    """
    spec = spec.strip()
    who = _who(name, spec)
    if spec.endswith("|"):
        cmd = spec[:-1].strip()
        if not cmd:
            raise W2vtkError(f"{who}: empty pipe command")
        data, rate = _read_bytes(run_pipe(cmd, name or cmd), who)
        first, last = _span_frames(len(data), rate, start, end, who)
        return data[first:last], rate
    if spec.startswith("~"):
        raise W2vtkError(f"{who}: '~' paths are not expanded in wav.scp; write the full path")
    return _read_file(Path(spec), who, name, start, end)


def load_audio(spec: str, *, start: float = 0.0, end: float | None = None, channel: int | None = None,
               sample_rate: int = TARGET_RATE, name: str = "") -> np.ndarray:
    """Read a ``wav.scp`` value as float32 mono samples, shape (T,), at ``sample_rate`` Hz.

    ``spec``: a path or a shell pipeline ending in ``|``.  ``start`` / ``end``: a ``segments``
    range in seconds of the recording (``end`` None or negative = to the end).  ``channel``:
    0-based channel to keep; required for multi-channel audio.  ``name``: the utterance id, used
    in error messages.  Samples are scaled like libsndfile's float conversion (int16 / 32768).
    """
    who = _who(name, spec.strip())
    data, rate = read_audio_native(spec, name, start, end)
    _check_rate(rate, who)
    n_chan = data.shape[1]
    if channel is None:
        if n_chan != 1:
            raise W2vtkError(f"{who}: audio has {n_chan} channels; choose one (channel=0..{n_chan - 1})")
        x = data[:, 0]
    else:
        if not 0 <= channel < n_chan:
            raise W2vtkError(f"{who}: channel {channel} requested but the audio has {n_chan}")
        x = data[:, channel]
    if len(x) == 0:
        raise W2vtkError(f"{who}: audio has zero length")
    if not np.isfinite(x).all():
        raise W2vtkError(f"{who}: audio contains NaN or Inf samples")
    if rate != sample_rate:
        import soxr

        x = soxr.resample(x, rate, sample_rate, quality="HQ")
        if len(x) == 0:
            raise W2vtkError(f"{who}: audio is too short to resample to {sample_rate} Hz")
    return np.ascontiguousarray(x, dtype=np.float32)


def audio_duration(spec: str, name: str = "") -> float:
    """Duration in seconds of a ``wav.scp`` value, from the header where possible.

    Plain files: soundfile's header info; SPHERE: the header's sample_count; pipes are run and
    their output measured.  Uncompressed SPHERE and WAV files shorter than their header declares
    are refused here already (a stat, no decoding).
    """
    spec = spec.strip()
    who = _who(name, spec)
    if not spec.endswith("|"):
        path = Path(spec)
        if not path.is_file():
            raise W2vtkError(f"{who}: no such audio file")
        hdr = read_sphere_header(path)
        if hdr is not None:
            if "shorten" not in hdr.get("sample_coding", "").lower():
                _check_sphere_complete(path, hdr, who)
            try:
                count, rate = int(hdr["sample_count"]), int(hdr["sample_rate"])
            except (KeyError, ValueError):
                raise W2vtkError(f"{who}: NIST SPHERE header lacks sample_count / sample_rate") from None
            _check_rate(rate, who)
            return count / rate
        import soundfile as sf

        _check_riff_complete(path, who)
        try:
            info = sf.info(str(path))
        except (sf.LibsndfileError, RuntimeError) as err:
            raise W2vtkError(f"{who}: unreadable audio ({err})") from None
        _check_rate(info.samplerate, who)
        return info.frames / info.samplerate
    data, rate = read_audio_native(spec, name)
    _check_rate(rate, who)
    return len(data) / rate
