"""Objectives: each one a self-describing `Objective` (its loss, whether it trains state flows
or takes a target network, how it estimates log Z), registered by name with `@register`."""

from __future__ import annotations

import importlib
import pkgutil
from types import SimpleNamespace

from gflownets.objectives.balance import (DetailedBalance, SubTrajectoryBalance, TrajectoryBalance,
                                          detailed_balance, subtrajectory_balance, trajectory_balance)
from gflownets.objectives.base import OBJECTIVES, Objective, register
from gflownets.objectives.flow_matching import FlowMatching, flow_matching
from gflownets.objectives.forward_looking import (ForwardLookingDetailedBalance, forward_looking_detailed_balance,
                                                  forward_looking_log_flow)
from gflownets.objectives.modified_db import ModifiedDetailedBalance, modified_detailed_balance
from gflownets.objectives.terms import TrajectoryTerms, step_terms, trajectory_terms
from gflownets.objectives.vargrad import LogPartitionVariance, log_partition_variance
from gflownets.policies.base import Policy

# every module of this package is imported: a new objective is one file with one @register line
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def get_objective(name: str, subtb_lambda: float = 0.9, target: Policy | None = None,
                  options: object = None) -> Objective:
    """The objective `name`, callable as (policy, batch) -> loss. `options` (a RunConfig) gives
    every option at once; `subtb_lambda` is the shorthand for tests and notebooks."""
    if name not in OBJECTIVES:
        raise KeyError(f"unknown objective {name!r}; choose from {sorted(OBJECTIVES)}")
    if options is None:
        options = SimpleNamespace(subtb_lambda=subtb_lambda)
    return OBJECTIVES[name](options, target=target)


def estimated_log_z(policy: Policy, objective: str) -> float:
    """The sampler's own estimate of log Z under the objective `objective` (`Objective.log_z`)."""
    return get_objective(objective).log_z(policy)


__all__ = ["OBJECTIVES", "DetailedBalance", "FlowMatching", "ForwardLookingDetailedBalance",
           "LogPartitionVariance", "ModifiedDetailedBalance", "Objective", "SubTrajectoryBalance",
           "TrajectoryBalance", "TrajectoryTerms", "detailed_balance", "estimated_log_z", "flow_matching",
           "forward_looking_detailed_balance", "forward_looking_log_flow", "get_objective",
           "log_partition_variance", "modified_detailed_balance", "register", "step_terms",
           "subtrajectory_balance", "trajectory_balance", "trajectory_terms"]
