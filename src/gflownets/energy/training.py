"""Approximate maximum likelihood of an energy model with a pluggable negative sampler: the
whole EB-GFN loop (Zhang et al. 2022, Algorithm 1) when the sampler is `GFlowNetNegatives`,
persistent contrastive divergence when it is Gibbs or GWG.

Per iteration: draw a data batch x; the sampler returns negatives x- (EB-GFN trains its
GFlowNet on the way); one Adam step on

    L(E) = mean E(x) - mean E(x-)  [+ l2 (mean E(x)^2 + mean E(x-)^2)],

the stochastic gradient of the negative log-likelihood when x- ~ p_E."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from gflownets.errors import ConfigError
from gflownets.training.config import check_field_types, numpy_scalars_to_python


@dataclasses.dataclass
class EnergyTraining:
    iters: int = 2000
    batch_size: int = 128
    lr: float = 1e-3
    #: weight of the energies' squares, which keeps E from drifting (0: off, as in the reference)
    l2: float = 0.0
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        numpy_scalars_to_python(self)

    def validate(self) -> None:
        check_field_types(self)
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


class EnergyTrainer:
    """The loop's state (energy, optimiser, negative sampler, random stream, step, records), so
    that a run can stop after any iteration and resume bit for bit from `state_dict()`, which
    holds tensors and plain data only (it loads with `torch.load(weights_only=True)`)."""

    def __init__(self, energy: nn.Module, negatives: Callable, data: torch.Tensor, config: EnergyTraining):
        config.validate()
        self.energy, self.negatives, self.config = energy, negatives, config
        self.data = check_binary_data(data)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.optimizer = torch.optim.Adam(energy.parameters(), lr=config.lr)
        self.step = 0
        self.seconds = 0.0  # training time before this process (a resumed run's earlier part)
        self.records: list[dict] = []

    def train_step(self) -> dict[str, torch.Tensor]:
        config = self.config
        batch = self.data[torch.randint(len(self.data), (config.batch_size,), generator=self.generator)]
        fake = self.negatives(self.energy, batch, self.step, self.generator).detach()
        data_energy, fake_energy = self.energy(batch), self.energy(fake)
        loss = data_energy.mean() - fake_energy.mean()
        if config.l2 > 0:
            loss = loss + config.l2 * (data_energy.pow(2).mean() + fake_energy.pow(2).mean())
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return {"loss": loss.detach(), "data_energy": data_energy.detach().mean(),
                "fake_energy": fake_energy.detach().mean()}

    def run(self, until: int | None = None, record_every: int = 100,
            on_record: Callable[[dict[str, Any]], None] | None = None) -> list[dict]:
        """Train up to iteration `until` (default: config.iters), recording every `record_every`
        iterations; `on_record(record)` sees each record (a checkpoint hook)."""
        until = self.config.iters if until is None else until
        started = time.perf_counter() - self.seconds
        bar = tqdm(total=self.config.iters, initial=self.step, disable=not self.config.progress,
                   desc=getattr(self.negatives, "name", "energy"))
        while self.step < until:
            values = self.train_step()
            bar.update(1)
            if self.step % record_every == 0 or self.step == self.config.iters:
                record = {"step": self.step, **{k: float(v) for k, v in values.items()},
                          "energy_evaluations": self.negatives.energy_evaluations,
                          "seconds": time.perf_counter() - started, **getattr(self.negatives, "last", {})}
                if not math.isfinite(record["loss"]):
                    raise FloatingPointError(f"the energy loss is {record['loss']} at step {self.step}; "
                                             "lower lr or set l2")
                self.records.append(record)
                self.seconds = record["seconds"]
                bar.set_postfix({k: f"{v:.3g}" for k, v in record.items()
                                 if k in ("loss", "k", "acceptance", "gfn_loss")})
                if on_record is not None:
                    on_record(record)
        bar.close()
        return self.records

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "seconds": self.seconds, "records": self.records,
                "energy": self.energy.state_dict(), "optimizer": self.optimizer.state_dict(),
                "negatives": self.negatives.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.seconds, self.records = state["step"], state["seconds"], list(state["records"])
        self.energy.load_state_dict(state["energy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.negatives.load_state_dict(state["negatives"])
        self.generator.set_state(state["generator"])


def train_energy(energy: nn.Module, negatives: Callable, data: torch.Tensor, config: EnergyTraining,
                 on_record: Callable[[dict[str, Any]], None] | None = None, record_every: int = 100) -> list[dict]:
    """Train `energy` in place on `data` ((N, D) bits) with the negatives of `negatives`;
    returns the records logged every `record_every` iterations (loss, mean energies, the
    sampler's statistics, energy evaluations and seconds so far)."""
    return EnergyTrainer(energy, negatives, data, config).run(record_every=record_every, on_record=on_record)
