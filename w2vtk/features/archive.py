"""Writing feature matrices: Kaldi ark + scp (through kaldiio), optionally .npy per utterance.

Storage dtypes:
- ``float32``: Kaldi's binary ``FM`` matrix, readable by Kaldi binaries, kaldiio, lhotse, ESPnet.
- ``float16``: kaldiio's ``NPY`` ark record (a .npy blob inside the ark); read by ``kaldiio.load_scp``
  / ``load_mat`` (half the size of float32), not by Kaldi's C++ binaries.
- ``compress=True``: Kaldi's lossy ``CM`` compression (``compression_method=2``, kSpeechFeature, what
  ``copy-feats --compress=true`` writes); readable everywhere Kaldi features are.

Reading (:func:`read_matrix`, :class:`ScpReader`): archives are input files like any other, so w2vtk
does not hand a ``feats.scp`` to ``kaldiio.load_scp`` as it is: kaldiio's reader also unpickles
``PKL`` records (running whatever code the pickle names) and decodes audio records.  Only Kaldi
binary / text matrices and vectors and ``NPY`` records (``np.load`` with ``allow_pickle=False``) are
read; anything else, an offset past the end of the archive or a truncated record is a one-line
:class:`~w2vtk.errors.W2vtkError` naming the utterance.  An rxfilename ending in ``|`` is a command
run with the shell, exactly as in Kaldi (a data dir is code: see the README's security section).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import IO

import numpy as np

from w2vtk import faults
from w2vtk.errors import W2vtkError
from w2vtk.io import atomic_open, run_pipe

DTYPES = ("float32", "float16")
KALDI_SPEECH_FEATURE_COMPRESSION = 2


def bytes_per_frame(dim: int, dtype: str, compress: bool) -> float:
    """Approximate archive bytes per frame of ``dim`` values (headers ignored)."""
    if compress:
        # CM: one byte per value plus per-column headers (8 bytes per column per matrix, amortised).
        return float(dim)
    return float(dim * (2 if dtype == "float16" else 4))


def check_dtype(dtype: str, compress: bool) -> None:
    if dtype not in DTYPES:
        raise W2vtkError(f"--dtype {dtype}: expected one of {', '.join(DTYPES)}")
    if compress and dtype != "float32":
        raise W2vtkError("--compress applies Kaldi's own compression to float32 matrices; "
                         "use it with --dtype float32")


def write_matrix(fh: IO[bytes], utt_id: str, mat: np.ndarray, dtype: str, compress: bool) -> int:
    """Append one ``utt_id`` record to the open binary ark ``fh``; returns the scp offset.

    The offset is the byte position of the matrix header, which is what Kaldi and kaldiio put after
    the colon in ``feats.scp`` (``/path/feats.ark:OFFSET``).
    """
    import kaldiio

    if not utt_id or any(ch.isspace() for ch in utt_id):
        raise W2vtkError(f"utterance id {utt_id!r} is empty or contains whitespace")
    start = fh.tell()
    if dtype == "float16":
        kaldiio.save_ark(fh, {utt_id: np.ascontiguousarray(mat, dtype=np.float16)},
                         write_function="numpy")
    elif compress:
        kaldiio.save_ark(fh, {utt_id: np.ascontiguousarray(mat, dtype=np.float32)},
                         compression_method=KALDI_SPEECH_FEATURE_COMPRESSION)
    else:
        kaldiio.save_ark(fh, {utt_id: np.ascontiguousarray(mat, dtype=np.float32)})
    faults.hit("ark_write", getattr(fh, "name", None))
    return start + len(utt_id.encode("utf-8")) + 1


def write_npy(npy_dir: Path, utt_id: str, mat: np.ndarray, dtype: str) -> None:
    """``npy_dir/<utt_id>.npy`` (T', C) in ``dtype``, written atomically."""
    with atomic_open(npy_dir / f"{utt_id}.npy", "wb", encoding=None) as fh:
        np.save(fh, np.ascontiguousarray(mat, dtype=np.dtype(dtype)))


# ------------------------------------------------------------------------------------ reading

# Record kinds kaldiio's reader understands that are never accepted from a feature archive.
_REFUSED_RECORDS = {
    b"PKL": "a pickled object (w2vtk never unpickles archive data: unpickling can run code)",
    b"AUDIO": "an audio record, not a feature matrix",
    b"RIFF": "a WAV record, not a feature matrix",
    b"fLaC": "a FLAC record, not a feature matrix",
}


_DIGITS = re.compile(r"[0-9]{1,18}")  # ASCII only: str.isdigit() accepts '²', which int() refuses


def _range(text: str, where: str) -> slice:
    """One Kaldi range ``a:b`` (inclusive, as Kaldi's ``feats.ark:12[0:99]``), ``a`` or empty."""
    text = text.strip()
    if text in ("", ":"):
        return slice(None)
    parts = text.split(":")
    if len(parts) > 2 or not all(_DIGITS.fullmatch(p.strip()) for p in parts):
        raise W2vtkError(f"{where}: bad range specifier [{text}]")
    lo = int(parts[0])
    hi = int(parts[-1])
    if hi < lo:
        raise W2vtkError(f"{where}: empty range specifier [{text}]")
    return slice(lo, hi + 1)


def _split_rxfilename(rx: str, where: str) -> tuple[str, int | None, tuple[slice, ...] | None]:
    """``PATH[:OFFSET][[ROWS[,COLS]]]`` -> (path, byte offset or None, slices or None)."""
    slices = None
    if rx.endswith("]") and "[" in rx:
        cut = rx.rindex("[")
        rx, spec = rx[:cut], rx[cut + 1:-1]
        slices = tuple(_range(part, where) for part in spec.split(","))
        if len(slices) > 2:
            raise W2vtkError(f"{where}: bad range specifier [{spec}]")
    head, sep, tail = rx.rpartition(":")
    if sep and head and _DIGITS.fullmatch(tail):
        return head, int(tail), slices
    return rx, None, slices


def _read_record(fd, where: str) -> np.ndarray:
    from kaldiio.matio import read_kaldi

    start = fd.tell()
    head = fd.read(5)
    if not head:
        raise W2vtkError(f"{where}: no data at this position (past the end of the archive?)")
    for magic, what in _REFUSED_RECORDS.items():
        if head.startswith(magic):
            raise W2vtkError(f"{where}: refused to read {what}")
    fd.seek(start)
    try:
        value = read_kaldi(fd)
    except Exception as err:  # kaldiio raises many types (ValueError, AssertionError, ...) on damage
        msg = " ".join(str(err).split())[:120] or type(err).__name__
        raise W2vtkError(f"{where}: truncated or corrupt archive record ({msg})") from None
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu":
        raise W2vtkError(f"{where}: not a numeric feature matrix")
    return value


def read_matrix(rxfilename: str, where: str) -> np.ndarray:
    """The matrix (or vector) a Kaldi rxfilename names: ``PATH:OFFSET`` in an ark (optionally with
    a Kaldi range ``[rows]`` / ``[rows,cols]``, ends inclusive), a whole file ``PATH``, or a shell
    command ending in ``|`` whose stdout is one binary matrix.  ``where`` names the entry in errors
    (e.g. ``data/train/feats.scp: 'utt1'``)."""
    import io

    rx = rxfilename.strip()
    if rx.endswith("|"):
        cmd = rx[:-1].strip()
        if not cmd:
            raise W2vtkError(f"{where}: empty pipe command")
        value = _read_record(io.BytesIO(run_pipe(cmd, where)), where)
        slices = None
    else:
        path, offset, slices = _split_rxfilename(rx, where)
        try:
            with open(path, "rb") as fd:
                size = fd.seek(0, 2)
                if offset is not None and offset >= size:
                    raise W2vtkError(f"{where}: offset {offset} is past the end of {path} ({size} bytes)")
                fd.seek(offset or 0)
                value = _read_record(fd, where)
        except OSError as err:
            raise W2vtkError(f"{where}: cannot read {path} ({err.strerror or err})") from None
        except ValueError:  # open() refuses a path with a NUL byte
            raise W2vtkError(f"{where}: {path!r} is not a usable file name") from None
    if slices is not None:
        if len(slices) > value.ndim:
            raise W2vtkError(f"{where}: {len(slices)} range specifiers for a {value.ndim}-dimensional record")
        value = value[slices]
    return value


class ScpReader:
    """Lazy ``utt -> matrix`` view of a scp table (``{utt: rxfilename}``, e.g. from
    :func:`w2vtk.data.read_kv`), read with :func:`read_matrix`; errors name ``scp_path`` and the
    utterance."""

    def __init__(self, scp_path: str | Path, table: dict[str, str]):
        self.path = Path(scp_path)
        self.table = table

    def __contains__(self, utt: str) -> bool:
        return utt in self.table

    def __len__(self) -> int:
        return len(self.table)

    def __iter__(self):
        return iter(self.table)

    def __getitem__(self, utt: str) -> np.ndarray:
        if utt not in self.table:
            raise W2vtkError(f"{self.path}: no entry for '{utt}'")
        return read_matrix(self.table[utt], f"{self.path}: '{utt}'")
