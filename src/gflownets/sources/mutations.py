"""Mutation search: persistent Metropolis chains over finished objects whose proposals are
trained on too."""

from __future__ import annotations

from typing import Any

import torch

from gflownets.envs.base import DiscreteEnv
from gflownets.errors import ConfigError
from gflownets.policies.base import Policy
from gflownets.sampling.metropolis import Proposal, metropolis_step
from gflownets.sampling.trajectories import Trajectories, sample_backward
from gflownets.sources.base import BatchSource, Observer


class MutationChains:
    """Wraps a source: `n_chains` persistent Metropolis chains, started from the first batch's
    objects. Each iteration every chain proposes `env.mutate` of its object and moves there with
    probability min(1, R(x') / R(x)) (for a symmetric proposal, as sequence point mutations are,
    each chain then samples R itself). Every changed proposal joins the batch as an off-policy
    sample walked backward with P_B (TB's fixed point does not depend on where its objects come
    from). Chains complete a motif anywhere in a sequence and cross valleys of lower reward,
    moves that building left to right reaches only by chance (evolution-guided GFlowNets, Ikram
    et al. 2023, and LS-GFN's Metropolis filtering, Kim et al. 2024, are the same idea)."""

    def __init__(self, inner: BatchSource, env: DiscreteEnv, policy: Policy, n_chains: int,
                 observe: Observer | None = None, steps: int = 1, guide: float = 0.0):
        if type(env).mutate is DiscreteEnv.mutate:
            raise ConfigError(f"mutations: {env.name} defines no mutation of its objects "
                              "(implement DiscreteEnv.mutate to use mutation search)")
        self.inner, self.env, self.policy, self.n_chains, self.observe = inner, env, policy, n_chains, observe
        if guide and not hasattr(env, "guided_mutate"):
            raise ConfigError(f"mutation_guide: {env.name} has no policy-guided mutation "
                              "(sequence environments have one); use mutation_guide 0")
        self.steps, self.guide = steps, guide
        #: the chains' proposal: the policy-guided mutation, or None for the environment's `mutate`
        self.propose: Proposal | None = self._guided_mutation if guide else None
        #: the chains' objects and log-rewards (None until the first batch)
        self.chains: torch.Tensor | None = None
        self.chain_log_rewards: torch.Tensor | None = None

    def sample(self, generator: torch.Generator) -> Trajectories:
        batch = self.inner.sample(generator)
        if self.chains is None:
            picks = torch.randint(len(batch), (self.n_chains,), generator=generator, device=generator.device)
            self.chains = batch.terminal_states[picks].clone()
            self.chain_log_rewards = batch.log_rewards[picks].clone()
        start = self.chains
        for _ in range(self.steps):
            step = metropolis_step(self.env, self.chains, self.chain_log_rewards, generator, self.propose)
            self.chains, self.chain_log_rewards = step.objects, step.log_rewards
            if self.observe is not None and len(step.proposals):
                self.observe(step.proposals)
        if self.steps == 1:
            trained, trained_log_rewards = step.proposals, step.proposal_log_rewards
        else:
            # several steps per iteration spend the oracle calls on search; the policy trains on
            # where the chains moved (samples of R), not on every rejected proposal
            moved = (self.chains != start).flatten(1).any(dim=1)
            trained, trained_log_rewards = self.chains[moved], self.chain_log_rewards[moved]
        if not len(trained):
            return batch
        walked = sample_backward(self.env, self.policy, trained, generator, trained_log_rewards)
        return Trajectories.cat([batch, walked])

    def _guided_mutation(self, objects: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The point mutation whose new token the policy proposes (`guide` of the time)."""
        return self.env.guided_mutate(objects, self.policy.forward_logits, generator, self.guide)

    def state_dict(self) -> dict[str, Any]:
        chains = (self.chains, self.chain_log_rewards) if self.chains is not None else None
        return {"inner": self.inner.state_dict(), "chains": chains}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # a run resumed with mutations newly switched on has no chains saved: they start afresh
        self.inner.load_state_dict(state.get("inner", state))
        if state.get("chains") is not None:
            self.chains, self.chain_log_rewards = (x.to(self.env.device) for x in state["chains"])
