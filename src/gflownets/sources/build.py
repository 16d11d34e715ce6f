"""The composition of batch sources a run configuration asks for."""

from __future__ import annotations

from typing import Any

import torch

from gflownets.envs.base import DiscreteEnv
from gflownets.policies.base import Policy
from gflownets.sources.base import BatchSource, Observer, OnPolicy
from gflownets.sources.local_search import LocalSearch
from gflownets.sources.mutations import MutationChains
from gflownets.sources.offline import Offline
from gflownets.sources.replay import Replay, ReplayBuffer


def build_source(config: Any, env: DiscreteEnv, policy: Policy, observe: Observer | None = None,
                 offline_objects: torch.Tensor | None = None) -> tuple[BatchSource, Any]:
    """(source, closed-form gradient step or None). Offline data, or on-policy rollouts (compiled
    with `config.compile`) refined by local search and mutation chains, then extended by replay."""
    if offline_objects is not None:
        return Offline(env, policy, offline_objects, config.batch_size), None
    gradient_step = None
    if config.compile:
        from gflownets.fast import compiled_pieces  # torch.compile's machinery, only when asked for

        on_policy_only = not (config.local_search or config.mutations or config.replay_size)
        source, gradient_step = compiled_pieces(env, policy, config.batch_size, config.exploration,
                                                config.temperature, config.objective, on_policy_only, observe,
                                                target_network=config.target_decay > 0)
    else:
        source = OnPolicy(env, policy, config.batch_size, config.exploration, config.temperature, observe)
    if config.local_search:
        source = LocalSearch(source, env, policy, config.local_search, config.exploration, config.temperature,
                             observe)
    if config.mutations:
        source = MutationChains(source, env, policy, config.mutations, observe,
                                config.mutation_steps, config.mutation_guide)
    if config.replay_size:
        buffer = ReplayBuffer(config.replay_size, env.state_shape, config.replay_keep, device=env.device)
        source = Replay(source, env, policy, buffer, config.replay_batch)
    return source, gradient_step
