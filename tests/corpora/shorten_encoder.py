"""Test-only shorten (v2) encoder: writes NIST SPHERE files with embedded-shorten audio (WSJ .wv1).

No packaged shorten encoder exists on PyPI / Debian, so the WSJ tests make their own ``.wv1`` files
with this minimal one.  Format (Robinson 1994, TR.156): magic ``ajkg``, version byte 2, then an
MSB-first bit stream of Rice codes.  ``uvar(k)`` = unary high part (zeros ended by a one) + k low
bits; ``ulong`` = ``uvar(2)`` giving k, then ``uvar(k)``; signed values are zig-zagged into
``uvar(k + 1)``.  Header: file type, channels, block size, max LPC order, mean blocks, skip bytes
(each ulong).  Each block: function code ``uvar(2)``; DIFFn blocks carry an energy ``uvar(3)`` and
residuals coded with Rice parameter energy + 1.  Emitted: DIFF0 (with the running mean of the
last nmean block means) to DIFF3 blocks, BLOCKSIZE for a short last block, QUIT; no LPC.
"""

from __future__ import annotations

import numpy as np

FN_DIFF0, FN_DIFF1, FN_QUIT, FN_BLOCKSIZE = 0, 1, 4, 5
TYPE_S16HL, TYPE_S16LH = 3, 5


class _BitWriter:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def put(self, value: int, n: int) -> None:
        for i in range(n - 1, -1, -1):
            self.bits.append((value >> i) & 1)

    def uvar(self, value: int, k: int) -> None:
        high = value >> k
        self.bits.extend([0] * high)
        self.bits.append(1)
        if k:
            self.put(value & ((1 << k) - 1), k)

    def ulong(self, value: int) -> None:
        k = max(value.bit_length(), 0)
        self.uvar(k, 2)
        self.uvar(value, k)

    def var(self, value: int, k: int) -> None:
        zig = (value << 1) if value >= 0 else ((~value) << 1) | 1
        self.uvar(zig, k)

    def to_bytes(self) -> bytes:
        bits = self.bits + [0] * (-len(self.bits) % 8)
        return np.packbits(np.array(bits, dtype=np.uint8)).tobytes()


def _energy(residuals: np.ndarray) -> int:
    """Rice parameter minus one for the mean absolute residual (>= 0)."""
    mean = float(np.mean(np.abs(residuals))) if len(residuals) else 0.0
    k = int(np.log2(mean + 1.0)) if mean > 0 else 0
    return max(k - 1, 0)


def _cdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero), as the shorten format defines it."""
    q = abs(a) // abs(b)
    return -q if (a < 0) != (b < 0) else q


def shorten_encode(samples: np.ndarray, *, blocksize: int = 256, ftype: int = TYPE_S16LH,
                   nmean: int = 4, functions: tuple[int, ...] = (0, 1, 2, 3),
                   pad_last: bool = False) -> bytes:
    """Encode int16 ``samples`` of shape (T,) or (T, C) as a shorten v2 stream (bytes).

    Blocks cycle through the DIFFn ``functions`` (0: sample minus the running mean of the last
    ``nmean`` block means, shorten's v2 default nmean = 4; 1..3: polynomial predictors of order
    n).  A short last block is announced with a BLOCKSIZE command as shorten does, or, with
    ``pad_last``, zero-padded to a whole block (the SPHERE sample_count then marks the end).
    """
    x = np.asarray(samples)
    if x.ndim == 1:
        x = x[:, None]
    nchan = x.shape[1]
    w = _BitWriter()
    w.ulong(ftype)
    w.ulong(nchan)
    w.ulong(blocksize)
    w.ulong(0)  # maxnlpc: no LPC blocks
    w.ulong(nmean)
    w.ulong(0)  # nskip
    hist = [[0, 0, 0] for _ in range(nchan)]  # last three samples per channel (DIFF3 needs 3)
    means = [[0] * nmean for _ in range(nchan)]
    pos, b, size = 0, 0, blocksize
    while pos < len(x):
        part_len = min(blocksize, len(x) - pos)
        if part_len < size and not pad_last:
            size = part_len
            w.uvar(FN_BLOCKSIZE, 2)
            w.ulong(size)
        for c in range(nchan):
            blk = np.zeros(size, dtype=np.int64)
            blk[:part_len] = x[pos:pos + part_len, c]
            fn = functions[b % len(functions)]
            h = hist[c]
            res = []
            for i, v in enumerate(blk.tolist()):
                p1, p2, p3 = h[-1], h[-2], h[-3]
                if fn == FN_DIFF0:
                    offset = _cdiv(sum(means[c]) + nmean // 2, nmean) if nmean else 0
                    res.append(v - offset)
                elif fn == 1:
                    res.append(v - p1)
                elif fn == 2:
                    res.append(v - (2 * p1 - p2))
                else:
                    res.append(v - (3 * p1 - 3 * p2 + p3))
                h = h[1:] + [v]
            hist[c] = h
            e = _energy(np.array(res))
            w.uvar(fn, 2)
            w.uvar(e, 3)
            for r in res:
                w.var(int(r), e + 1)  # residual Rice parameter = energy + 1
            if nmean:
                means[c] = means[c][1:] + [_cdiv(int(blk.sum()) + size // 2, size)]
        pos += part_len
        b += 1
    w.uvar(FN_QUIT, 2)
    return b"ajkg" + bytes([2]) + w.to_bytes()


def sphere_header(*, sample_count: int, sample_rate: int = 16000, channels: int = 1,
                  coding: str = "pcm", byte_format: str = "01", extra: dict | None = None) -> bytes:
    """A 1024-byte NIST_1A header (ASCII fields, padded with spaces as the real files are)."""
    fields = [("sample_count", "-i", sample_count), ("sample_rate", "-i", sample_rate),
              ("channel_count", "-i", channels), ("sample_n_bytes", "-i", 2),
              ("sample_sig_bits", "-i", 16), ("sample_byte_format", f"-s{len(byte_format)}", byte_format),
              ("sample_coding", f"-s{len(coding)}", coding)]
    for key, value in (extra or {}).items():
        fields.append((key, f"-s{len(str(value))}", value))
    text = "NIST_1A\n   1024\n" + "".join(f"{k} {t} {v}\n" for k, t, v in fields) + "end_head\n"
    raw = text.encode("ascii")
    assert len(raw) <= 1024
    return raw + b" " * (1024 - len(raw))


def write_sphere_pcm(path, samples: np.ndarray, sample_rate: int = 16000) -> None:
    """Uncompressed 16-bit little-endian SPHERE (TIMIT .WAV)."""
    x = np.asarray(samples, dtype="<i2")
    channels = 1 if x.ndim == 1 else x.shape[1]
    with open(path, "wb") as fh:
        fh.write(sphere_header(sample_count=len(x), sample_rate=sample_rate, channels=channels))
        fh.write(x.tobytes())


def write_sphere_shorten(path, samples: np.ndarray, sample_rate: int = 16000,
                         blocksize: int = 256) -> None:
    """Shorten-compressed SPHERE as in WSJ's .wv1 files."""
    x = np.asarray(samples, dtype=np.int16)
    channels = 1 if x.ndim == 1 else x.shape[1]
    with open(path, "wb") as fh:
        fh.write(sphere_header(sample_count=len(x), sample_rate=sample_rate, channels=channels,
                               coding="pcm,embedded-shorten-v2.00"))
        fh.write(shorten_encode(x, blocksize=blocksize))
