"""Data-parallel training on PyTorch's own engine: `torchrun --nproc_per_node N -m gflownets
train ...` starts N processes; each samples its share of the batch from its own random stream,
and one all-reduce averages the gradients (`average_gradients`), so the network and log Z stay
identical on every rank. Rank 0 alone logs, evaluates, plots and writes the run folder."""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import math
import os
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from gflownets.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Ranks:
    """This process's place in the group (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start(device: str) -> str:
    """Join the process group torchrun describes (gloo on CPUs, nccl on CUDA GPUs) and return
    this rank's device (`cuda` becomes `cuda:LOCAL_RANK`). Without torchrun: `device` as given."""
    if not launched_by_torchrun():
        return device
    kind = torch.device(device).type
    if kind == "cuda":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    elif kind != "cpu":
        raise ConfigError(f"distributed training runs on cpu (gloo) or cuda (nccl), not {device!r}")
    if not dist.is_initialized():
        # imported later, torch._dynamo (which the optimiser imports) keeps references to the
        # group: `destroy_process_group` would then leave it and gloo's threads alive, to be torn
        # down during interpreter exit, where a rank was seen to abort (SIGABRT)
        importlib.import_module("torch._dynamo")
        # a rank that dies is noticed by torchrun, which stops the others; the timeout only
        # bounds a hang (a rank stuck in a user's reward, say)
        dist.init_process_group("nccl" if kind == "cuda" else "gloo", timeout=datetime.timedelta(minutes=30))
    return device


def stop(wait_for_all: bool = False) -> None:
    """Leave the process group (a no-op outside one, or once left). `wait_for_all`, on a normal
    end only: first wait until every rank is done, so that no rank tears down its transport while
    another still talks to it (gloo aborts that rank). Not after an error: the other ranks may
    never come, and the barrier would hang until the timeout."""
    if dist.is_available() and dist.is_initialized():
        if wait_for_all:
            dist.barrier()
        dist.destroy_process_group()


def current_ranks() -> Ranks:
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size())
    return Ranks()


def rank_seed(seed: int, rank: int) -> int:
    """Rank 0 keeps the run's seed (one rank is the plain run); the others get independent
    streams derived from (seed, rank)."""
    return seed if rank == 0 else int(np.random.SeedSequence([seed, rank]).generate_state(1, np.uint64)[0] >> 1)


def per_rank_batch(batch_size: int, ranks: Ranks) -> int:
    """`--batch-size` is the batch of one optimiser step, shared out among the ranks."""
    if batch_size % ranks.world_size:
        raise ConfigError(f"batch_size {batch_size} must be divisible by the number of ranks ({ranks.world_size})")
    return batch_size // ranks.world_size


def broadcast_from_main(module: nn.Module, ranks: Ranks) -> None:
    """Rank 0's parameters and buffers on every rank, as DistributedDataParallel sets them at its
    start: the ranks initialise alike from the run's seed, unless some code (a user's environment,
    say) drew random numbers on one rank only."""
    if not ranks.distributed:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor, src=0)


def average_gradients(parameters: list[nn.Parameter], ranks: Ranks) -> None:
    """Make every parameter's `.grad` the mean over the ranks, as DistributedDataParallel would
    leave it, with one all-reduce per dtype of one flat buffer. A parameter that a rank left out
    (log Z in flow matching, ...) counts as zeros there; one that every rank left out keeps no
    gradient, so the optimiser leaves it alone.

    Not DDP itself: its reducer holds the process group for as long as it lives, so that the
    group would outlive `destroy_process_group` (see `start`)."""
    if not ranks.distributed:
        return
    by_dtype: dict[torch.dtype, list[nn.Parameter]] = {}
    for parameter in parameters:
        by_dtype.setdefault(parameter.dtype, []).append(parameter)
    for group in by_dtype.values():
        used = torch.tensor([p.grad is not None for p in group], dtype=group[0].dtype, device=group[0].device)
        flat = torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1) for p in group] + [used])
        dist.all_reduce(flat)
        flat /= ranks.world_size  # the flags stay > 0 where any rank used the parameter
        *gradients, used_anywhere = flat.split([p.numel() for p in group] + [len(group)])
        for parameter, gradient, anywhere in zip(group, gradients, used_anywhere.tolist()):
            parameter.grad = gradient.view_as(parameter) if anywhere else None


def mean_over_ranks(value: float, ranks: Ranks, device: torch.device) -> float:
    if not ranks.distributed:
        return value
    total = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return float(total) / ranks.world_size


def any_rank(flag: bool, ranks: Ranks, device: torch.device) -> bool:
    """Whether `flag` is set on any rank (a signal that reached only some of them)."""
    if not ranks.distributed:
        return flag
    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value)


def any_nonfinite(values: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """`values`, made NaN on every rank if any rank's are not finite."""
    bad = (~torch.isfinite(values)).any().to(values.dtype).reshape(1)  # no host sync: the caller reads once
    dist.all_reduce(bad, op=dist.ReduceOp.MAX)
    return torch.where(bad > 0, torch.full_like(values, math.nan), values)


def union_over_ranks(found: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """The modes found by any rank."""
    if not ranks.distributed:
        return found
    merged = found.to(torch.uint8)
    dist.all_reduce(merged, op=dist.ReduceOp.MAX)
    return merged.to(found.dtype)


def gather_to_main(state: dict[str, Any], ranks: Ranks) -> list[dict[str, Any]] | None:
    """Every rank's `state`, on rank 0 (None elsewhere). The objects exchanged are the ranks'
    own (random streams and batch-source states), never read from a file."""
    if not ranks.distributed:
        return [state]
    gathered: list[Any] | None = [None] * ranks.world_size if ranks.is_main else None
    dist.gather_object(state, gathered, dst=0)
    return gathered
