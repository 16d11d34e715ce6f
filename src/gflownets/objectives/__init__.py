"""Objectives: flow matching, detailed, trajectory, sub-trajectory and modified detailed
balance, by name."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from gflownets.objectives.balance import (detailed_balance, subtrajectory_balance,
                                          trajectory_balance, trajectory_balance_gradients)
from gflownets.objectives.flow_matching import flow_matching, flow_matching_log_z
from gflownets.objectives.modified_db import modified_db_log_z, modified_detailed_balance
from gflownets.objectives.terms import TrajectoryTerms, trajectory_terms
from gflownets.policies.base import Policy
from gflownets.sampling.trajectories import Trajectories

Objective = Callable[[Policy, Trajectories], torch.Tensor]

OBJECTIVES: dict[str, Objective] = {
    "fm": flow_matching,
    "db": detailed_balance,
    "tb": trajectory_balance,
    "subtb": subtrajectory_balance,
    "mdb": modified_detailed_balance,
}
#: a loss and its gradients without autograd, {parameter: gradient} for every trained parameter,
#: or None when the batch does not allow it (then the objective and autograd are used)
ClosedForm = Callable[[Policy, Trajectories], tuple[torch.Tensor, dict[nn.Parameter, torch.Tensor]] | None]
#: objectives with such a closed form, for batches that carry kept activations (`--compile`)
CLOSED_FORM: dict[str, ClosedForm] = {"tb": trajectory_balance_gradients}
#: objectives that train the state-flow head
USES_STATE_FLOW = {"db", "subtb"}
#: objectives that can take a target network (a Polyak-averaged copy of the policy)
USES_TARGET = {"mdb"}


def get_objective(name: str, subtb_lambda: float = 0.9, target: Policy | None = None) -> Objective:
    """The objective `name` as a function (policy, batch) -> loss; `target` is the target
    network of the objectives in USES_TARGET (ignored by the others)."""
    if name not in OBJECTIVES:
        raise KeyError(f"unknown objective {name!r}; choose from {sorted(OBJECTIVES)}")
    if name == "subtb":
        return functools.partial(subtrajectory_balance, lam=subtb_lambda)
    if name in USES_TARGET and target is not None:
        return functools.partial(OBJECTIVES[name], target=target)
    return OBJECTIVES[name]


def estimated_log_z(policy: Policy, objective: str) -> float:
    """The sampler's own estimate of log Z: the learned scalar, s0's outflow under FM, or
    log R(s0) - log P_F(exit | s0) under modified detailed balance."""
    if objective == "fm":
        return float(flow_matching_log_z(policy))
    if objective == "mdb":
        return float(modified_db_log_z(policy))
    return float(policy.log_z.detach())


__all__ = ["CLOSED_FORM", "ClosedForm", "OBJECTIVES", "USES_STATE_FLOW", "USES_TARGET", "Objective",
           "TrajectoryTerms", "detailed_balance", "estimated_log_z", "flow_matching", "get_objective",
           "modified_detailed_balance", "subtrajectory_balance",
           "trajectory_balance", "trajectory_balance_gradients", "trajectory_terms"]
