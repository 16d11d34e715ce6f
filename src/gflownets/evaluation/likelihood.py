"""log p(x), the probability that the forward policy finishes in x: exact on an enumerable
state graph, or estimated by importance sampling over backward trajectories,

    p(x) = E_{tau ~ P_B(.|x)} [ P_F(tau) / P_B(tau | x) ],
    log p(x) ~= logmeanexp_{k=1..K} [ log P_F(tau_k) - log P_B(tau_k | x) ],

unbiased for p(x) (so the log estimate is biased low, by less as K grows), and exact for any K
when each object has a single trajectory (append-only sequences) or P_B is the true posterior.
The Spearman correlation between log p(x) and log R(x) on held-out objects is the trajectory
balance paper's measure of how well a sampler matches the reward."""

from __future__ import annotations

import math

import torch

from gflownets.envs.base import DiscreteEnv
from gflownets.measures.diversity import spearman
from gflownets.objectives.terms import trajectory_terms
from gflownets.policies.base import Policy
from gflownets.sampling.trajectories import sample_backward


@torch.no_grad()
def backward_log_weights(env: DiscreteEnv, policy: Policy, objects: torch.Tensor, n_trajectories: int = 10,
                         generator: torch.Generator | None = None, chunk: int = 2048) -> torch.Tensor:
    """(N, n_trajectories) float64 importance log-weights log P_F(tau) - log P_B(tau | x) of
    backward trajectories tau ~ P_B(.|x) per object, the terms of both `estimate_log_prob` and
    the EUBO; `chunk` bounds the trajectories evaluated at once."""
    per_chunk = max(1, chunk // n_trajectories)
    parts = []
    for i in range(0, len(objects), per_chunk):
        batch = objects[i:i + per_chunk].repeat_interleave(n_trajectories, dim=0)
        trajectories = sample_backward(env, policy, batch, generator,
                                       log_rewards=torch.zeros(len(batch), dtype=torch.float64, device=batch.device))
        terms = trajectory_terms(policy, trajectories)
        parts.append((terms.log_pf.sum(dim=1) - terms.log_pb.sum(dim=1)).double().view(-1, n_trajectories))
    return torch.cat(parts) if parts else torch.zeros(0, n_trajectories, dtype=torch.float64, device=objects.device)


def estimate_log_prob(env: DiscreteEnv, policy: Policy, objects: torch.Tensor, n_trajectories: int = 10,
                      generator: torch.Generator | None = None, chunk: int = 2048) -> torch.Tensor:
    """(N,) float64 importance-sampling estimate of log p(x) from `n_trajectories` backward
    trajectories per object; `chunk` bounds the trajectories evaluated at once."""
    log_w = backward_log_weights(env, policy, objects, n_trajectories, generator, chunk)
    return torch.logsumexp(log_w, dim=1) - math.log(n_trajectories)


def exact_log_prob(graph, policy: Policy, objects: torch.Tensor) -> torch.Tensor:
    """(N,) float64 exact log p(x) by dynamic programming over an enumerated `StateGraph`."""
    positions = graph.terminal_positions(objects)
    if (positions < 0).any():
        raise ValueError("an object is not a terminal state of the environment")
    return graph.terminal_distribution(policy)[positions].log()


def held_out_metrics(env: DiscreteEnv, policy: Policy) -> dict[str, float]:
    """`test_spearman`: Spearman(log p, log R) on the environment's held-out objects
    (`env.held_out_objects`), with a fixed generator for the backward trajectories so that
    evaluations of one policy agree; {} for an environment without any."""
    held_out = env.held_out_objects()
    if held_out is None:
        return {}
    objects, n_trajectories = held_out
    generator = torch.Generator(device=objects.device).manual_seed(0)
    return {"test_spearman": log_prob_reward_correlation(env, policy, objects, n_trajectories, generator)["spearman"]}


def log_prob_reward_correlation(env: DiscreteEnv, policy: Policy, objects: torch.Tensor,
                                n_trajectories: int = 10,
                                generator: torch.Generator | None = None) -> dict[str, float]:
    """Spearman and Pearson correlations between (estimated) log p(x) and log R(x)."""
    log_p = estimate_log_prob(env, policy, objects, n_trajectories, generator)
    log_r = env.log_reward(objects)
    pearson = float(torch.corrcoef(torch.stack([log_p, log_r.double()]))[0, 1])
    return {"spearman": spearman(log_p, log_r), "pearson": pearson, "n_test": len(objects),
            "n_trajectories": n_trajectories}
