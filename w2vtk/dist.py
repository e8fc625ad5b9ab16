"""torch.distributed under torchrun: environment, rank-0 helpers, sharding.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; without them w2vtk runs as a single process.
NCCL is used when CUDA is available, gloo otherwise (CPU, and the tests' 2-process runs).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator, Mapping


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_info() -> DistInfo:
    """Rank information from torchrun's environment variables (single process when absent)."""
    return DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
    )


def init(device: str = "auto") -> tuple[DistInfo, "torch.device"]:  # noqa: F821
    """Initialise the process group when launched by torchrun; pick this rank's device.

    ``device``: "auto" (CUDA when available), "cpu" or "cuda".  Returns (info, torch.device).
    """
    import torch
    import torch.distributed as tdist

    info = env_info()
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    dev = torch.device("cuda", info.local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if info.distributed and not tdist.is_initialized():
        tdist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return info, dev


def is_main() -> bool:
    return env_info().is_main


def barrier() -> None:
    import torch.distributed as tdist

    if tdist.is_available() and tdist.is_initialized():
        tdist.barrier()


def all_reduce_sum(tensor):
    """In-place sum over ranks (no-op in a single process); returns the tensor."""
    import torch.distributed as tdist

    if tdist.is_available() and tdist.is_initialized():
        tdist.all_reduce(tensor, op=tdist.ReduceOp.SUM)
    return tensor


def reduce_to_cpu(tensor, device):
    """Sum a small CPU tensor over ranks into a new CPU tensor (NCCL only reduces CUDA tensors)."""
    if device.type == "cuda":
        return all_reduce_sum(tensor.to(device)).cpu()
    return all_reduce_sum(tensor.clone())


def cleanup() -> None:
    import torch.distributed as tdist

    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


@contextlib.contextmanager
def owned_group() -> Iterator[None]:
    """Destroy, on leaving the block, a process group that :func:`init` created inside it (one the
    caller already had is left alone).  Left to the interpreter's exit, a gloo rank can abort with
    "terminate called without an active exception" (SIGABRT) after its work is done."""
    import torch.distributed as tdist

    own = not (tdist.is_available() and tdist.is_initialized())
    try:
        yield
    finally:
        if own:
            cleanup()


def balanced_shards(items: list, weights: Mapping, n: int) -> list[list]:
    """Heaviest-first greedy split of ``items`` into up to ``n`` shards of similar total weight
    (``weights[item]``, 0 when absent; e.g. utterances by frames), each item to the lightest shard
    so far; empty shards dropped."""
    n = max(1, min(n, len(items)))
    shards: list[list] = [[] for _ in range(n)]
    load = [0] * n
    for item in sorted(items, key=lambda item: -weights.get(item, 0)):
        k = load.index(min(load))
        shards[k].append(item)
        load[k] += weights.get(item, 0)
    return [s for s in shards if s]


def shard_indices(n_items: int, num_shards: int, shard: int) -> list[int]:
    """Items of shard ``shard`` when ``n_items`` sorted items are split into ``num_shards`` contiguous shards."""
    start = n_items * shard // num_shards
    stop = n_items * (shard + 1) // num_shards
    return list(range(start, stop))
