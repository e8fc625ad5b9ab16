"""ASG's best path, torch-free (decoding workers never import torch): the Viterbi path of one
utterance's frame scores under the transitions, and the transitions in flashlight-text's layout."""

from __future__ import annotations

import numpy as np


def viterbi(emissions, transitions, length: int | None = None) -> list[int]:
    """The best frame-level path (one token per frame) of one utterance: ``emissions`` (T, N) frame
    scores, ``transitions`` (N, N) ``[prev, next]`` (array-likes), ``length`` valid frames (default
    all). ASG's greedy decoding; ties go to the lowest token id."""
    x = np.asarray(emissions, dtype=np.float64)
    tr = np.asarray(transitions, dtype=np.float64)
    t_max = x.shape[0] if length is None else int(length)
    if t_max <= 0:
        return []
    score = x[0].copy()
    back = np.empty((max(0, t_max - 1), x.shape[1]), dtype=np.int64)
    for t in range(1, t_max):
        cand = score[:, None] + tr  # (prev, next)
        back[t - 1] = cand.argmax(axis=0)
        score = cand.max(axis=0) + x[t]
    path = [int(score.argmax())]
    for t in range(t_max - 2, -1, -1):
        path.append(int(back[t, path[-1]]))
    return path[::-1]


def decoder_transitions(transitions) -> list[float]:
    """flashlight-text's ``transitions`` argument (``[next * N + prev]``) from w2vtk's ``[prev, next]``."""
    return [float(v) for v in np.asarray(transitions, dtype=np.float64).T.reshape(-1)]
