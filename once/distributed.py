"""Many processes, one run: torch.distributed as `torchrun` sets it up (DDP training, sharded scoring and caching).

`torchrun --nproc_per_node N -m once train RECIPE` starts N copies of ONCE. Each finds its rank in the
environment torchrun sets; rank 0 creates the run directory and writes every file, the others compute their
share and wait at barriers. Without torchrun there is one process of rank 0 and every helper here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the processes of a run."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # rank on this machine: which GPU to use

    @property
    def main(self) -> bool:
        """The process that writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def shard(self, total: int) -> np.ndarray:
        """This rank's share of `total` rows: every size-th row from its rank on (shares differ by at most one)."""
        return np.arange(self.rank, total, self.size)

    def order(self, total: int) -> np.ndarray:
        """The rows of every rank's shard, in rank order: where `gather`ed rows come from."""
        return np.concatenate([np.arange(rank, total, self.size) for rank in range(self.size)])

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def broadcast(self, value: str) -> str:
        """Rank 0's `value` on every rank (a path, say)."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def broadcast_(self, tensor: torch.Tensor) -> None:
        """Rank 0's values of `tensor` (on the rank's device), in place on every rank."""
        if self.distributed:
            dist.broadcast(tensor, src=0)

    def all_sum(self, values: list[float]) -> list[float]:
        """Element-wise sums over ranks."""
        if not self.distributed:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self._device())
        dist.all_reduce(tensor)
        return tensor.tolist()

    def gather(self, rows: torch.Tensor) -> torch.Tensor:
        """Every rank's `rows` concatenated along dim 0 in rank order, on every rank."""
        if not self.distributed:
            return rows
        device = self._device()
        counts = torch.zeros(self.size, dtype=torch.long, device=device)
        counts[self.rank] = len(rows)
        dist.all_reduce(counts)
        padded = torch.zeros((int(counts.max()), *rows.shape[1:]), dtype=rows.dtype, device=device)
        padded[: len(rows)] = rows.to(device)
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        dist.all_gather(parts, padded)
        return torch.cat([part[:count] for part, count in zip(parts, counts.tolist(), strict=True)]).to(rows.device)

    def unshard(self, rows: torch.Tensor, total: int) -> torch.Tensor:
        """The full (total, ...) tensor from each rank's rows of its `shard(total)`, on every rank."""
        if not self.distributed:
            return rows
        gathered = self.gather(rows)
        full = torch.empty_like(gathered)
        full[torch.from_numpy(self.order(total)).to(full.device)] = gathered
        return full

    def _device(self) -> torch.device:
        """Where collectives run: the rank's GPU under NCCL, else the CPU."""
        if dist.get_backend() == "nccl":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")


def launched_as_main() -> bool:
    """Whether this process is rank 0 of its torchrun launch (or was not launched by torchrun), known before the
    process group exists: only rank 0 prints."""
    return os.environ.get("RANK", "0") == "0"


def init_world(use_cuda: bool) -> World:
    """The process group torchrun describes in the environment (NCCL between GPUs, gloo otherwise), or a single
    process when there is none."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), local_rank)
