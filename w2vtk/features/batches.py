"""How extraction groups utterances into padded batches (no torch: the GPU benchmark and tests use it too)."""

from __future__ import annotations


def length_batches(lengths: dict[int, int], batch_samples: int, max_padding: float = 0.05) -> list[list[int]]:
    """Group item indices sorted by length (longest first) into batches of at most ``batch_samples``
    padded samples (n * longest) that waste at most ``max_padding`` of them on padding (padded frames
    are computed and thrown away); an item longer than the budget forms a batch of its own."""
    order = sorted(lengths, key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    cur: list[int] = []
    real = 0
    for i in order:
        if cur:
            longest = lengths[cur[0]]
            padded = (len(cur) + 1) * longest
            if padded > batch_samples or (real + lengths[i]) < (1.0 - max_padding) * padded:
                batches.append(cur)
                cur, real = [], 0
        cur.append(i)
        real += lengths[i]
    if cur:
        batches.append(cur)
    return batches
