"""Branin-Currin on a 2-D grid: the two-objective benchmark of multi-objective GFlowNets (MOGFN,
Jain et al. 2023; the conditional grid of the reference code is 32 x 32). The walk is the
hypergrid's (from the origin, +1 on one coordinate at a time, exit anywhere); cell (i, j) is the
point u = (i, j) / (H - 1) of the unit square, and its two objective values are the Branin and
Currin functions there, both to be minimised, mapped to [0, 1] with 1 the best value on the grid:

    Branin(u)  = (b - 5.1 a^2 / (4 pi^2) + 5 a / pi - 6)^2 + 10 (1 - 1 / (8 pi)) cos(a) + 10,
                 a = 15 u_0 - 5, b = 15 u_1;
    Currin(u)  = (1 - exp(-1 / (2 u_1))) (2300 u_0^3 + 1900 u_0^2 + 2092 u_0 + 60)
                 / (100 u_0^3 + 500 u_0^2 + 4 u_0 + 20)   (the factor is 1 at u_1 = 0);
    f_k(x)     = (max_grid g_k - g_k(x)) / (max_grid g_k - min_grid g_k).

Train it with `--condition preference` for one sampler of the whole Pareto front; its own
(unconditional) reward is the equal-weight sum, ((f_0 + f_1) / 2)^beta.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch

from gflownets.envs.hypergrid import Hypergrid
from gflownets.envs.base import EnvConfig
from gflownets.errors import ConfigError
from gflownets.envs.limits import check_policy_inputs

#: the unconditional reward's floor: (f_0 + f_1) / 2 is clamped from below at this
MEAN_FLOOR = 1e-6


def branin(u: torch.Tensor) -> torch.Tensor:
    a, b = 15 * u[:, 0] - 5, 15 * u[:, 1]
    return (b - 5.1 * a ** 2 / (4 * math.pi ** 2) + 5 * a / math.pi - 6) ** 2 \
        + 10 * (1 - 1 / (8 * math.pi)) * torch.cos(a) + 10


def currin(u: torch.Tensor) -> torch.Tensor:
    x0, x1 = u[:, 0], u[:, 1]
    factor = torch.where(x1 > 0, 1 - torch.exp(-1 / (2 * x1.clamp(min=1e-300))), torch.ones_like(x1))
    return factor * (2300 * x0 ** 3 + 1900 * x0 ** 2 + 2092 * x0 + 60) / (100 * x0 ** 3 + 500 * x0 ** 2 + 4 * x0 + 20)


@dataclasses.dataclass
class BraninCurrinConfig(EnvConfig):
    height: int = dataclasses.field(default=32, metadata={"help": "side H of the grid (>= 2)"})
    beta: float = dataclasses.field(default=8.0, metadata={
        "help": "exponent of the unconditional reward ((f0 + f1) / 2)^beta"})
    #: the grid is 2-D (read by the hypergrid's code)
    ndim: ClassVar[int] = 2

    def validate(self) -> None:
        if self.height < 2:
            raise ConfigError(f"height must be >= 2, got {self.height}")
        check_policy_inputs("branin-currin", 2 * self.height, "2 * height one-hot features")
        if not (self.beta > 0 and math.isfinite(self.beta)):
            raise ConfigError(f"beta must be > 0 and finite, got {self.beta}")


class BraninCurrin(Hypergrid):
    """A 2-D hypergrid whose objects have two objective values (`objective_values`)."""

    name = "branin-currin"
    Config = BraninCurrinConfig
    presets = {}
    run_defaults = {"iters": 4000, "batch_size": 64, "hidden": 128}

    def setup(self, config: BraninCurrinConfig) -> None:
        super().setup(config)
        axis = torch.arange(self.height, dtype=torch.float64) / (self.height - 1)
        cells = torch.cartesian_prod(axis, axis)
        raw = torch.stack([branin(cells), currin(cells)], dim=1)
        self._worst, self._best = raw.max(dim=0).values, raw.min(dim=0).values

    def objective_values(self, states: torch.Tensor) -> torch.Tensor:
        u = states.double() / (self.height - 1)
        raw = torch.stack([branin(u), currin(u)], dim=1)
        worst, best = self._worst.to(states.device), self._best.to(states.device)
        return ((worst - raw) / (worst - best)).clamp(0.0, 1.0)

    def default_log_reward(self, states: torch.Tensor) -> torch.Tensor:
        mean = self.objective_values(states).mean(dim=1)
        return self.config.beta * mean.clamp(min=MEAN_FLOOR).log()
