"""Pre-training data: utterance lists, length-bucketed global batches, seeded crops, worker loading.

Batch semantics (fairseq's ``--max-tokens``, ``--update-freq``, ``--max-sample-size``):

* ``max_tokens`` is a budget in *samples per GPU per forward pass* (1.5M in the paper, ~94 s of
  16 kHz audio).  One optimiser update consumes ``world_size * update_freq`` such micro-batches
  ("slots"): the *global batch*.
* Utterances are sorted by length and cut greedily into global batches, starting from the
  shortest: the crop length of a global batch is ``min(shortest utterance in it, max_sample_size)``
  and it holds up to ``slots * (max_tokens // crop)`` utterances, dealt round-robin to the slots.
  Every utterance is cropped to that length at a random offset, so no padding is ever needed.
* The plan depends on ``world_size * update_freq`` only, never on how that product is split, and
  every crop offset comes from a generator seeded by ``(seed, step, utterance index)``: one process
  with ``update_freq=2`` sees exactly the same data as two processes with ``update_freq=1``.
* The order of global batches is reshuffled every epoch from ``(seed, epoch)``; the sampler
  position is just the number of global batches consumed, which makes resuming exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from w2vtk.errors import W2vtkError
from w2vtk.models.frames import num_frames, receptive_field
from w2vtk.objectives import make_generator, sample_negatives
from w2vtk.sources import AudioSource, discover_audio, with_durations
from w2vtk.training import derive_seed

# The declared length (utt2dur, manifest) may exceed the decoded audio by rounding; up to this many
# samples are tolerated (the crop is shifted left, then zero-padded as a last resort).
LENGTH_TOLERANCE = 400


def read_utterances(source: str | Path) -> list[AudioSource]:
    """Utterances of a Kaldi data dir, a ``wav.scp`` file, a fairseq ``.tsv`` manifest or a
    directory of audio files (recursive), with their lengths (:func:`w2vtk.sources.discover_audio`).

    Lengths come from ``utt2dur`` / ``segments`` / the manifest / the audio headers; pipes without
    a ``utt2dur`` are run once to measure them.
    """
    sources, _ = discover_audio(source)
    if not sources:
        raise W2vtkError(f"{source}: no utterances")
    return with_durations(sources)


# --------------------------------------------------------------------------------------------------
# Batch plan


@dataclass(frozen=True)
class GlobalBatch:
    """Utterances (dataset indices, shortest first) of one update and their common crop length."""

    crop: int
    utts: tuple[int, ...]

    def slot(self, slot: int, num_slots: int) -> tuple[int, ...]:
        """Round-robin share of slot ``slot`` (may be empty for the last, partial batch)."""
        return self.utts[slot::num_slots]


def plan_batches(lengths: Sequence[int], *, max_tokens: int, max_sample_size: int, num_slots: int,
                 where: str = "data") -> list[GlobalBatch]:
    """Cut utterances (``lengths`` in samples) into global batches; see the module docstring.

    Raises W2vtkError when ``max_tokens`` cannot hold a single crop.
    """
    if not lengths:
        return []
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    largest_crop = min(max_sample_size, lengths[order[-1]])
    if max_tokens < largest_crop:
        raise W2vtkError(
            f"{where}: max_tokens={max_tokens} samples per GPU is smaller than one crop of {largest_crop} "
            f"samples (min(max_sample_size={max_sample_size}, longest utterance)); raise max_tokens or "
            "lower max_sample_size")
    batches = []
    i = 0
    while i < len(order):
        crop = min(max_sample_size, lengths[order[i]])
        capacity = num_slots * (max_tokens // crop)
        members = tuple(order[i:i + capacity])
        batches.append(GlobalBatch(crop, members))
        i += capacity
    return batches


def epoch_order(num_batches: int, seed: int, epoch: int) -> list[int]:
    """Order of the global batches in ``epoch`` (a seeded permutation)."""
    import torch

    gen = torch.Generator()
    gen.manual_seed(derive_seed(seed, "epoch", epoch))
    return torch.randperm(num_batches, generator=gen).tolist()


@dataclass(frozen=True)
class MicroBatch:
    """What one rank loads for one forward pass.

    ``step``: global batch counter (the sampler position; seeds the crops and negatives);
    ``crop``: samples per utterance; ``utts``: dataset indices; ``dummy``: an empty slot of a
    partial batch, filled with one real utterance so every DDP rank runs forward/backward, whose
    loss is multiplied by 0.
    """

    step: int
    slot: int
    crop: int
    utts: tuple[int, ...]
    dummy: bool = False
    seed_key: str = "train"


class TrainSampler:
    """Infinite stream of this rank's :class:`MicroBatch` es from ``start_step`` on.

    Rank ``r`` handles slots ``r * update_freq + m`` (m = 0 .. update_freq-1) of every global batch.
    """

    def __init__(self, batches: list[GlobalBatch], *, seed: int, rank: int, world_size: int,
                 update_freq: int, start_step: int = 0):
        if not batches:
            raise W2vtkError("no training batches")
        self.batches = batches
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.update_freq = update_freq
        self.start_step = start_step

    @property
    def num_slots(self) -> int:
        return self.world_size * self.update_freq

    def global_batch(self, step: int) -> GlobalBatch:
        epoch, pos = divmod(step, len(self.batches))
        return self.batches[epoch_order(len(self.batches), self.seed, epoch)[pos]]

    def __iter__(self) -> Iterator[MicroBatch]:
        step = self.start_step
        cached_epoch, order = -1, []
        while True:
            epoch, pos = divmod(step, len(self.batches))
            if epoch != cached_epoch:
                order, cached_epoch = epoch_order(len(self.batches), self.seed, epoch), epoch
            gb = self.batches[order[pos]]
            for m in range(self.update_freq):
                slot = self.rank * self.update_freq + m
                utts = gb.slot(slot, self.num_slots)
                if utts:
                    yield MicroBatch(step, slot, gb.crop, utts)
                else:
                    yield MicroBatch(step, slot, gb.crop, gb.utts[:1], dummy=True)
            step += 1


def valid_microbatches(batches: list[GlobalBatch], rank: int, world_size: int) -> list[MicroBatch]:
    """This rank's share of the validation batches (slots = world_size, fixed crops)."""
    out = []
    for i, gb in enumerate(batches):
        utts = gb.slot(rank, world_size)
        if utts:
            out.append(MicroBatch(i, rank, gb.crop, utts, seed_key="valid"))
        else:
            out.append(MicroBatch(i, rank, gb.crop, gb.utts[:1], dummy=True, seed_key="valid"))
    return out


# --------------------------------------------------------------------------------------------------
# Loading (runs in DataLoader worker processes)


def crop_offset(num_samples: int, crop: int, seed: int, seed_key: str, step: int, utt_index: int) -> int:
    """Seeded start of the crop: uniform in [0, num_samples - crop]."""
    import torch

    room = num_samples - crop
    if room <= 0:
        return 0
    gen = torch.Generator()
    gen.manual_seed(derive_seed(seed, "crop", seed_key, step, utt_index))
    return int(torch.randint(0, room + 1, (1,), generator=gen))


class CropDataset:
    """Map-style dataset whose keys are :class:`MicroBatch` es (DataLoader with ``batch_size=None``).

    Returns a dict: ``wave`` (n, crop) float32 samples at 16 kHz, ``utts`` indices, ``step``,
    ``dummy``, ``seed_key``; or ``{"error": message}`` for unreadable audio, so the main process
    raises one clean W2vtkError instead of a worker traceback.
    """

    def __init__(self, utterances: list[AudioSource], seed: int, num_negatives: int = 0,
                 conv_feature_layers: Sequence[tuple[int, int, int]] = ()):
        self.utterances = utterances
        self.seed = seed
        self.num_negatives = num_negatives
        self.conv_feature_layers = list(conv_feature_layers)

    def __len__(self) -> int:  # only for DataLoader's bookkeeping; keys come from the sampler
        return len(self.utterances)

    def load(self, mb: MicroBatch):
        import numpy as np
        import torch

        rows = np.empty((len(mb.utts), mb.crop), dtype=np.float32)
        for row, idx in enumerate(mb.utts):
            utt = self.utterances[idx]
            audio = utt.load()
            declared = utt.num_samples
            if len(audio) + LENGTH_TOLERANCE < mb.crop:
                raise W2vtkError(f"{utt.utt_id}: decoded {len(audio)} samples, fewer than the crop of "
                                 f"{mb.crop} planned from its declared length {declared} (fix utt2dur / manifest)")
            offset = crop_offset(max(declared, mb.crop), mb.crop, self.seed, mb.seed_key, mb.step, idx)
            offset = max(0, min(offset, len(audio) - mb.crop))
            piece = audio[offset:offset + mb.crop]
            rows[row, :len(piece)] = piece
            rows[row, len(piece):] = 0.0
        out = {"wave": torch.from_numpy(rows), "utts": torch.tensor(mb.utts, dtype=torch.long),
               "step": mb.step, "slot": mb.slot, "dummy": mb.dummy, "seed_key": mb.seed_key}
        if self.num_negatives:
            out["neg_idx"] = self.negatives(mb)
        return out

    def negatives(self, mb: MicroBatch):
        """(n, N, T') negative frame indices for the micro-batch, one generator per utterance keyed
        by (seed, step, utterance index) (validation: step -1 - batch index), never the target."""
        frames = num_frames(mb.crop, self.conv_feature_layers)
        update = mb.step if mb.seed_key == "train" else -1 - mb.step
        gens = [make_generator(self.seed, update, idx) for idx in mb.utts]
        return sample_negatives(gens, [frames] * len(mb.utts), self.num_negatives)

    def __getitem__(self, mb: MicroBatch):
        try:
            return self.load(mb)
        except W2vtkError as err:
            return {"error": str(err)}


def make_loader(dataset: CropDataset, sampler, num_workers: int):
    """A DataLoader over micro-batch keys: decoding and cropping in ``num_workers`` processes."""
    import torch
    from torch.utils.data import DataLoader

    # Its own generator: otherwise creating the iterator draws from the global torch RNG, and a
    # resumed run (which creates it after restoring the RNG) would drift from an uninterrupted one.
    gen = torch.Generator()
    gen.manual_seed(dataset.seed)
    return DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=num_workers,
                      collate_fn=_identity, pin_memory=False, generator=gen,
                      prefetch_factor=4 if num_workers > 0 else None,
                      persistent_workers=False)


def _identity(x):
    return x


def minimum_samples(conv_feature_layers: Sequence[tuple[int, int, int]], offset: int,
                    prediction_steps: int) -> int:
    """Shortest utterance (samples) that gives every step k = 1..K at least one positive
    (``offset + K`` frames) and a negative (2 frames): 2705 samples for base and large."""
    need = max(2, offset + prediction_steps)
    size, stride = receptive_field(conv_feature_layers)
    n = size + (need - 1) * stride
    while num_frames(n, conv_feature_layers) < need:
        n += 1
    while n > 1 and num_frames(n - 1, conv_feature_layers) >= need:
        n -= 1
    return n
