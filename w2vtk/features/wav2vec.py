"""wav2vec features (z, c, context-N): exact batched extraction and exact long-audio extraction.

Every GroupNorm of wav2vec 1.0 spans the whole utterance, so

- batching pads utterances and relies on the model's padding-aware forward (statistics over each
  utterance's valid frames only): batched == one at a time, to float rounding;
- a long recording (longer than ``long_chunk_seconds``) is cut into chunks, and made exact by one
  statistics pass per normalised layer: pass l recomputes encoder layers 0..l-1 chunk by chunk (their
  statistics already known) and accumulates layer l's float64 (count, sum, sum of squares) over the
  whole utterance; from z on (100 Hz, no bigger than the output) each context layer is computed once
  chunk by chunk and normalised with its whole-utterance statistics.  Memory is bounded by the chunk
  size (plus a few copies of the output itself); the encoder is recomputed once per encoder layer
  (5 times for base, 7 for large), the price of exactness on hour-long audio;
- the approximate chunked mode (``approx_chunks``) normalises each chunk on its own; it is opt-in and
  prints its error measured against the exact path on the first long utterance.

Chunk arithmetic: an encoder layer (kernel k, stride s) needs input frames [a*s, (b-1)*s + k) for output
frames [a, b); a context layer (kernel k, causal, replication left pad) needs input frames
[a - k + 1, b), where frames before 0 are copies of frame 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from w2vtk.errors import W2vtkError
from w2vtk.io import sha256_file
from w2vtk.models.fairseq import load_wav2vec
from w2vtk.models.frames import conv_output_length, frame_lengths, receptive_field
from w2vtk.models.wav2vec import moments_from_sums, parse_layer_name

SAMPLE_RATE = 16000


class _Stages:
    """The normalised layers of a model in order (encoder layers, then context layers) and the stage
    whose output is the requested feature."""

    def __init__(self, model, layer: str):
        self.model = model
        self.enc = list(model.encoder.layers)
        self.ctx = list(model.context.layers)
        which = parse_layer_name(layer, len(self.ctx))
        if which == "z":
            self.last = len(self.enc) - 1
        elif which == "c":
            self.last = len(self.enc) + len(self.ctx) - 1
        else:
            self.last = len(self.enc) + int(which) - 1
        self.stride = []  # samples per output frame of each encoder stage
        s = 1
        for lay in self.enc:
            s *= lay.stride
            self.stride.append(s)

    def is_enc(self, j: int) -> bool:
        return j < len(self.enc)

    def layer(self, j: int):
        return self.enc[j] if self.is_enc(j) else self.ctx[j - len(self.enc)]

    def frames(self, j: int, num_samples: int) -> int:
        n = num_samples
        for lay in self.enc[: min(j, len(self.enc) - 1) + 1]:
            n = conv_output_length(n, lay.kernel_size, lay.stride)
        return n

    def input_range(self, j: int, a: int, b: int) -> tuple[int, int]:
        """Input frames (or samples, for stage 0) that stage j's output frames [a, b) need; a context
        layer's start may be negative (those frames are copies of frame 0)."""
        lay = self.layer(j)
        if self.is_enc(j):
            return a * lay.stride, (b - 1) * lay.stride + lay.kernel_size
        return a - lay.left_pad, b

    def run(self, wave: Tensor, j_last: int, a: int, b: int, stats: dict[int, tuple[Tensor, Tensor]],
            pre_norm_last: bool) -> Tensor:
        """Stage ``j_last``'s output frames [a, b) (B=1, C, b - a), computed from the samples it needs.

        Stages before ``j_last`` are normalised with ``stats`` (whole-utterance moments); with
        ``pre_norm_last`` the last stage's output is returned before its norm (for its statistics).
        """
        ranges = [(0, 0)] * (j_last + 1)
        ranges[j_last] = (a, b)
        for j in range(j_last, 0, -1):
            lo, hi = self.input_range(j, *ranges[j])
            ranges[j - 1] = (max(lo, 0), hi)
        s0, s1 = self.input_range(0, *ranges[0])
        x = wave[:, s0:s1].unsqueeze(1)
        n_enc = len(self.enc)
        for j in range(j_last + 1):
            lay = self.layer(j)
            out_a, out_b = ranges[j]
            if self.is_enc(j):
                h = lay.pre_norm(x)
                x_in = None
            else:
                lo, _ = self.input_range(j, out_a, out_b)
                x_in = x
                if lo < 0:
                    x = torch.cat([x[:, :, :1].expand(-1, -1, -lo), x], dim=2)
                h = lay.dropout(lay.conv(x))
            if j == j_last and pre_norm_last:
                return h
            mean, var = stats[j]
            y = lay.norm.normalize(h, mean, var)
            if self.is_enc(j):
                if j == n_enc - 1 and self.model.encoder.log_compression:
                    y = torch.log1p(y)
            elif self.model.context.skip:
                # The residual adds the layer's own input at the output frames.
                y = self.model.context.residual(j - n_enc, x_in[:, :, x_in.shape[2] - (out_b - out_a):], y)
            x = y
        return x


def exact_chunked(model, wave: Tensor, layer: str = "c", chunk_samples: int = 480_000) -> Tensor:
    """Exact features of one long utterance in bounded memory.

    wave: (T,) samples at 16 kHz.  Returns (T', C) fp32 frames at 100 Hz, equal (to float rounding)
    to ``model.extract(wave[None], layer=layer)`` on the whole utterance.

    Encoder layers run at up to 32x the output frame rate, so they are never held whole: pass l
    recomputes encoder layers 0..l-1 chunk by chunk from the samples to gather layer l's statistics.
    From z on (100 Hz, the size of the output itself) each context layer is computed once, chunk by
    chunk, from the previous layer's kept output.  Peak memory: a chunk of ``chunk_samples`` through
    the widest encoder layer, plus about three times the output.
    """
    st = _Stages(model, layer)
    wave = wave.reshape(1, -1)
    n = wave.shape[1]
    n_enc = len(st.enc)
    if st.frames(n_enc - 1, n) < 1:
        raise W2vtkError(f"audio of {n} samples is shorter than the model's receptive field")
    stats: dict[int, tuple[Tensor, Tensor]] = {}
    for j in range(n_enc):
        total = st.frames(j, n)
        step = _chunk_frames(st, j, chunk_samples)
        acc = None
        for a in range(0, total, step):
            h = st.run(wave, j, a, min(a + step, total), stats, pre_norm_last=True)
            sums = st.layer(j).norm.sums(h)
            acc = sums if acc is None else tuple(p + q for p, q in zip(acc, sums))
        stats[j] = moments_from_sums(*acc)
    total = st.frames(n_enc - 1, n)
    step = _chunk_frames(st, n_enc - 1, chunk_samples)
    x = torch.cat([st.run(wave, n_enc - 1, a, min(a + step, total), stats, pre_norm_last=False)
                   for a in range(0, total, step)], dim=2)
    for j in range(n_enc, st.last + 1):
        lay = st.layer(j)
        pieces, acc = [], None
        for a in range(0, total, step):
            b = min(a + step, total)
            lo = a - lay.left_pad
            xin = x[:, :, max(lo, 0):b]
            if lo < 0:
                xin = torch.cat([x[:, :, :1].expand(-1, -1, -lo), xin], dim=2)
            h = lay.dropout(lay.conv(xin))
            sums = lay.norm.sums(h)
            acc = sums if acc is None else tuple(p + q for p, q in zip(acc, sums))
            pieces.append(h)
        mean, var = moments_from_sums(*acc)
        out = []
        for a, h in zip(range(0, total, step), pieces):
            y = lay.norm.normalize(h, mean, var)
            if model.context.skip:
                y = model.context.residual(j - n_enc, x[:, :, a:a + h.shape[2]], y)
            out.append(y)
        del pieces
        x = torch.cat(out, dim=2)
    return x[0].transpose(0, 1)


def _chunk_frames(st: _Stages, j: int, chunk_samples: int) -> int:
    stride = st.stride[j] if st.is_enc(j) else st.stride[-1]
    return max(1, chunk_samples // stride)


def approx_chunked(model, wave: Tensor, layer: str = "c", chunk_samples: int = 480_000) -> Tensor:
    """Approximate features: each chunk normalised on its own (fast, NOT exact; opt-in only).

    Chunks start at multiples of ``chunk_samples`` (rounded to the 160-sample frame stride) and
    overlap by the receptive field, so the frame count and positions equal the whole-file ones.
    """
    rf, stride = receptive_field(model.cfg.conv_feature_layers)
    n = wave.shape[-1]
    total = model.num_frames(n)
    per = max(1, chunk_samples // stride)
    pieces = []
    for a in range(0, total, per):
        b = min(a + per, total)
        seg = wave[a * stride: (b - 1) * stride + rf]
        feats, _ = model.extract(seg[None], layer=layer)
        pieces.append(feats[0, : b - a])
    return torch.cat(pieces, dim=0)


def _norm_relu(norm, h: Tensor, lengths: Tensor | None) -> Tensor:
    """ReLU(GroupNorm(h)) with each utterance normalised over its own valid frames.

    Same semantics as the model's ``MaskedGroupNorm.forward``; on CPU computed with the native
    group_norm kernel on each utterance's valid slice (the model's masked path builds its statistics
    from several elementwise passes and made a padded batch ~25% slower than one utterance at a time
    on CPU); on CUDA the model's own path.  Padded frames come out as 0; no valid frame depends on them (valid convolutions, causal
    context layers).
    """
    T = h.shape[-1]
    group = norm.num_channels // norm.num_groups
    if h.is_cuda:
        # GPU: the model's own masked statistics (split reductions, no per-utterance loop: the
        # native kernel on one utterance's slice is a single thread block; see few_rows_on_gpu)
        y = norm(h, lengths)
        if lengths is not None:
            y.masked_fill_(torch.arange(T, device=h.device)[None, None, :] >= lengths[:, None, None], 0.0)
        return y
    if lengths is None or bool((lengths == T).all()):
        if T * group > 1:
            return torch.relu_(F.group_norm(h.float(), norm.num_groups, norm.weight, norm.bias, norm.eps))
        return norm(h, lengths)
    if int(lengths.min()) * group <= 1:
        return norm(h, lengths)  # group_norm refuses a group of one value; the model handles it
    out = torch.empty(h.shape, dtype=torch.float32, device=h.device)
    for b in range(h.shape[0]):
        n = int(lengths[b])
        y = F.group_norm(h[b:b + 1, :, :n].float(), norm.num_groups, norm.weight, norm.bias, norm.eps)
        torch.clamp_min(y, 0.0, out=out[b:b + 1, :, :n])  # ReLU fused with the copy into the batch
        out[b:b + 1, :, n:].zero_()
    return out


def batched_forward(model, wave: Tensor, lengths: Tensor | None, layer: str = "c") -> tuple[Tensor, Tensor]:
    """Inference forward of a padded batch: wave (B, T) samples, lengths (B,) samples or None ->
    (features (B, T', C), frame lengths (B,)).  Each utterance's valid frames equal what it gives alone.

    The model's own layers and parameters, with :func:`_norm_relu` as the normalisation (eval mode:
    dropout is the identity).
    """
    which = parse_layer_name(layer, len(model.context.layers))
    B = wave.shape[0]
    flen = None if lengths is None else lengths.to(device=wave.device, dtype=torch.int64)
    x = wave.unsqueeze(1)
    for lay in model.encoder.layers:
        if flen is not None:
            flen = frame_lengths(flen, [(0, lay.kernel_size, lay.stride)])
        x = _norm_relu(lay.norm, lay.conv(x), flen)
    if x.shape[-1] == 0:
        raise W2vtkError(f"audio of {wave.shape[-1]} samples is shorter than the model's receptive field")
    if model.encoder.log_compression:
        x = torch.log1p(x)
    if flen is None:
        flen = torch.full((B,), x.shape[-1], dtype=torch.int64, device=wave.device)
    if which != "z":
        stop = len(model.context.layers) if which == "c" else int(which)
        for i in range(stop):
            lay = model.context.layers[i]
            y = _norm_relu(lay.norm, lay.conv(lay.pad(x)), flen)
            x = model.context.residual(i, x, y) if model.context.skip else y
    return x.transpose(1, 2), flen


class Wav2VecExtractor:
    """The driver's view of a wav2vec model (see :class:`w2vtk.features.extract.FeatureExtractor`).

    ``extract`` pads a batch into (B, T) samples with lengths and runs the padding-aware forward;
    utterances longer than ``long_chunk_seconds`` go through :func:`exact_chunked` (or
    :func:`approx_chunked` when asked for).  fp32 on CUDA turns TF32 off so fp32 means fp32;
    ``precision="bf16"`` runs the convolutions under bf16 autocast (CUDA only).
    """

    feature_type = "wav2vec"

    def __init__(self, model, *, layer: str = "c", device: torch.device | str = "cpu", precision: str = "fp32",
                 long_chunk_seconds: float = 60.0, approx_chunks: bool = False,
                 log: Callable[[str], None] | None = None, checkpoint: dict | None = None,
                 cpu_padded_batches: bool = False):
        self.device = torch.device(device)
        # On CPU a batch dimension buys the convolutions nothing and padded frames cost (measured on
        # 2 cores: padded batches at 0.81x (base) / 0.91x (large) the per-utterance speed), so CPU
        # batches run one utterance at a time unless this asks for the padded path (tests use it).
        self.cpu_padded_batches = cpu_padded_batches
        if precision not in ("fp32", "bf16"):
            raise W2vtkError(f"--precision {precision}: expected fp32 or bf16")
        if precision == "bf16" and self.device.type != "cuda":
            raise W2vtkError("--precision bf16 is for CUDA; CPU extraction runs in fp32")
        if long_chunk_seconds <= 0:
            raise W2vtkError(f"--long-chunk-seconds {long_chunk_seconds}: must be positive")
        self.model = model.to(self.device).eval()
        self.layer = layer
        which = parse_layer_name(layer, len(model.context.layers))
        if which == "z":
            self.dim = model.encoder.dim
        elif which == "c":
            self.dim = model.context.dim
        else:
            self.dim = model.context.layers[int(which) - 1].conv.out_channels
        self.min_samples = receptive_field(model.cfg.conv_feature_layers)[0]
        self.precision = precision
        self.chunk_samples = int(round(long_chunk_seconds * SAMPLE_RATE))
        self.approx = approx_chunks
        self._measured = False
        self.log = log or (lambda _m: None)
        self.checkpoint = checkpoint or {}
        if self.device.type == "cuda":
            # fp32 must mean fp32: TF32 convolutions / matmuls differ from fairseq's fp32 by ~1e-3.
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.set_float32_matmul_precision("highest")

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, layer: str = "c", device=None, precision: str = "fp32",
                        long_chunk_seconds: float = 60.0, approx_chunks: bool = False,
                        log: Callable[[str], None] | None = None) -> "Wav2VecExtractor":
        path = Path(path)
        if not path.is_file():
            raise W2vtkError(f"--checkpoint {path}: no such file")
        model, info = load_wav2vec(path)
        meta = {"checkpoint_path": str(path.absolute()), "checkpoint_sha256": sha256_file(path),
                "checkpoint_format": info.source}
        return cls(model, layer=layer, device=device or "cpu", precision=precision,
                   long_chunk_seconds=long_chunk_seconds, approx_chunks=approx_chunks, log=log,
                   checkpoint=meta)

    def num_frames(self, num_samples: int) -> int:
        return self.model.num_frames(num_samples)

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        import contextlib

        return contextlib.nullcontext()

    def _batch(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        if len(waves) > 1 and self.device.type == "cpu" and not self.cpu_padded_batches:
            return [self._batch([w])[0] for w in waves]
        longest = max(len(w) for w in waves)
        batch = torch.zeros(len(waves), longest, dtype=torch.float32)
        for i, w in enumerate(waves):
            batch[i, : len(w)] = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))
        lengths = torch.tensor([len(w) for w in waves], dtype=torch.int64)
        batch = batch.to(self.device, non_blocking=True)
        with torch.inference_mode(), self._autocast():
            feats, flen = batched_forward(self.model, batch, lengths if len(waves) > 1 else None, self.layer)
        feats = feats.float().cpu()
        return [feats[i, : int(flen[i])].numpy() for i in range(len(waves))]

    def _long(self, utt: str, wave: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)).to(self.device)
        with torch.inference_mode(), self._autocast():
            if not self.approx:
                return exact_chunked(self.model, x, self.layer, self.chunk_samples).float().cpu().numpy()
            approx = approx_chunked(self.model, x, self.layer, self.chunk_samples).float().cpu()
            if not self._measured:
                self._measured = True
                exact = exact_chunked(self.model, x, self.layer, self.chunk_samples).float().cpu()
                err = (approx - exact).abs()
                scale = exact.abs().max().clamp(min=1e-12)
                self.log(f"approximate chunking ({self.chunk_samples / SAMPLE_RATE:g} s chunks), measured "
                         f"on {utt} ({len(wave) / SAMPLE_RATE:.1f} s) against the exact path: max abs "
                         f"error {float(err.max()):.3g} ({float(err.max() / scale):.2%} of the largest "
                         f"value), mean abs error {float(err.mean()):.3g}")
            return approx.numpy()

    def extract(self, batch: list[tuple[str, np.ndarray]]) -> list[np.ndarray]:
        """(utt_id, (T,) samples) pairs -> (T', dim) float32 each; long ones through the chunked path."""
        out: list[np.ndarray | None] = [None] * len(batch)
        short = [i for i, (_, w) in enumerate(batch) if len(w) <= self.chunk_samples]
        for i, (utt, w) in enumerate(batch):
            if len(w) > self.chunk_samples:
                out[i] = self._long(utt, w)
        if short:
            for i, feats in zip(short, self._batch([batch[i][1] for i in short])):
                out[i] = feats
        return out  # type: ignore[return-value]

    def provenance(self) -> dict:
        import dataclasses

        cfg = dataclasses.asdict(self.model.cfg)
        cfg = {k: ([list(t) for t in v] if isinstance(v, list) else v) for k, v in cfg.items()}
        return {**self.checkpoint, "layer": self.layer, "precision": self.precision,
                "long_audio": ("approximate chunks" if self.approx else "exact chunked")
                + f" above {self.chunk_samples / SAMPLE_RATE:g} s",
                "receptive_field_samples": self.min_samples, "model_config": cfg}
