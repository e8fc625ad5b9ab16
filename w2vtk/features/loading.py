"""Reading the audio of an extraction shard: utterances decoded in DataLoader worker processes, in order."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from w2vtk.errors import W2vtkError


class _AudioDataset:
    """Map-style dataset decoding one utterance per item in a DataLoader worker.

    Returns (index, samples or None, error message or None): a W2vtkError is passed back as text so
    the main process raises it as one line (DataLoader would wrap it in a worker traceback).
    """

    def __init__(self, sources: Sequence):
        self.sources = sources

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int):
        try:
            return i, self.sources[i].load(), None
        except W2vtkError as err:
            return i, None, str(err)


def _worker_init(_worker_id: int) -> None:
    import torch

    # Decoding is single-threaded work; leave the cores to the model.
    torch.set_num_threads(1)


def iter_audio(sources: Sequence, indices: list[int], num_workers: int):
    """Yield (index, samples) in ``indices`` order, decoding in ``num_workers`` processes."""
    import torch

    ds = _AudioDataset(sources)
    if num_workers <= 0 or len(indices) <= 1:
        for i in indices:
            _, wave, err = ds[i]
            if err is not None:
                raise W2vtkError(err)
            yield i, wave
        return
    loader = torch.utils.data.DataLoader(ds, batch_size=None, sampler=indices,
                                         num_workers=min(num_workers, len(indices)),
                                         worker_init_fn=_worker_init, prefetch_factor=4)
    for i, wave, err in loader:
        if err is not None:
            raise W2vtkError(err)
        yield int(i), np.asarray(wave, dtype=np.float32)
