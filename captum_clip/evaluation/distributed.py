"""One process or many: torch.distributed set-up, deterministic shards and gathering rows to rank 0.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is initialised from the environment torchrun sets,
with NCCL where the device is a GPU and gloo on the CPU. The dataset is cut into fixed batches of consecutive
images, and rank r takes batches r, r + W, r + 2W, ...: every batch holds the same images as in a one-process
run, so methods that look at the batch as a whole (Mutual Knowledge fits its concepts on it) and the per-image
rows are the same whatever the number of processes. A rank that raises does not leave the others waiting at the
gather for the backend's timeout (30 minutes): every rank leaves :func:`failing_together` raising.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence

import torch
import torch.distributed as dist

from ..errors import RankFailedError


@dataclass(frozen=True)
class Context:
    """Where this process runs: its rank, the world size and its device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _device(requested: str, local_rank: int, world_size: int = 1) -> torch.device:
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda":
        if device.index is not None and world_size > 1:
            # Every rank on one GPU: NCCL refuses it ("duplicate GPU"), and it would be no faster than one process.
            raise ValueError(
                f"--device {requested} names one GPU for all {world_size} processes; under torchrun pass --device "
                "cuda (or auto) and each process takes cuda:LOCAL_RANK. Choose the GPUs with CUDA_VISIBLE_DEVICES.")
        if not torch.cuda.is_available():
            raise ValueError(f"--device {requested} asked for CUDA, and torch sees no GPU; use --device cpu.")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


@contextmanager
def process_group(requested_device: str = "auto") -> Iterator[Context]:
    """The :class:`Context` of this process; under torchrun, a process group for the duration of the block."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(requested_device, local_rank, world_size)
    if world_size == 1:
        yield Context(0, 1, device)
        return
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield Context(dist.get_rank(), dist.get_world_size(), device)
    finally:
        if owned:
            dist.destroy_process_group()


@contextmanager
def failing_together(context: Context) -> Iterator[None]:
    """Run the block on every rank; if any rank raises, every rank raises when it reaches the block's end.

    Without this a rank that raised would leave the others waiting in the next collective until the backend's
    timeout (torchrun's agent kills them sooner, with no word of why; srun or ``mp.spawn`` do not). The rank that
    raised re-raises its own error (its traceback is the useful one); the others raise
    :class:`~captum_clip.errors.RankFailedError` naming it and its message.
    """
    error: Optional[Exception] = None
    try:
        yield
    except Exception as caught:  # noqa: BLE001 - re-raised below, after the other ranks have been told
        error = caught
    if context.distributed:
        said = f"{type(error).__name__}: {error}" if error is not None else None
        statuses: List[Optional[str]] = [None] * context.world_size
        dist.all_gather_object(statuses, said)
        failed = [(rank, message) for rank, message in enumerate(statuses) if message is not None]
        if failed and error is None:
            raise RankFailedError(
                "; ".join(f"rank {rank} of {context.world_size} failed with {message}" for rank, message in failed)
                + f". Rank {context.rank} stopped too; the failing rank printed its traceback above.")
    if error is not None:
        raise error


def batches(n_items: int, batch_size: int) -> List[List[int]]:
    """Consecutive index batches ``[0..B-1], [B..2B-1], ...`` over ``n_items``."""
    return [list(range(start, min(start + batch_size, n_items))) for start in range(0, n_items, batch_size)]


def shard(all_batches: Sequence[Sequence[int]], context: Context) -> List[int]:
    """The batch numbers this rank computes: ``rank, rank + W, ...``."""
    return list(range(context.rank, len(all_batches), context.world_size))


def gather_to_main(items: list, context: Context) -> Optional[list]:
    """Every rank's ``items`` concatenated on rank 0 (None elsewhere), through ``torch.distributed.gather_object``."""
    if not context.distributed:
        return list(items)
    gathered = [None] * context.world_size if context.is_main else None
    dist.gather_object(list(items), gathered, dst=0)
    return [item for part in gathered for item in part] if context.is_main else None

