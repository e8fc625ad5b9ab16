"""Frame arithmetic of wav2vec's encoder, as pure functions: samples -> frames, receptive field,
fairseq's automatic prediction offset. (B,) tensors in :func:`frame_lengths`, plain ints elsewhere."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from w2vtk.models.layer_spec import BASE_FEATURE_LAYERS, LayerSpec


def conv_output_length(length: int, kernel: int, stride: int) -> int:
    """Frames after one valid conv: floor((L - k) / s) + 1, or 0 when L < k."""
    return 0 if length < kernel else (length - kernel) // stride + 1


def num_frames(num_samples: int, conv_feature_layers: Sequence[LayerSpec] = BASE_FEATURE_LAYERS) -> int:
    """Number of z / c frames for ``num_samples`` samples (16000 -> 98, 150000 -> 935, < 465 -> 0)."""
    n = int(num_samples)
    for _, k, s in conv_feature_layers:
        n = conv_output_length(n, k, s)
    return n


def receptive_field(conv_feature_layers: Sequence[LayerSpec] = BASE_FEATURE_LAYERS) -> tuple[int, int]:
    """(receptive field, stride) of one encoder frame in samples: (465, 160) for base and large."""
    size, stride = 1, 1
    for _, k, s in conv_feature_layers:
        size += (k - 1) * stride
        stride *= s
    return size, stride


def auto_offset(conv_feature_layers: Sequence[LayerSpec] = BASE_FEATURE_LAYERS) -> int:
    """fairseq's ``offset='auto'``: ceil(receptive field / stride) (3 for base and large)."""
    size, stride = receptive_field(conv_feature_layers)
    return math.ceil(size / stride)


def frame_lengths(lengths: Tensor, conv_layers: Sequence[LayerSpec]) -> Tensor:
    """Tensor version of :func:`num_frames`: (B,) samples -> (B,) frames (int64)."""
    n = lengths.to(torch.int64)
    for _, k, s in conv_layers:
        n = torch.where(n >= k, torch.div(n - k, s, rounding_mode="floor") + 1, torch.zeros_like(n))
    return n
