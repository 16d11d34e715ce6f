"""Objectives: flow matching, detailed, trajectory and sub-trajectory balance, by name."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from gflownets.objectives.balance import (detailed_balance, subtrajectory_balance,
                                          trajectory_balance)
from gflownets.objectives.flow_matching import flow_matching, flow_matching_log_z
from gflownets.objectives.terms import TrajectoryTerms, trajectory_terms
from gflownets.policies.base import Policy
from gflownets.sampling.trajectories import Trajectories

Objective = Callable[[Policy, Trajectories], torch.Tensor]

OBJECTIVES: dict[str, Objective] = {
    "fm": flow_matching,
    "db": detailed_balance,
    "tb": trajectory_balance,
    "subtb": subtrajectory_balance,
}
#: objectives that train the state-flow head
USES_STATE_FLOW = {"db", "subtb"}


def get_objective(name: str, subtb_lambda: float = 0.9) -> Objective:
    if name not in OBJECTIVES:
        raise KeyError(f"unknown objective {name!r}; choose from {sorted(OBJECTIVES)}")
    if name == "subtb":
        return functools.partial(subtrajectory_balance, lam=subtb_lambda)
    return OBJECTIVES[name]


def estimated_log_z(policy: Policy, objective: str) -> float:
    """The sampler's own estimate of log Z: the learned scalar, or s0's outflow under FM."""
    if objective == "fm":
        return float(flow_matching_log_z(policy))
    return float(policy.log_z.detach())


__all__ = ["OBJECTIVES", "USES_STATE_FLOW", "Objective", "TrajectoryTerms", "detailed_balance",
           "estimated_log_z", "flow_matching", "get_objective", "subtrajectory_balance",
           "trajectory_balance", "trajectory_terms"]
