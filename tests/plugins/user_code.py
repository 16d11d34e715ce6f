"""A user's module, as the CLI would import it by name: an environment defined outside the
package (a ring of n cells entered from cell 0: walk clockwise one cell at a time, exit anywhere)
and reward functions."""

from __future__ import annotations

import dataclasses
import os
import time

import torch

from gflownets.envs import DiscreteEnv, EnvConfig
from gflownets.errors import ConfigError


@dataclasses.dataclass
class CounterConfig(EnvConfig):
    length: int = dataclasses.field(default=6, metadata={"help": "the most cells a walk can reach"})
    bonus: float = dataclasses.field(default=3.0, metadata={"help": "reward of the last cell"})

    def validate(self) -> None:
        if self.length < 1:
            raise ConfigError(f"length must be >= 1, got {self.length}")


class Counter(DiscreteEnv):
    """Count up from 0 by one, stop anywhere up to `length`; R(k) = 1 + k, bonus at the end."""

    name = "counter"
    Config = CounterConfig

    def setup(self, config: CounterConfig) -> None:
        self.n_actions = 2
        self.state_shape = (1,)
        self.max_steps = config.length + 1
        self.feature_dim = config.length + 1
        self.value_range = (0, config.length)

    @property
    def initial_state(self) -> torch.Tensor:
        return torch.zeros(1, dtype=torch.long, device=self.device)

    def forward_mask(self, states: torch.Tensor) -> torch.Tensor:
        return torch.cat([states < self.config.length, torch.ones_like(states, dtype=torch.bool)], dim=1)

    def backward_mask(self, states: torch.Tensor) -> torch.Tensor:
        return states > 0

    def _step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return states + 1

    def _backward_step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return states - 1

    def default_log_reward(self, states: torch.Tensor) -> torch.Tensor:
        k = states[:, 0].double()
        return torch.where(k == self.config.length, self.config.bonus, 1.0 + k).log()

    def features(self, states: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(states[:, 0], self.config.length + 1).float()


def squares(objects: torch.Tensor) -> torch.Tensor:
    """R(x) = 1 + sum of squared entries: a reward of the user's for any environment."""
    return 1.0 + objects.double().pow(2).sum(dim=1)


def fails_on_far_corner(objects: torch.Tensor) -> torch.Tensor:
    """A reward that raises on one object (the 2-D grid's far corner (5, 5)), rarely sampled."""
    if ((objects[:, 0] == 5) & (objects[:, 1] == 5)).any():
        raise KeyError("no price for (5, 5)")
    return torch.ones(len(objects), dtype=torch.float64)


#: the 2-D objects on which `trap` misbehaves: it raises on the first, ends its process on the
#: second (as a crash in native code would) and hangs on the third
TRAP_RAISES, TRAP_EXITS, TRAP_HANGS = (6, 7), (0, 7), (7, 0)


def trap(objects: torch.Tensor) -> torch.Tensor:
    """`squares`, except on the TRAP objects: a reward as reward workers must report its failures."""
    rows = {tuple(row) for row in objects.tolist()}
    if TRAP_EXITS in rows:
        os._exit(3)
    if TRAP_HANGS in rows:
        time.sleep(600)
    if TRAP_RAISES in rows:
        raise KeyError(f"no price for {TRAP_RAISES}")
    return squares(objects)
