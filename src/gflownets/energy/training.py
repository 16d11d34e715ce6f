"""Approximate maximum likelihood of an energy model with a pluggable negative sampler: the
whole EB-GFN loop (Zhang et al. 2022, Algorithm 1) when the sampler is `GFlowNetNegatives`,
persistent contrastive divergence when it is Gibbs or GWG.

Per iteration: draw a data batch x; the sampler returns negatives x- (EB-GFN trains its
GFlowNet on the way); one Adam step on

    L(E) = mean E(x) - mean E(x-)  [+ l2 (mean E(x)^2 + mean E(x-)^2)],

the stochastic gradient of the negative log-likelihood when x- ~ p_E."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from gflownets.errors import ConfigError


@dataclasses.dataclass
class EnergyTraining:
    iters: int = 2000
    batch_size: int = 128
    lr: float = 1e-3
    #: weight of the energies' squares, which keeps E from drifting (0: off, as in the reference)
    l2: float = 0.0
    seed: int = 0
    progress: bool = True

    def validate(self) -> None:
        if self.iters < 1 or self.batch_size < 1:
            raise ConfigError(f"iters and batch_size must be >= 1, got {self.iters} and {self.batch_size}")
        if not self.lr > 0 or not self.l2 >= 0:
            raise ConfigError(f"lr must be > 0 and l2 >= 0, got {self.lr} and {self.l2}")


def check_binary_data(data: torch.Tensor) -> torch.Tensor:
    """(N, D) data of 0/1 values as float; anything else is a ConfigError naming the problem."""
    data = torch.as_tensor(data)
    if data.dim() != 2 or len(data) == 0:
        raise ConfigError(f"data must be a non-empty (N, D) table of bits, got shape {tuple(data.shape)}")
    if not ((data == 0) | (data == 1)).all():
        raise ConfigError("data must hold only 0 and 1")
    return data.float()


def train_energy(energy: nn.Module, negatives: Callable, data: torch.Tensor, config: EnergyTraining,
                 on_record: Callable[[dict[str, Any]], None] | None = None, record_every: int = 100) -> list[dict]:
    """Train `energy` in place on `data` ((N, D) bits) with the negatives of `negatives`;
    returns the records logged every `record_every` iterations (loss, mean energies, the
    sampler's statistics, energy evaluations and seconds so far)."""
    config.validate()
    data = check_binary_data(data)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(energy.parameters(), lr=config.lr)
    records: list[dict] = []
    start = time.perf_counter()
    bar = tqdm(range(config.iters), disable=not config.progress, desc=getattr(negatives, "name", "energy"))
    for step in bar:
        batch = data[torch.randint(len(data), (config.batch_size,), generator=generator)]
        fake = negatives(energy, batch, step, generator).detach()
        data_energy, fake_energy = energy(batch), energy(fake)
        loss = data_energy.mean() - fake_energy.mean()
        if config.l2 > 0:
            loss = loss + config.l2 * (data_energy.pow(2).mean() + fake_energy.pow(2).mean())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if (step + 1) % record_every == 0 or step + 1 == config.iters:
            record = {"step": step + 1, "loss": float(loss.detach()),
                      "data_energy": float(data_energy.detach().mean()),
                      "fake_energy": float(fake_energy.detach().mean()),
                      "energy_evaluations": negatives.energy_evaluations,
                      "seconds": time.perf_counter() - start, **getattr(negatives, "last", {})}
            if not torch.isfinite(loss.detach()):
                raise FloatingPointError(f"the energy loss is {record['loss']} at step {step + 1}; lower lr or set l2")
            records.append(record)
            bar.set_postfix(loss=f"{record['loss']:.3g}", **{k: f"{v:.3g}" for k, v in getattr(negatives, "last", {}).items()})
            if on_record is not None:
                on_record(record)
    return records
