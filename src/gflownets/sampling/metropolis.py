"""Metropolis chains over finished objects, with the environment's `mutate` as the proposal:
the move the trainer's mutation search and the benchmarks' MCMC baseline share."""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch

from gflownets.envs.base import DiscreteEnv, draw_device


class MetropolisStep(NamedTuple):
    objects: torch.Tensor  # (n, ...) each chain's object after the step
    log_rewards: torch.Tensor  # (n,) their log-rewards
    proposals: torch.Tensor  # (m, ...) the proposals that changed something (each cost a reward call)
    proposal_log_rewards: torch.Tensor  # (m,)


#: an asymmetric proposal: (objects, generator) -> (proposals, log q(x | x') - log q(x' | x));
#: a row it leaves unchanged is no proposal
Proposal = Callable[[torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def metropolis_step(env: DiscreteEnv, objects: torch.Tensor, log_rewards: torch.Tensor,
                    generator: torch.Generator, propose: Proposal | None = None) -> MetropolisStep:
    """One step of n chains: propose `env.mutate(objects)` (or `propose`'s moves), move with
    probability min(1, R(x') q(x | x') / (R(x) q(x' | x))): each chain leaves R invariant. For a
    symmetric proposal (sequence point mutations, hypergrid moves) the q ratio is 1. A proposal
    the environment did not make (the row came back unchanged) is a rejection that costs no
    reward call."""
    if propose is None:
        proposals = env.mutate(objects, generator)
        log_q_ratio = None
    else:
        proposals, log_q_ratio = propose(objects, generator)
    changed = (proposals != objects).flatten(1).any(dim=1)
    proposals = proposals[changed]
    proposal_log_rewards = env.log_reward(proposals)
    log_ratio = (log_q_ratio[changed].double() if log_q_ratio is not None
                 else torch.zeros(len(proposals), dtype=torch.float64, device=proposals.device))
    _, accept = metropolis_hastings(objects[changed], log_rewards[changed], proposals, proposal_log_rewards,
                                    log_ratio, generator)
    moved = changed.nonzero().squeeze(1)[accept]
    objects, log_rewards = objects.clone(), log_rewards.clone()
    objects[moved] = proposals[accept]
    log_rewards[moved] = proposal_log_rewards[accept].to(log_rewards.dtype)
    return MetropolisStep(objects, log_rewards, proposals, proposal_log_rewards)


def metropolis_hastings(current: torch.Tensor, current_log_rewards: torch.Tensor, proposals: torch.Tensor,
                        proposal_log_rewards: torch.Tensor, log_ratio: torch.Tensor,
                        generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Row by row, keep the proposal with probability min(1, exp(log R' - log R + log_ratio)).
    Returns the chains' new objects and a (n,) bool tensor of which moved."""
    log_accept = proposal_log_rewards.double() - current_log_rewards.double() + log_ratio
    uniform = torch.rand(len(current), generator=generator, dtype=torch.float64,
                         device=draw_device(generator, current))
    accepted = uniform.to(current.device).log() < log_accept
    shape = (-1,) + (1,) * (current.dim() - 1)
    return torch.where(accepted.view(shape), proposals, current), accepted
