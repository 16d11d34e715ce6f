"""Local search (LS-GFN, Kim et al. 2024): refine each sampled object by re-generating its last
K steps, keep the better of the two."""

from __future__ import annotations

from typing import Any

import torch

from gflownets.envs.base import DiscreteEnv
from gflownets.policies.base import Policy
from gflownets.sampling.trajectories import Trajectories, sample_backward, sample_forward
from gflownets.sources.base import BatchSource, Observer


class LocalSearch:
    """Wraps a source: from each trajectory's state K moves before its end, complete again with
    P_F; of the old and the new object keep the one of higher reward. The kept objects join the
    batch as off-policy samples, walked backward with P_B; the candidates are observed (they
    count towards the modes found)."""

    def __init__(self, inner: BatchSource, env: DiscreteEnv, policy: Policy, back_steps: int,
                 gamma: float = 0.0, temperature: float = 1.0, observe: Observer | None = None):
        self.inner, self.env, self.policy, self.back_steps = inner, env, policy, back_steps
        self.gamma, self.temperature, self.observe = gamma, temperature, observe

    def sample(self, generator: torch.Generator) -> Trajectories:
        batch = self.inner.sample(generator)
        back = (batch.lengths - 1 - self.back_steps).clamp(min=0)
        starts = batch.states[torch.arange(len(batch), device=back.device), back]
        candidates = sample_forward(self.env, self.policy, len(batch), generator, gamma=self.gamma,
                                    temperature=self.temperature, start=starts)
        if self.observe is not None:
            self.observe(candidates.terminal_states)
        better = candidates.log_rewards > batch.log_rewards
        objects = torch.where(better.view(-1, *[1] * len(self.env.state_shape)),
                              candidates.terminal_states, batch.terminal_states)
        log_rewards = torch.where(better, candidates.log_rewards, batch.log_rewards)
        refined = sample_backward(self.env, self.policy, objects, generator, log_rewards)
        return Trajectories.cat([batch, refined])

    def state_dict(self) -> dict[str, Any]:
        return {"inner": self.inner.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state.get("inner", state))
