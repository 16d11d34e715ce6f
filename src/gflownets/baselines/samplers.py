"""Samplers to compare GFlowNets with on the same reward, each producing finished objects of any
environment of the library and counting its reward calls (the budget every method is measured
against): `RandomSampler`, uniform rollouts; `MetropolisSampler`, Metropolis-Hastings chains over
finished objects, with the environment's `mutate` (a symmetric point change) where it has one,
or generically with the back-and-forth proposal (k steps back and k forth with the uniform
policy, accepted with the exact proposal ratio). Every `step` returns the objects the method
visited at that step, so the empirical distribution of what a method visits can be measured
against the exact target (`StateGraph.empirical_distribution`), as the first GFlowNet paper did
for MCMC."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch

from gflownets.envs.base import DiscreteEnv
from gflownets.errors import ConfigError
from gflownets.policies.uniform import UniformPolicy
from gflownets.sampling.back_and_forth import back_and_forth
from gflownets.sampling.metropolis import metropolis_hastings, metropolis_step
from gflownets.sampling.trajectories import sample_forward

if TYPE_CHECKING:
    from gflownets.evaluation.exact import StateGraph


def has_mutation(env: DiscreteEnv) -> bool:
    """Whether the environment defines `mutate` (the base class's raises)."""
    return type(env).mutate is not DiscreteEnv.mutate


class Baseline:
    """A sampler of finished objects; `step(generator)` returns the (n, ...) objects it visited
    in one step, and `reward_calls` counts every object it has scored."""

    name: ClassVar[str]

    def __init__(self, env: DiscreteEnv):
        self.env = env
        self.reward_calls = 0

    def step(self, generator: torch.Generator | None) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def learned_distribution(self, graph: StateGraph) -> torch.Tensor | None:
        """The exact distribution, over `graph`'s terminal states, of the sampler the method has
        learned (None where it learns none: random search, MCMC)."""
        return None


class PolicyBaseline(Baseline):
    """A baseline that learns a policy of the library's interface (`self.policy`), whose
    terminal distribution the state graph computes exactly."""

    policy: torch.nn.Module

    def learned_distribution(self, graph: StateGraph) -> torch.Tensor:
        return graph.terminal_distribution(self.policy)


class RandomSampler(Baseline):
    """`batch_size` rollouts of the uniform policy per step (each allowed action equally likely)."""

    name = "random"

    def __init__(self, env: DiscreteEnv, batch_size: int = 16):
        super().__init__(env)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.policy = UniformPolicy(env)

    def step(self, generator: torch.Generator | None) -> torch.Tensor:
        objects = sample_forward(self.env, self.policy, self.batch_size, generator).terminal_states
        self.reward_calls += self.batch_size
        return objects


class MetropolisSampler(Baseline):
    """`n_chains` Metropolis-Hastings chains over finished objects, started from uniform
    rollouts. `proposal`: "mutate" (the environment's symmetric point change; a change it does
    not make costs no call), "back-and-forth" (k steps back with uniform P_B, k forth with uniform
    P_F; any environment whose objects are at least k steps deep), "mixed" (the two in turn, each
    step a kernel that leaves R invariant: a fragment swap, then a regrown last fragment), or
    "auto" (mutate where the environment has it)."""

    name = "mcmc"

    def __init__(self, env: DiscreteEnv, n_chains: int = 16, proposal: str = "auto", k: int = 1):
        super().__init__(env)
        if n_chains < 1 or k < 1:
            raise ConfigError(f"n_chains and k must be >= 1, got {n_chains} and {k}")
        if proposal == "auto":
            proposal = "mutate" if has_mutation(env) else "back-and-forth"
        if proposal not in ("mutate", "back-and-forth", "mixed"):
            raise ConfigError(f"proposal must be mutate, back-and-forth, mixed or auto, got {proposal!r}")
        if proposal in ("mutate", "mixed") and not has_mutation(env):
            raise ConfigError(f"{env.name} defines no mutation; use the back-and-forth proposal")
        self.n_chains, self.proposal, self.k = n_chains, proposal, k
        self.policy = UniformPolicy(env)
        self.chains: torch.Tensor | None = None
        self.log_rewards: torch.Tensor | None = None
        self.accepted = 0
        self.proposed = 0

    def step(self, generator: torch.Generator | None) -> torch.Tensor:
        if self.chains is None:
            trajectories = sample_forward(self.env, self.policy, self.n_chains, generator)
            self.chains, self.log_rewards = trajectories.terminal_states, trajectories.log_rewards
            self.reward_calls += self.n_chains
            return self.chains
        mutate = self.proposal == "mutate" or (self.proposal == "mixed" and self.proposed // self.n_chains % 2 == 0)
        if mutate:
            moved = metropolis_step(self.env, self.chains, self.log_rewards, generator)
            self.reward_calls += len(moved.proposals)
            self.accepted += int((moved.objects != self.chains).flatten(1).any(dim=1).sum())
            self.chains, self.log_rewards = moved.objects, moved.log_rewards
        else:
            proposal = back_and_forth(self.env, self.policy, self.chains, self.k, generator)
            proposal_log_rewards = self.env.log_reward(proposal.proposals)
            self.reward_calls += self.n_chains
            self.chains, accepted = metropolis_hastings(self.chains, self.log_rewards, proposal.proposals,
                                                        proposal_log_rewards, proposal.log_ratio, generator)
            self.log_rewards = torch.where(accepted, proposal_log_rewards, self.log_rewards)
            self.accepted += int(accepted.sum())
        self.proposed += self.n_chains
        return self.chains

    @property
    def acceptance(self) -> float:
        return self.accepted / self.proposed if self.proposed else float("nan")
