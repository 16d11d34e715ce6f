"""The batch-source interface and the plainest source: fresh on-policy rollouts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch

from gflownets.envs.base import DiscreteEnv
from gflownets.policies.base import Policy
from gflownets.sampling.trajectories import Trajectories, sample_forward

#: called with the finished objects a source has generated (not replayed or read from data):
#: how the run counts the modes its sampler finds
Observer = Callable[[torch.Tensor], None]


class BatchSource(Protocol):
    def sample(self, generator: torch.Generator) -> Trajectories:
        """The next training batch."""

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors and numbers: what a resumed run needs to continue exactly."""

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Stateless:
    """Mixin for sources that carry nothing across iterations."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class OnPolicy(Stateless):
    """`batch_size` trajectories rolled out from s0 with P_F, mixed with uniform exploration
    `gamma` and tempered by `temperature`."""

    def __init__(self, env: DiscreteEnv, policy: Policy, batch_size: int, gamma: float = 0.0,
                 temperature: float = 1.0, observe: Observer | None = None):
        self.env, self.policy, self.batch_size = env, policy, batch_size
        self.gamma, self.temperature, self.observe = gamma, temperature, observe

    def sample(self, generator: torch.Generator) -> Trajectories:
        batch = sample_forward(self.env, self.policy, self.batch_size, generator,
                               gamma=self.gamma, temperature=self.temperature)
        if self.observe is not None:
            self.observe(batch.terminal_states)
        return batch
