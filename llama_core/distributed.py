"""What changes when ``torchrun`` starts several training processes.

Each process draws the same global batch and keeps its own rows, DistributedDataParallel
averages the gradients, and every rank stops at the step rank 0 decides, so the curve
matches one process with that batch. With one process every method does nothing, which
is what lets the training loop read the same either way.
"""

from __future__ import annotations

import os

import torch

from .config import TrainConfig
from .errors import ConfigError


class Distributed:
    """This process's rank among ``world`` processes, and the device it trains on."""

    def __init__(self, rank: int = 0, world: int = 1, device: torch.device | None = None):
        self.rank, self.world, self.device = rank, world, device

    @classmethod
    def from_env(cls, cfg: TrainConfig) -> Distributed:
        """One process, or joins the group ``torchrun`` describes in WORLD_SIZE and
        LOCAL_RANK (NCCL on GPUs, gloo on CPUs)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch.distributed as dist
        if cfg.batch_size % world:
            raise ConfigError(f"batch_size ({cfg.batch_size}) must be a multiple of the "
                              f"number of processes ({world}) so each gets an equal share.")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
        if use_cuda:
            torch.cuda.set_device(local)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if use_cuda else "gloo")
        device = torch.device("cuda", local) if use_cuda else torch.device("cpu")
        return cls(dist.get_rank(), world, device)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module the loop calls forward on: DDP averages gradients in backward."""
        if self.world == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel
        return DistributedDataParallel(
            model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def shard(self, x: torch.Tensor, y: torch.Tensor):
        """Every rank draws the same global batch; each keeps its own rows."""
        if self.world == 1:
            return x, y
        n = x.shape[0] // self.world
        rows = slice(self.rank * n, (self.rank + 1) * n)
        return x[rows], y[rows]

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of ``value`` over all ranks (a training loss to report)."""
        if self.world == 1:
            return value
        import torch.distributed as dist
        value = value.detach().clone()
        dist.all_reduce(value)
        return value / self.world

    def agree(self, *flags: bool) -> tuple[bool, ...]:
        """Rank 0's answers, for every rank (its clock and stop button decide)."""
        if self.world == 1:
            return flags
        import torch.distributed as dist
        t = torch.tensor([float(f) for f in flags], device=self.device)
        dist.broadcast(t, src=0)
        return tuple(bool(v) for v in t.tolist())

    def close(self) -> None:
        """Leave together: a rank that tears its connections down while another still
        works (rank 0 saving the checkpoint) can make gloo abort the process."""
        if self.world > 1:
            import torch.distributed as dist
            if dist.is_initialized():
                dist.barrier()
                dist.destroy_process_group()
