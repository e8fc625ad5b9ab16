"""Writing feature matrices: Kaldi ark + scp (through kaldiio), optionally .npy per utterance.

Storage dtypes:
- ``float32``: Kaldi's binary ``FM`` matrix, readable by Kaldi binaries, kaldiio, lhotse, ESPnet.
- ``float16``: kaldiio's ``NPY`` ark record (a .npy blob inside the ark); read by ``kaldiio.load_scp``
  / ``load_mat`` (half the size of float32), not by Kaldi's C++ binaries.
- ``compress=True``: Kaldi's lossy ``CM`` compression (``compression_method=2``, kSpeechFeature, what
  ``copy-feats --compress=true`` writes); readable everywhere Kaldi features are.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

import numpy as np

from w2vtk.errors import W2vtkError

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
    from w2vtk import faults

    faults.hit("ark_write", getattr(fh, "name", None))
    return start + len(utt_id.encode("utf-8")) + 1


def write_npy(npy_dir: Path, utt_id: str, mat: np.ndarray, dtype: str) -> None:
    """``npy_dir/<utt_id>.npy`` (T', C) in ``dtype``, written atomically."""
    from w2vtk.io import atomic_open

    with atomic_open(npy_dir / f"{utt_id}.npy", "wb", encoding=None) as fh:
        np.save(fh, np.ascontiguousarray(mat, dtype=np.dtype(dtype)))
