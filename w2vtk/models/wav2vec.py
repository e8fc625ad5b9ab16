"""wav2vec 1.0 (Schneider et al., 2019): encoder f: X -> Z, context network g: Z -> C, step projections.

Numerically the same network as fairseq 0.12's ``fairseq/models/wav2vec/wav2vec.py`` (the fixture
tests hold z and c to 1e-5 of fairseq's), with three additions:

* a padding-aware forward: ``forward(wave, lengths)`` normalises every GroupNorm over each
  utterance's *valid* frames only, so a padded batch gives the same z / c as one utterance at a
  time (fairseq's GroupNorm spans the padding, which changes every frame).  ``padded="masked"``
  computes the batch at once with masked statistics (GPU, training); ``padded="loop"`` runs each
  utterance unpadded (CPU inference, bit-identical and as fast as one at a time); "auto" picks;
* ``norm: channel``: GroupNorm with one group per channel (each channel normalised over the
  utterance's frames), which small models need to leave chance (see docs/wav2vec.md);
* the step projection is computed as one matrix product instead of fairseq's ConvTranspose2d call
  (same parameters, same numbers, no col2im).

Structure (what the chunked long-audio extractor builds on; every piece is a public attribute)::

    model.encoder.layers[i]          EncoderLayer: .conv  nn.Conv1d(C_in, C, k, stride=s, bias=False), valid
                                                   .norm  MaskedGroupNorm (fp32 stats, affine) -> ReLU
    model.encoder.log_compression    z = log(1 + |x|) after the last layer (large)
    model.context.layers[i]          ContextLayer: .conv  nn.Conv1d(C_in, C, k, bias=True) on the input
                                                   left-padded with k - 1 copies of its first frame
                                                   (.left_pad), .dropout (fairseq's place: before
                                                   the norm), .norm MaskedGroupNorm -> ReLU
    model.context.residual_proj[i]   nn.Conv1d(C_in, C, 1, bias=False) or None (skip with a width change)
    model.context.skip               skip connections: x = (layer(x) + x) * model.context.residual_scale
    model.context.residual_scale     sqrt(cfg.residual_scale) (fairseq applies the square root)
    model.step_proj                  nn.ConvTranspose2d(C, C_z, (1, K)): weight (C, C_z, 1, K), one
                                     bias (C_z,) shared by all K steps; used through project_steps()

One layer, step by step (all tensors (B, C, T) frames, fp32)::

    h = layer.pre_norm(x)                       # conv (context: with its replication left pad;
                                                #   pre_norm(x, left_context) for a later chunk)
    y = layer.norm(h, lengths)                  # = layer.norm.normalize(h, *layer.norm.moments(h, lengths))
                                                #   i.e. ReLU(GroupNorm_over_valid_frames(h))

For exact chunked extraction of long audio, accumulate ``layer.norm.sums(h_chunk, lengths)`` (float64
(count, sum, sum of squares) per group) over all chunks of the utterance, turn them into moments with
:func:`moments_from_sums`, and apply them with ``layer.norm.normalize(h_chunk, mean, var)``.

Frames: the encoder is a stack of valid convolutions; L samples give ``num_frames(L, layers)`` frames
(16000 -> 98, 150000 -> 935, fewer than the receptive field of 465 samples -> 0).

CPU note: constructing a :class:`Wav2VecModel` calls ``torch.set_flush_denormal(True)`` (process
wide): collapsed ReLU activations otherwise produce denormal floats that doubled the CPU step time.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from w2vtk.errors import W2vtkError
from w2vtk.models.frames import auto_offset, conv_output_length, frame_lengths, num_frames, receptive_field  # noqa: F401
from w2vtk.models.layer_spec import (BASE_AGGREGATOR_LAYERS, BASE_FEATURE_LAYERS, LARGE_AGGREGATOR_LAYERS,  # noqa: F401
                                     LARGE_FEATURE_LAYERS, LayerSpec, check_layers)

SAMPLE_RATE = 16000


@dataclass
class Wav2VecConfig:
    """wav2vec 1.0 model options; every name is fairseq's (``--conv-feature-layers`` etc.).

    Defaults are the paper's base model.  Layer specs are lists of ``(dim, kernel, stride)``.
    """

    conv_feature_layers: list[tuple[int, int, int]] = field(default_factory=lambda: list(BASE_FEATURE_LAYERS))
    """encoder convs (fairseq conv_feature_layers); (B, T) samples -> (B, C, T') frames."""
    conv_aggregator_layers: list[tuple[int, int, int]] = field(
        default_factory=lambda: list(BASE_AGGREGATOR_LAYERS))
    """context convs (fairseq conv_aggregator_layers); stride must be 1."""
    skip_connections_agg: bool = False
    """residual connections in the context network (fairseq skip_connections_agg)."""
    residual_scale: float = 0.5
    """x = (layer(x) + x) * sqrt(residual_scale) (fairseq residual_scale)."""
    log_compression: bool = False
    """z = log(1 + |x|) at the encoder output (fairseq log_compression)."""
    prediction_steps: int = 12
    """K, the number of future steps predicted (fairseq prediction_steps)."""
    offset: int | str = "auto"
    """distance of step 1's target (fairseq offset); "auto" = ceil(receptive field / stride) = 3."""
    num_negatives: int = 10
    """N negatives per target, from the same utterance (fairseq num_negatives)."""
    cross_sample_negatives: int = 0
    """negatives from other utterances (fairseq cross_sample_negatives); only 0 is supported."""
    dropout: float = 0.0
    """dropout inside the context layers (before each norm) and on the step predictions (fairseq dropout)."""
    dropout_features: float = 0.0
    """dropout on z before the context network; targets stay undropped (fairseq dropout_features)."""
    dropout_agg: float = 0.0
    """dropout on c before the step projection (fairseq dropout_agg)."""
    norm: Literal["group", "channel"] = "group"
    """group: fairseq's GroupNorm(1 group); channel: one group per channel (small models)."""
    infonce: bool = False
    """softmax over positive + N negatives instead of binary cross-entropy (fairseq infonce)."""

    def __post_init__(self) -> None:
        self.conv_feature_layers = check_layers(self.conv_feature_layers, "conv_feature_layers")
        self.conv_aggregator_layers = check_layers(self.conv_aggregator_layers, "conv_aggregator_layers")

    def validate(self) -> None:
        for i, (_, _, stride) in enumerate(self.conv_aggregator_layers):
            if stride != 1:
                raise W2vtkError(f"conv_aggregator_layers: layer {i} has stride {stride}; the context "
                                 f"network must keep the frame rate (stride 1)")
        if self.cross_sample_negatives != 0:
            raise W2vtkError("cross_sample_negatives: only 0 is supported (negatives come from the "
                             "same utterance)")
        if self.prediction_steps < 1:
            raise W2vtkError(f"prediction_steps: must be >= 1, got {self.prediction_steps}")
        if self.num_negatives < 1:
            raise W2vtkError(f"num_negatives: must be >= 1, got {self.num_negatives}")
        if not (isinstance(self.offset, int) or self.offset == "auto"):
            try:
                self.offset = int(self.offset)
            except ValueError:
                raise W2vtkError(f"offset: expected 'auto' or an integer, got {self.offset!r}") from None
        if isinstance(self.offset, int) and self.offset < 0:
            raise W2vtkError(f"offset: must be >= 0, got {self.offset}")
        for name in ("dropout", "dropout_features", "dropout_agg"):
            p = getattr(self, name)
            if not 0.0 <= p < 1.0:
                raise W2vtkError(f"{name}: must be in [0, 1), got {p}")
        if self.residual_scale <= 0:
            raise W2vtkError(f"residual_scale: must be > 0, got {self.residual_scale}")
        if self.norm not in ("group", "channel"):
            raise W2vtkError(f"norm: expected 'group' or 'channel', got {self.norm!r}")

    @property
    def resolved_offset(self) -> int:
        return auto_offset(self.conv_feature_layers) if self.offset == "auto" else int(self.offset)


def preset(name: str) -> Wav2VecConfig:
    """``base`` (paper base) or ``large`` (the released wav2vec_large.pt shape, 32.5M parameters)."""
    if name == "base":
        return Wav2VecConfig()
    if name == "large":
        return Wav2VecConfig(conv_feature_layers=list(LARGE_FEATURE_LAYERS),
                             conv_aggregator_layers=list(LARGE_AGGREGATOR_LAYERS),
                             skip_connections_agg=True, residual_scale=0.5, log_compression=True)
    raise W2vtkError(f"unknown wav2vec preset {name!r} (known: base, large)")


PRESETS = ("base", "large")


# ----------------------------------------------------------------------------------------------
# normalisation

def moments_from_sums(count: Tensor, total: Tensor, total_sq: Tensor) -> tuple[Tensor, Tensor]:
    """float64 (count, sum, sum of squares) per (B, G) -> (mean, biased variance), float64."""
    count = count.clamp(min=1).to(torch.float64)
    mean = total / count
    var = (total_sq / count - mean * mean).clamp(min=0.0)
    return mean, var


def few_rows_on_gpu(h: Tensor, num_groups: int, min_rows: int = 1024) -> bool:
    """Whether (B, C, T) ``h`` on a GPU has too few (utterance, group) rows for native group_norm.

    Its CUDA kernel reduces each row in one thread block: fairseq's one group over a batch of 10
    utterances is 10 blocks on a GPU of 132 multiprocessors, and measured half of a wav2vec large
    training step and 80-90% of extraction on an H200. ``torch.var_mean`` splits a long row across
    blocks; the same statistics (fp32, biased variance), near memory bandwidth.
    """
    return h.is_cuda and h.shape[0] * num_groups < min_rows


class MaskedGroupNorm(nn.Module):
    """GroupNorm over (channels of a group) x (an utterance's valid frames), then ReLU.

    ``num_groups`` 1 is fairseq's Fp32GroupNorm(1, C); ``num_groups == C`` normalises each channel
    over the frames (``norm: channel``).  eps 1e-5 inside the square root, affine, statistics in fp32.
    Parameters ``weight`` / ``bias`` (C,) are fairseq's ``...norm.weight`` / ``...norm.bias``.
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5):
        super().__init__()
        if num_channels % num_groups:
            raise ValueError(f"{num_channels} channels do not split into {num_groups} groups")
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, h: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, C, T) -> ReLU(GroupNorm(h)) (B, C, T); statistics over frames ``< lengths[b]`` only.

        With ``lengths`` None (or every length == T) this is one native group_norm call.  Padded
        frames of the output hold finite values that no valid frame depends on.
        """
        T = h.shape[-1]
        # (group_norm refuses a group of a single value, which `channel` meets on 1-frame input)
        if (lengths is None or bool((lengths == T).all())) and T * (self.num_channels // self.num_groups) > 1:
            if few_rows_on_gpu(h, self.num_groups):
                h = h.float()  # once: bf16 / fp16 activations under autocast, a no-op for fp32
                var, mean = torch.var_mean(h.reshape(h.shape[0], self.num_groups, -1), dim=2, correction=0)
                return self.normalize(h, mean, var)
            y = F.group_norm(h.float(), self.num_groups, self.weight, self.bias, self.eps)
            return torch.relu_(y)
        if lengths is None:
            lengths = torch.full((h.shape[0],), T, dtype=torch.int64, device=h.device)
        mean, var = self.moments(h, lengths)
        return self.normalize(h, mean, var)

    def moments(self, h: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Per-utterance (mean, biased var), each (B, G) fp32, over the first ``lengths[b]`` frames.

        CPU: one two-pass fp32 var_mean per utterance on a strided view (no masked copies of the
        batch: the first encoder layer is memory-bound, so extra passes cost there).  CUDA: one
        vectorised masked computation (no loop, no host sync).  Both match group_norm's arithmetic.
        """
        if h.is_cuda:
            return self.moments_vectorised(h, lengths)
        return self.moments_looped(h, lengths)

    def moments_looped(self, h: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        B, C, T = h.shape
        G = self.num_groups
        means, variances = [], []
        for b, n in enumerate(lengths.tolist()):
            n = min(max(int(n), 1), T)
            # Per-channel var_mean reduces contiguous rows (fast); the channels of a group are then
            # combined exactly: var_g = mean_c(var_c + (mean_c - mean_g)^2).
            v, m = torch.var_mean(h[b, :, :n].float(), dim=1, correction=0)     # (C,)
            m, v = m.view(G, C // G), v.view(G, C // G)
            mean = m.mean(dim=1)
            means.append(mean)
            variances.append((v + (m - mean[:, None]).square()).mean(dim=1))
        return torch.stack(means), torch.stack(variances)

    def moments_vectorised(self, h: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        B, C, T = h.shape
        G = self.num_groups
        hg = h.float().reshape(B, G, C // G, T)
        lengths = lengths.to(h.device)
        valid = (torch.arange(T, device=h.device)[None, :] < lengths[:, None]).to(hg.dtype)
        valid = valid[:, None, None, :]                                        # (B, 1, 1, T)
        count = (lengths.clamp(min=1, max=T) * (C // G)).to(hg.dtype)[:, None]  # (B, 1)
        mean = (hg * valid).sum(dim=(2, 3)) / count
        centred = (hg - mean[:, :, None, None]) * valid
        var = centred.square().sum(dim=(2, 3)) / count
        return mean, var

    def sums(self, h: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """float64 (count (B, G), sum (B, G), sum of squares (B, G)) over each utterance's valid frames.

        Add these up over the chunks of a long utterance, then :func:`moments_from_sums` and
        `normalize` give the exact whole-utterance normalisation.
        """
        B, C, T = h.shape
        G = self.num_groups
        hd = h.detach().to(torch.float64).reshape(B, G, C // G, T)
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.int64, device=h.device)
        mask = (torch.arange(T, device=h.device)[None, :] < lengths.to(h.device)[:, None])
        hd = hd * mask[:, None, None, :].to(hd.dtype)
        count = (lengths.to(torch.float64).clamp(max=T) * (C // G))[:, None].expand(B, G).to(h.device)
        return count, hd.sum(dim=(2, 3)), (hd * hd).sum(dim=(2, 3))

    def normalize(self, h: Tensor, mean: Tensor, var: Tensor) -> Tensor:
        """ReLU(weight * (h - mean) / sqrt(var + eps) + bias) with (B, G) moments; (B, C, T) fp32."""
        B, C, _ = h.shape
        G = self.num_groups
        rstd = torch.rsqrt(var.to(torch.float32) + self.eps)
        mean = mean.to(torch.float32)
        if G != C:
            rstd = rstd.repeat_interleave(C // G, dim=1)
            mean = mean.repeat_interleave(C // G, dim=1)
        scale = self.weight[None, :] * rstd                   # (B, C)
        shift = self.bias[None, :] - mean * scale             # (B, C)
        return torch.relu_(torch.addcmul(shift[:, :, None], h.float(), scale[:, :, None]))


def _norm(cfg: Wav2VecConfig, channels: int) -> MaskedGroupNorm:
    return MaskedGroupNorm(1 if cfg.norm == "group" else channels, channels)


# ----------------------------------------------------------------------------------------------
# layers

class EncoderLayer(nn.Module):
    """Conv1d(C_in, C, k, stride s, no bias, valid) -> MaskedGroupNorm -> ReLU."""

    def __init__(self, cfg: Wav2VecConfig, in_dim: int, dim: int, kernel: int, stride: int):
        super().__init__()
        self.conv = nn.Conv1d(in_dim, dim, kernel, stride=stride, bias=False)
        self.norm = _norm(cfg, dim)
        self.kernel_size = kernel
        self.stride = stride

    def pre_norm(self, x: Tensor) -> Tensor:
        return self.conv(x)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, C_in, T) -> (B, C, T'); ``lengths`` are the OUTPUT frame lengths (B,) or None."""
        return self.norm(self.conv(x), lengths)


class ContextLayer(nn.Module):
    """Replication left pad (k - 1 copies of frame 0) -> Conv1d with bias -> dropout -> GroupNorm -> ReLU.

    Causal: output frame t depends on input frames <= t only, so right padding never leaks in.
    """

    def __init__(self, cfg: Wav2VecConfig, in_dim: int, dim: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv1d(in_dim, dim, kernel, bias=True)
        self.dropout = nn.Dropout(cfg.dropout)
        self.norm = _norm(cfg, dim)
        self.kernel_size = kernel
        self.left_pad = kernel - 1

    def pad(self, x: Tensor) -> Tensor:
        """(B, C, T) -> (B, C, k - 1 + T), the first frame repeated on the left (fairseq's
        ReplicationPad1d((k - 1, 0)))."""
        if self.left_pad == 0:
            return x
        return torch.cat([x[:, :, :1].expand(-1, -1, self.left_pad), x], dim=2)

    def pre_norm(self, x: Tensor, left_context: Tensor | None = None) -> Tensor:
        """Conv (+ dropout) before the norm: (B, C_in, T) -> (B, C, T).

        ``left_context`` (B, C_in, k - 1): the input frames just before ``x`` when ``x`` is a later
        chunk of an utterance; None (the utterance start) repeats the first frame instead.
        """
        if left_context is None:
            x = self.pad(x)
        elif self.left_pad:
            if left_context.shape[-1] != self.left_pad:
                raise ValueError(f"left_context must have {self.left_pad} frames, got "
                                 f"{left_context.shape[-1]}")
            x = torch.cat([left_context, x], dim=2)
        return self.dropout(self.conv(x))

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.norm(self.pre_norm(x), lengths)


class Encoder(nn.Module):
    """f: (B, T) samples at 16 kHz -> z (B, C, T') frames at 100 Hz."""

    def __init__(self, cfg: Wav2VecConfig):
        super().__init__()
        self.conv_layers = list(cfg.conv_feature_layers)
        layers, in_dim = [], 1
        for dim, k, s in cfg.conv_feature_layers:
            layers.append(EncoderLayer(cfg, in_dim, dim, k, s))
            in_dim = dim
        self.layers = nn.ModuleList(layers)
        self.log_compression = cfg.log_compression
        self.dim = in_dim

    def forward(self, wave: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """wave (B, T) samples, lengths (B,) samples or None -> (z (B, C, T'), frame lengths or None)."""
        x = wave.unsqueeze(1)
        for layer in self.layers:
            if lengths is not None:
                lengths = frame_lengths(lengths, [(0, layer.kernel_size, layer.stride)])
            x = layer(x, lengths)
        if self.log_compression:
            # After the ReLU x >= 0, so fairseq's log(|x| + 1) is log1p(x) (more accurate, one op).
            x = torch.log1p_(x) if not torch.is_grad_enabled() else torch.log1p(x)
        return x, lengths


class ContextNetwork(nn.Module):
    """g: z (B, C_z, T') -> c (B, C, T'), causal, same frame rate."""

    def __init__(self, cfg: Wav2VecConfig, in_dim: int):
        super().__init__()
        layers, projections = [], []
        for dim, k, _ in cfg.conv_aggregator_layers:
            projections.append(nn.Conv1d(in_dim, dim, 1, bias=False)
                               if cfg.skip_connections_agg and in_dim != dim else None)
            layers.append(ContextLayer(cfg, in_dim, dim, k))
            in_dim = dim
        self.layers = nn.ModuleList(layers)
        self.residual_proj = nn.ModuleList([p if p is not None else nn.Identity() for p in projections])
        self._has_proj = [p is not None for p in projections]
        self.skip = cfg.skip_connections_agg
        self.residual_scale = math.sqrt(cfg.residual_scale)
        self.dim = in_dim

    def layer_step(self, i: int, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Context layer ``i`` (0-based) including its residual: (B, C_in, T') -> (B, C, T')."""
        y = self.layers[i](x, lengths)
        if self.skip:
            return self.residual(i, x, y)
        return y

    def residual(self, i: int, x: Tensor, y: Tensor) -> Tensor:
        """(y + x) * sqrt(residual_scale), x projected first when the width changes.

        Without autograd (inference) the sum is written into ``y``'s memory and ``y`` returned.
        """
        res = self.residual_proj[i](x) if self._has_proj[i] else x
        if not torch.is_grad_enabled():
            # Inference: reuse y's memory (a fresh activation-sized tensor costs page faults).
            return y.add_(res).mul_(self.residual_scale)
        return (y + res) * self.residual_scale

    def forward(self, z: Tensor, lengths: Tensor | None = None,
                return_layers: bool = False) -> tuple[Tensor, list[Tensor]]:
        x = z
        outputs: list[Tensor] = []
        for i in range(len(self.layers)):
            x = self.layer_step(i, x, lengths)
            if return_layers:
                outputs.append(x)
        return x, outputs


@dataclass
class Wav2VecOutput:
    """z, c: (B, C, T') frames at 100 Hz; lengths: (B,) valid frames (None: all T' valid);
    layers: outputs of context layers 1..L after their residual (when asked for)."""

    z: Tensor
    c: Tensor
    lengths: Tensor | None
    layers: list[Tensor] = dataclasses.field(default_factory=list)


class Wav2VecModel(nn.Module):
    """The whole wav2vec 1.0 model: encoder, context network, step projection (see module doc)."""

    def __init__(self, cfg: Wav2VecConfig):
        super().__init__()
        cfg.validate()
        # Process-wide, CPU only: denormals from collapsed activations doubled the CPU step time.
        torch.set_flush_denormal(True)
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.context = ContextNetwork(cfg, self.encoder.dim)
        K = cfg.prediction_steps
        self.step_proj = nn.ConvTranspose2d(self.context.dim, self.encoder.dim, (1, K))
        self.dropout_features = nn.Dropout(cfg.dropout_features)
        self.dropout_agg = nn.Dropout(cfg.dropout_agg)
        self.dropout_pred = nn.Dropout(cfg.dropout)
        self.offset = cfg.resolved_offset
        self.prediction_steps = K

    @property
    def receptive_field(self) -> int:
        return receptive_field(self.cfg.conv_feature_layers)[0]

    def num_frames(self, num_samples: int) -> int:
        return num_frames(num_samples, self.cfg.conv_feature_layers)

    def forward(self, wave: Tensor, lengths: Tensor | None = None,
                return_layers: bool = False, padded: str = "auto") -> Wav2VecOutput:
        """wave (B, T) float samples at 16 kHz in [-1, 1]; lengths (B,) valid samples or None.

        Returns z (the targets, undropped) and c (after dropout_features / dropout_agg in training
        mode), both (B, C, T'), and the frame lengths.  With lengths, each utterance's valid frames
        equal what it gives alone (GroupNorm over its own frames); frames past an utterance's
        length are zero.  How a padded batch is computed (``padded``):

        * "masked": the whole batch at once, every GroupNorm masked to each utterance's frames
          (what a GPU wants: one kernel per layer for the batch);
        * "loop": each utterance alone on its unpadded samples, then padded again (bit-identical to
          one at a time; on CPU as fast as it, because conv kernels gain nothing from a batch
          there while masking and padding cost ~25%);
        * "auto": "loop" on CPU without autograd, else "masked".
        """
        if wave.dim() != 2:
            raise ValueError(f"wave must be (B, T), got {tuple(wave.shape)}")
        if padded not in ("auto", "masked", "loop"):
            raise ValueError(f"padded must be auto, masked or loop, got {padded!r}")
        shortest = wave.shape[-1]
        if lengths is not None:
            lengths = lengths.to(device=wave.device, dtype=torch.int64)
            shortest = min(shortest, int(lengths.min())) if lengths.numel() else shortest
        if shortest < self.receptive_field:
            raise W2vtkError(f"audio of {shortest} samples is shorter than the model's "
                             f"receptive field ({self.receptive_field} samples)")
        if lengths is not None and bool((lengths == wave.shape[-1]).all()):
            # Nothing padded: the unmasked fast path, frame lengths computed on the side.
            out = self._forward(wave, None, return_layers)
            out.lengths = frame_lengths(lengths, self.cfg.conv_feature_layers)
            return out
        if lengths is None:
            return self._forward(wave, None, return_layers)
        if padded == "auto":
            padded = "loop" if not wave.is_cuda and not torch.is_grad_enabled() else "masked"
        if padded == "masked":
            out = self._forward(wave, lengths, return_layers)
            return self._zero_padding(out)
        flen = frame_lengths(lengths, self.cfg.conv_feature_layers)
        T = num_frames(wave.shape[-1], self.cfg.conv_feature_layers)
        parts = [self._forward(wave[b:b + 1, :n], None, return_layers)
                 for b, n in enumerate(lengths.tolist())]

        def stack(tensors: list[Tensor]) -> Tensor:
            return torch.cat([F.pad(t, (0, T - t.shape[-1])) for t in tensors], dim=0)

        layers = [stack([p.layers[i] for p in parts]) for i in range(len(parts[0].layers))]
        return Wav2VecOutput(z=stack([p.z for p in parts]), c=stack([p.c for p in parts]),
                             lengths=flen, layers=layers)

    def _forward(self, wave: Tensor, lengths: Tensor | None, return_layers: bool) -> Wav2VecOutput:
        z, flen = self.encoder(wave, lengths)
        c, layers = self.context(self.dropout_features(z), flen, return_layers)
        return Wav2VecOutput(z=z, c=self.dropout_agg(c), lengths=flen, layers=layers)

    @staticmethod
    def _zero_padding(out: Wav2VecOutput) -> Wav2VecOutput:
        T = out.z.shape[-1]
        keep = (torch.arange(T, device=out.z.device)[None, :] < out.lengths[:, None])[:, None, :]
        out.z = out.z * keep
        out.c = out.c * keep
        out.layers = [x * keep for x in out.layers]
        return out

    def project_steps(self, c: Tensor) -> Tensor:
        """h_k(c) for k = 1..K: c (B, C, T') -> (B, T', K, C_z), step k at index k - 1.

        Same parameters and numbers as fairseq's ConvTranspose2d(C, C_z, (1, K)) on c[..., None]
        (weight (C, C_z, 1, K), one bias shared by all steps), computed as one matmul.
        """
        w = self.step_proj.weight                       # (C, C_z, 1, K)
        C, Cz, _, K = w.shape
        wm = w.squeeze(2).transpose(1, 2).reshape(C, K * Cz)
        out = torch.matmul(c.transpose(1, 2), wm)       # (B, T', K * C_z)
        out = out.view(c.shape[0], c.shape[2], K, Cz) + self.step_proj.bias
        return self.dropout_pred(out)

    def extract(self, wave: Tensor, lengths: Tensor | None = None,
                layer: str = "c") -> tuple[Tensor, Tensor]:
        """Features for ``--layer``: "z", "c" or "context-N" (N = 1..number of context layers,
        the output of layer N after its residual).  Returns (B, T', C) and frame lengths (B,)."""
        which = parse_layer_name(layer, len(self.context.layers))
        out = self.forward(wave, lengths, return_layers=isinstance(which, int))
        if which == "z":
            feats = out.z
        elif which == "c":
            feats = out.c
        else:
            feats = out.layers[which - 1]
        flen = out.lengths if out.lengths is not None else torch.full(
            (wave.shape[0],), feats.shape[-1], dtype=torch.int64, device=wave.device)
        return feats.transpose(1, 2), flen


def parse_layer_name(layer: str, num_context_layers: int) -> str | int:
    """"z" | "c" | "context-N" -> "z", "c" or N (1-based); W2vtkError otherwise."""
    if layer in ("z", "c"):
        return layer
    if layer.startswith("context-"):
        tail = layer[len("context-"):]
        if tail.isascii() and tail.isdigit() and len(tail) <= 6 and 1 <= int(tail) <= num_context_layers:
            return int(tail)
    raise W2vtkError(f"--layer {layer!r}: expected z, c or context-N with N in 1..{num_context_layers}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
