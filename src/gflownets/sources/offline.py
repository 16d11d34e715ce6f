"""Offline training: mini-batches of a fixed data set of finished objects, each walked back to
s0 with P_B (the tutorial's offline procedure)."""

from __future__ import annotations

import math
from typing import Any

import torch

from gflownets.envs.base import DiscreteEnv
from gflownets.policies.base import Policy
from gflownets.sampling.trajectories import Trajectories, sample_backward


class Offline:
    """Shuffled passes over `objects`: each batch takes the next `batch_size` of the current
    permutation (wrapping into a new one), its trajectories drawn backward with P_B."""

    def __init__(self, env: DiscreteEnv, policy: Policy, objects: torch.Tensor, batch_size: int):
        self.env, self.policy, self.objects = env, policy, objects
        self.log_rewards = env.log_reward(objects)
        self.batch_size = min(batch_size, len(objects))
        self.order = torch.zeros(0, dtype=torch.long, device=objects.device)
        self.cursor = 0

    def iterations(self, epochs: int) -> int:
        """Iterations that make `epochs` passes over the data."""
        return epochs * math.ceil(len(self.objects) / self.batch_size)

    def sample(self, generator: torch.Generator) -> Trajectories:
        picks, need = [], self.batch_size
        while need:
            if self.cursor >= len(self.order):
                self.order = torch.randperm(len(self.objects), generator=generator, device=generator.device)
                self.cursor = 0
            take = self.order[self.cursor:self.cursor + need]
            self.cursor += len(take)
            picks.append(take)
            need -= len(take)
        picks = torch.cat(picks)
        return sample_backward(self.env, self.policy, self.objects[picks], generator, self.log_rewards[picks])

    def state_dict(self) -> dict[str, Any]:
        return {"order": self.order, "cursor": self.cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.order, self.cursor = state["order"].to(self.objects.device), state["cursor"]
