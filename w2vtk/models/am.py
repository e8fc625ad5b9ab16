"""Acoustic models of the wav2vec paper: fully convolutional, trained with CTC on frame features.

Input: features (B, T, C) frames at 100 Hz (C = 512 for wav2vec c, 80 for log-mel), already
normalised (see :mod:`w2vtk.am.data`). Output: logits (B, T', V) at 100 / ``stride`` Hz, V tokens
with the CTC blank at index 0; ``output_lengths`` gives each utterance's T'.

Two block types, both with "same" padding (odd kernels, ``k // 2`` zeros on each side, so a
stride-1 layer keeps the length and a stride-s layer gives ceil(T / s) frames):

* ``conv`` (the paper's TIMIT model, wav2letter ``recipes/timit/configs/conv_relu``):
  Conv1d -> PReLU (or ReLU) -> dropout; then a linear projection to the tokens.
* ``glu`` (the paper's WSJ model, wav2letter's gated ConvNet): weight-normalised Conv1d with
  2 x channels -> GLU over the channels -> dropout; the projection is a weight-normalised 1x1 conv.

Padded frames are zeroed after every block, so an utterance gets exactly the same outputs alone
or padded inside a batch (the zero "same" padding of a lone utterance is what its neighbours in a
batch see too).

WSJ channel schedule (``conf/am/wsj.yaml``): the paper uses "the wav2letter++ setup of Collobert
et al. (2019)", a 17-layer gated ConvNet; its layer list is the one of wav2letter's lexicon-free WSJ
recipe (``recipes/models/lexicon_free/wsj/am.arch``), which has exactly the kernels named in the
paper's description (13, 3, 3, 5, 5, 5, 5, 7 with stride 2, 7, 7, 7, 7, 9, 9, 9, then two 1x1).
Conv output channels (before GLU halves them) grow 200, 200, 200, 250, 250, 300, 350, 400, 450,
500, 500, 500, 600, 600, 750, 1000, so the GLU outputs are 100 ... 500 and the last 1x1 maps 500 to
the tokens. We take that schedule unchanged because it is the only published one with these
kernels; the older ``recipes/wsj/configs/conv_glu`` model has kernels 13..21 and no stride.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from w2vtk.errors import W2vtkError


@dataclass
class AMConfig:
    """Architecture of a conv acoustic model (the ``model:`` section of ``conf/am/*.yaml``).

    ``layers``: list of [channels, kernel, stride]; ``channels`` is a block's OUTPUT width (after
    GLU for ``glu`` blocks, whose conv produces 2 x channels, as wav2letter's ``WN 3 C in 2c k s``
    followed by ``GLU 2``). Kernels must be odd ("same" padding). ``dropout`` follows every
    block (wav2letter ``DO``). ``activation`` only applies to ``conv`` blocks. ``weight_norm``
    wraps every conv / the projection in weight normalisation over the output channels
    (wav2letter ``WN 3``). ``norm``: ``layer`` puts a LayerNorm over the channels of every frame
    between each conv and its activation (wav2letter's ``LN``; on small data it keeps a CTC model
    from sitting on the all-blank plateau, recipes/mini/STUDY.md); ``none`` (the default) has none.
    ``blank_bias``: initial bias of the blank's output (0: PyTorch's default initialisation, as every
    other token). A positive value starts the model near the blank-dominated output CTC converges
    to first (3 with 29 tokens: p(blank) about 0.4 instead of 1/29); with ``norm: layer`` some
    seeds otherwise settle into an alignment with almost no blanks that they never leave
    (recipes/mini/STUDY.md, session 7).
    ``criterion``: ``ctc`` or ``asg`` (:mod:`w2vtk.am.criterion`); an ASG model has a learned
    ``transitions`` (V, V) parameter, ``[prev, next]``, initialised to ``transdiag`` on the diagonal
    and 0 elsewhere (wav2letter's ``--transdiag``).
    """

    block: Literal["conv", "glu"] = "conv"
    layers: list[tuple[int, int, int]] = field(default_factory=lambda: [(256, 5, 1)] * 3)
    activation: Literal["prelu", "relu"] = "prelu"
    dropout: float = 0.1
    weight_norm: bool = False
    norm: Literal["none", "layer"] = "none"
    blank_bias: float = 0.0
    criterion: Literal["ctc", "asg"] = "ctc"
    transdiag: float = 0.0

    def validate(self) -> None:
        if not self.layers:
            raise W2vtkError("model.layers: at least one layer is needed")
        for i, (ch, k, s) in enumerate(self.layers):
            if ch < 1 or k < 1 or s < 1:
                raise W2vtkError(f"model.layers[{i}]: channels, kernel and stride must be >= 1, got {[ch, k, s]}")
            if k % 2 == 0:
                raise W2vtkError(f"model.layers[{i}]: kernel {k} must be odd for 'same' padding")
        if not 0.0 <= self.dropout < 1.0:
            raise W2vtkError(f"model.dropout: must be in [0, 1), got {self.dropout}")
        if self.norm not in ("none", "layer"):
            raise W2vtkError(f"model.norm: must be 'none' or 'layer', got '{self.norm}'")
        if self.criterion not in ("ctc", "asg"):
            raise W2vtkError(f"model.criterion: must be 'ctc' or 'asg', got '{self.criterion}'")
        if not math.isfinite(self.transdiag):
            raise W2vtkError(f"model.transdiag: must be a finite number, got {self.transdiag}")
        if not math.isfinite(self.blank_bias):
            raise W2vtkError(f"model.blank_bias: must be a finite number, got {self.blank_bias}")
        if self.blank_bias and self.criterion == "asg":
            raise W2vtkError("model.blank_bias: CTC's blank has no counterpart in ASG (set it to 0)")

    @property
    def stride(self) -> int:
        return math.prod(s for _, _, s in self.layers)


def output_length(num_frames: int, layers) -> int:
    """Frames out of the model for ``num_frames`` input frames: ceil(T / s) layer by layer."""
    t = int(num_frames)
    for _, k, s in layers:
        t = (t + 2 * (k // 2) - k) // s + 1 if t > 0 else 0
    return t


def _wn(module: nn.Module, enabled: bool) -> nn.Module:
    if not enabled:
        return module
    return nn.utils.parametrizations.weight_norm(module, name="weight", dim=0)


class _Block(nn.Module):
    def __init__(self, block: str, in_ch: int, out_ch: int, kernel: int, stride: int,
                 activation: str, dropout: float, weight_norm: bool, norm: str = "none"):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        conv_out = 2 * out_ch if block == "glu" else out_ch
        self.conv = _wn(nn.Conv1d(in_ch, conv_out, kernel, stride=stride, padding=kernel // 2), weight_norm)
        # Per frame, so padded frames stay independent of valid ones (they are zeroed after the block).
        self.norm = nn.LayerNorm(conv_out) if norm == "layer" else None
        if block == "glu":
            self.act = nn.GLU(dim=1)
        elif activation == "prelu":
            # wav2letter's PR: one slope shared by all channels, initialised at 0.25.
            self.act = nn.PReLU()
        else:
            self.act = nn.ReLU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, T) -> (B, C_out, T')."""
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        return self.drop(self.act(x))


class ConvAM(nn.Module):
    """Conv acoustic model: (B, T, input_dim) features -> (B, T', num_tokens) logits.

    ``input_dim``: feature dimension (512 for c, 80 for log-mel). ``num_tokens``: size of
    ``tokens.txt`` including the blank (index 0).
    """

    def __init__(self, cfg: AMConfig, input_dim: int, num_tokens: int):
        super().__init__()
        cfg.validate()
        self.cfg, self.input_dim, self.num_tokens = cfg, int(input_dim), int(num_tokens)
        blocks = []
        in_ch = self.input_dim
        for ch, k, s in cfg.layers:
            blocks.append(_Block(cfg.block, in_ch, ch, k, s, cfg.activation, cfg.dropout, cfg.weight_norm,
                                 cfg.norm))
            in_ch = ch
        self.blocks = nn.ModuleList(blocks)
        # A 1x1 conv and a linear layer are the same map; the conv form keeps weight norm's
        # per-output-channel grouping identical to wav2letter's "WN 3 C 500 NLABEL 1 1".
        self.proj = _wn(nn.Conv1d(in_ch, self.num_tokens, 1), cfg.weight_norm)
        if cfg.blank_bias:
            with torch.no_grad():
                self.proj.bias[0] = cfg.blank_bias
        # ASG's transition scores, [prev, next] (w2vtk.am.asg); CTC models have none, so their
        # state dicts are what they always were
        self.transitions = (nn.Parameter(torch.eye(self.num_tokens) * cfg.transdiag) if cfg.criterion == "asg"
                            else None)

    @property
    def stride(self) -> int:
        """Input frames per output frame (1 for TIMIT, 2 for WSJ)."""
        return self.cfg.stride

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """(B,) input frame counts -> (B,) output frame counts (ceil division per strided layer)."""
        out = lengths.clone().long()
        for _, k, s in self.cfg.layers:
            out = torch.div(out + 2 * (k // 2) - k, s, rounding_mode="floor") + 1
            out = out.clamp(min=0)
        return out

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``feats`` (B, T, C) normalised features, ``lengths`` (B,) valid frames (None: all T).

        Returns (logits (B, T', V), out_lengths (B,)). Frames of a batch beyond an utterance's
        length are zeroed in the input and after each block so padding never leaks into valid frames.
        """
        if feats.dim() != 3 or feats.shape[-1] != self.input_dim:
            raise W2vtkError(f"acoustic model expects features (B, T, {self.input_dim}), got {tuple(feats.shape)}")
        b, t, _ = feats.shape
        if lengths is None:
            lengths = torch.full((b,), t, dtype=torch.long, device=feats.device)
        lengths = lengths.to(feats.device).long()
        cur = lengths
        mask = torch.arange(t, device=feats.device)[None, :] < cur[:, None]
        x = (feats * mask[:, :, None].to(feats.dtype)).transpose(1, 2)
        for blk in self.blocks:
            x = blk(x)
            cur = torch.div(cur + 2 * (blk.kernel // 2) - blk.kernel, blk.stride, rounding_mode="floor") + 1
            mask = torch.arange(x.shape[-1], device=x.device)[None, :] < cur[:, None]
            x = x * mask[:, None, :].to(x.dtype)
        logits = self.proj(x).transpose(1, 2)
        return logits, cur


def build_am(cfg: AMConfig, input_dim: int, num_tokens: int) -> ConvAM:
    """Build the model described by ``cfg`` for ``input_dim``-dim features and ``num_tokens`` outputs."""
    if input_dim < 1:
        raise W2vtkError(f"feature dimension must be >= 1, got {input_dim}")
    if num_tokens < 2:
        raise W2vtkError(f"token set must hold the blank and at least one token, got {num_tokens}")
    return ConvAM(cfg, input_dim, num_tokens)


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
