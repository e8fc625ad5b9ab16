"""Padded extraction batches: longest first, bounded padding and size, every utterance exactly once."""

from __future__ import annotations

import random

from w2vtk.features.batches import length_batches


def test_batches_cover_every_item_once_longest_first_within_budget():
    rng = random.Random(0)
    lengths = {i: rng.randint(8000, 240000) for i in range(200)}
    budget = 1_600_000
    batches = length_batches(lengths, budget)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == sorted(lengths)
    assert [lengths[i] for i in flat] == sorted(lengths.values(), reverse=True)
    for b in batches:
        padded = len(b) * lengths[b[0]]
        assert padded <= budget or len(b) == 1
        if len(b) > 1:
            assert sum(lengths[i] for i in b) >= 0.95 * padded


def test_an_item_longer_than_the_budget_is_a_batch_of_its_own():
    assert length_batches({0: 500, 1: 100, 2: 90}, 300) == [[0], [1, 2]]


def test_padding_limit_splits_unequal_neighbours():
    # 100 and 50 together would pad 50 of 200 samples (25% > 5%).
    assert length_batches({0: 100, 1: 50}, 10_000) == [[0], [1]]
    assert length_batches({0: 100, 1: 99}, 10_000) == [[0, 1]]
