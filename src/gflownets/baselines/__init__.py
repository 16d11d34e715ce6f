"""Baselines: samplers that are not GFlowNets (random search, MCMC, RL, MCTS), behind one interface that counts reward calls."""

from __future__ import annotations

from typing import Any

from gflownets.baselines.mcts import MCTSSampler
from gflownets.baselines.ppo import PPOSampler
from gflownets.baselines.samplers import Baseline, MetropolisSampler, PolicyBaseline, RandomSampler, has_mutation
from gflownets.baselines.soft_q import SoftQSampler
from gflownets.envs.base import DiscreteEnv
from gflownets.errors import ConfigError

#: every baseline by its method name (`gflownets compare --methods`, `gflownets active --proposers`)
BASELINES: dict[str, type[Baseline]] = {cls.name: cls for cls in (RandomSampler, MetropolisSampler, PPOSampler,
                                                                      SoftQSampler, MCTSSampler)}


def make_baseline(name: str, env: DiscreteEnv, **options: Any) -> Baseline:
    """The baseline called `name` on `env`, built with the keyword `options` it takes."""
    if name not in BASELINES:
        raise ConfigError(f"unknown baseline {name!r}; choose from {', '.join(sorted(BASELINES))}")
    return BASELINES[name](env, **options)


__all__ = ["BASELINES", "Baseline", "MCTSSampler", "MetropolisSampler", "PPOSampler", "PolicyBaseline",
           "RandomSampler", "SoftQSampler", "has_mutation", "make_baseline"]
