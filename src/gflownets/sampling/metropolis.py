"""Metropolis chains over finished objects, with the environment's `mutate` as the proposal:
the move the trainer's mutation search and the benchmarks' MCMC baseline share."""

from __future__ import annotations

from typing import NamedTuple

import torch

from gflownets.envs.base import DiscreteEnv, draw_device


class MetropolisStep(NamedTuple):
    objects: torch.Tensor  # (n, ...) each chain's object after the step
    log_rewards: torch.Tensor  # (n,) their log-rewards
    proposals: torch.Tensor  # (m, ...) the proposals that changed something (each cost a reward call)
    proposal_log_rewards: torch.Tensor  # (m,)


def metropolis_step(env: DiscreteEnv, objects: torch.Tensor, log_rewards: torch.Tensor,
                    generator: torch.Generator) -> MetropolisStep:
    """One step of n chains: propose `env.mutate(objects)`, move with probability
    min(1, R(x') / R(x)). For a symmetric proposal (sequence point mutations, hypergrid moves)
    each chain leaves R invariant. A proposal the environment did not make (the row came back
    unchanged) is a rejection that costs no reward call."""
    proposals = env.mutate(objects, generator)
    changed = (proposals != objects).flatten(1).any(dim=1)
    proposals = proposals[changed]
    proposal_log_rewards = env.log_reward(proposals)
    uniform = torch.rand(len(proposals), generator=generator, dtype=torch.float64,
                         device=draw_device(generator, proposals))
    accept = uniform.log() < (proposal_log_rewards - log_rewards[changed])
    moved = changed.nonzero().squeeze(1)[accept]
    objects, log_rewards = objects.clone(), log_rewards.clone()
    objects[moved] = proposals[accept]
    log_rewards[moved] = proposal_log_rewards[accept].to(log_rewards.dtype)
    return MetropolisStep(objects, log_rewards, proposals, proposal_log_rewards)
