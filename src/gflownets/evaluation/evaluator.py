"""A run's evaluation, apart from its training loop: exact metrics where the environment is
enumerable, metrics from samples, and the modes the sampler has found."""

from __future__ import annotations

from typing import Any

import torch

from gflownets.envs.base import DiscreteEnv
from gflownets.evaluation.exact import StateGraph
from gflownets.evaluation.likelihood import held_out_metrics
from gflownets.evaluation.metrics import ModeTracker, distribution_metrics
from gflownets.limits import check_samples
from gflownets.policies.base import Policy
from gflownets.sampling.trajectories import sample_forward

#: objects drawn per rollout by `sample_objects`: the generator's stream depends on it, so n objects
#: drawn in any number of calls whose sizes are multiples of it are the objects of one call
SAMPLE_CHUNK = 16384


def mode_tracker(env: DiscreteEnv, graph: StateGraph | None) -> ModeTracker | None:
    """Modes from the exact graph (the objects of maximum reward), else the environment's own
    known modes (`modes_hit`), else None."""
    if graph is not None:
        return ModeTracker(graph.mode_mask, graph.terminal_positions)
    probe = env.modes_hit(env.initial_states(0))
    if probe is None:
        return None
    return ModeTracker(torch.ones(probe.shape[1], dtype=torch.bool, device=probe.device),
                       lambda objects: env.modes_hit(objects).any(dim=0).nonzero().squeeze(1))


def sample_objects(env: DiscreteEnv, policy: Policy, n: int, generator: torch.Generator | None,
                   gamma: float = 0.0, chunk: int = SAMPLE_CHUNK) -> torch.Tensor:
    """n finished objects from the policy's P_F (mixed with uniform exploration `gamma`), drawn
    `chunk` at a time."""
    parts = [sample_forward(env, policy, min(chunk, n - i), generator, gamma=gamma).terminal_states
             for i in range(0, n, chunk)]
    return torch.cat(parts) if parts else env.initial_states(0)


def evaluate(env: DiscreteEnv, policy: Policy, log_z: float, graph: StateGraph | None,
             modes: ModeTracker | None, n_samples: int = 0,
             generator: torch.Generator | None = None) -> dict[str, Any]:
    """`log_z` (the objective's estimate), the exact metrics where `graph` is given, the modes
    found so far, and with `n_samples`, the same metrics measured on that many samples (suffix
    `_samples`)."""
    check_samples(n_samples, env, env.device)
    out: dict[str, Any] = {"log_z": log_z, **held_out_metrics(env, policy)}
    if graph is not None:
        learned = graph.terminal_distribution(policy)
        out.update(distribution_metrics(learned, graph.target))
        out["log_z_true"] = float(graph.log_z)
        out.update(env.exact_metrics(graph, learned))
    if modes is not None:
        out["modes_found"] = modes.n_found
        out["n_modes"] = modes.n_modes
    if n_samples:
        objects = sample_objects(env, policy, n_samples, generator)
        log_rewards = env.log_reward(objects)
        out["mean_log_reward_samples"] = float(log_rewards.mean())
        out.update({f"{k}_samples": v for k, v in env.sample_metrics(objects, log_rewards).items()})
        if modes is not None:  # modes among these samples; the run's own count is untouched
            in_samples = ModeTracker(modes.mode_mask, modes.locate)
            in_samples.add(objects)
            out["modes_found_samples"] = in_samples.n_found
        if graph is not None:
            metrics = distribution_metrics(graph.empirical_distribution(objects), graph.target)
            metrics.pop("kl", None)
            out.update({f"{k}_samples": v for k, v in metrics.items()})
            out["n_samples"] = n_samples
    return out
