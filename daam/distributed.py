"""Many processes, through torch.distributed as `torchrun` and `accelerate launch` start them.

    torchrun --nproc_per_node 2 -m daam.train --data reviews.csv --out my-reviews      # 2 processes (gloo on CPU)
    torchrun --nproc_per_node 8 -m daam.train ...                                      # 8 GPUs, NCCL, one each

Both launchers set RANK, WORLD_SIZE and LOCAL_RANK; `start()` joins the group (NCCL where there is CUDA, else gloo)
and gives each process its device. Encoding is shared out by shard (daam.features), training is data-parallel
(DistributedDataParallel in daam.train.fit) and only the first process writes. One process, no launcher: nothing
here does anything."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """The process that writes files, prints and shows progress bars."""
        return self.rank == 0


def current() -> Processes:
    """This process's place in the group (rank 0 of 1 on the CPU when there is no group)."""
    cuda = torch.cuda.is_available()
    if not (dist.is_available() and dist.is_initialized()):
        return Processes(device=torch.device("cuda" if cuda else "cpu"))
    local = int(os.environ.get("LOCAL_RANK", 0))
    return Processes(dist.get_rank(), dist.get_world_size(), torch.device(f"cuda:{local}" if cuda else "cpu"))


def start() -> Processes:
    """Join the launcher's group when there is one (WORLD_SIZE > 1)."""
    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return current()


def stop() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every process (shared work such as encoding must be complete before any reads it)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def summed(value: float) -> float:
    """value summed over the processes (itself alone in one process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    total = torch.tensor([value], dtype=torch.float64, device=current().device)
    dist.all_reduce(total)
    return float(total.item())


def autocast(device: torch.device):
    """bf16 autocast on a GPU that computes in it; full precision elsewhere."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
