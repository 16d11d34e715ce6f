"""The uniform policy: every allowed action equally likely, forward and backward, no parameters
to train. What random search rolls out with, and the fixed proposal of generic MCMC."""

from __future__ import annotations

import torch

from gflownets.envs.base import DiscreteEnv
from gflownets.policies.base import Policy, PolicyOutput


class UniformPolicy(Policy):
    """All-zero logits (uniform over the allowed actions after masking) and zero log flows."""

    def __init__(self, env: DiscreteEnv):
        super().__init__(env, backward="uniform")
        self.log_z.requires_grad_(False)

    def forward(self, states: torch.Tensor) -> PolicyOutput:
        n = states.shape[0]
        zeros = torch.zeros(n, self.env.n_actions, device=states.device)
        return PolicyOutput(zeros, zeros[:, :-1], zeros[:, 0])
