"""Distributed training helpers: torchrun environment, a deterministic sharded sampler, and
synchronised BatchNorm that also works on CPU (gloo), so N processes compute what one does."""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

logger = logging.getLogger(__name__)


@dataclass
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: torch.device) -> DistEnv:
    """Join the process group when started by torchrun (``WORLD_SIZE`` > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    env = DistEnv(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    logger.info("distributed: rank %d of %d (%s)", env.rank, env.world_size, dist.get_backend())
    return env


def cleanup_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class ShardedSampler(Sampler[int]):
    """Same global order for every world size: a seeded permutation per epoch, cut into global
    batches; rank r takes its contiguous share of each global batch. ``start_batch`` skips
    batches already trained (exact resume)."""

    def __init__(self, size: int, global_batch: int, rank: int = 0, world_size: int = 1, seed: int = 0,
                 shuffle: bool = True, drop_last: bool = True) -> None:
        if global_batch % world_size:
            raise ValueError(f"global batch {global_batch} is not divisible by {world_size} processes")
        self.size, self.global_batch, self.rank, self.world = size, global_batch, rank, world_size
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def num_batches(self) -> int:
        full, rest = divmod(self.size, self.global_batch)
        return full + (1 if rest and not self.drop_last else 0)

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.size)
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.size)

    def __iter__(self) -> Iterator[int]:
        order = self._order()
        per_rank = self.global_batch // self.world
        for b in range(self.start_batch, self.num_batches()):
            chunk = order[b * self.global_batch:(b + 1) * self.global_batch]
            share = np.array_split(chunk, self.world)[self.rank] if len(chunk) < self.global_batch else \
                chunk[self.rank * per_rank:(self.rank + 1) * per_rank]
            yield from (int(i) for i in share)

    def __len__(self) -> int:
        n = (self.num_batches() - self.start_batch) * (self.global_batch // self.world)
        if not self.drop_last and self.size % self.global_batch:
            n -= self.global_batch // self.world - len(np.array_split(np.arange(self.size % self.global_batch),
                                                                       self.world)[self.rank])
        return max(n, 0)


class CPUSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose batch statistics are summed over all processes (differentiably)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not dist.is_initialized():
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        c = x.shape[1]
        local = torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)),
                           x.new_tensor([x.numel() / c])])
        total = all_reduce(local)
        n = total[-1]
        mean = total[:c] / n
        var = total[c:2 * c] / n - mean * mean
        tracked, running_mean, running_var = self.num_batches_tracked, self.running_mean, self.running_var
        assert tracked is not None and running_mean is not None and running_var is not None  # track_running_stats
        with torch.no_grad():
            tracked += 1
            m = self.momentum if self.momentum is not None else 1.0 / float(tracked)
            running_mean.mul_(1 - m).add_(m * mean.detach())
            running_var.mul_(1 - m).add_(m * var.detach() * n / max(float(n) - 1, 1.0))
        y = (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + self.eps)
        return y * self.weight[None, :, None, None] + self.bias[None, :, None, None]


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """torch's SyncBatchNorm on GPUs, :class:`CPUSyncBatchNorm` on CPU."""
    if device.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, CPUSyncBatchNorm):
            new = CPUSyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                   child.track_running_stats)
            new.load_state_dict(child.state_dict())
            setattr(module, name, new)
        else:
            convert_sync_batchnorm(child, device)
    return module


def all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
    return value
