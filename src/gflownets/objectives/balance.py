"""Trajectory balance (Malkin et al. 2022), detailed balance (Bengio et al. 2023, GFlowNet
Foundations) and sub-trajectory balance (Madan et al. 2023), as squared log-ratios over the
pairs (i, j) of points of `TrajectoryTerms`."""

from __future__ import annotations

import torch

from gflownets.objectives.base import Objective, register
from gflownets.objectives.terms import log_z_per_trajectory, step_terms, trajectory_terms
from gflownets.policies.base import Policy
from gflownets.sampling.trajectories import Trajectories


def trajectory_balance(policy: Policy, batch: Trajectories) -> torch.Tensor:
    """mean_tau (log Z + sum log P_F - log R(x) - sum log P_B)^2, summed straight from the
    per-step terms: TB needs no padded layout."""
    steps = step_terms(policy, batch)
    log_ratio = steps.per_trajectory(steps.log_pf - steps.log_pb_into, len(batch))
    log_z = log_z_per_trajectory(policy, batch)
    residual = log_z + log_ratio - batch.log_rewards.to(log_ratio.dtype)
    return residual.pow(2).mean()


def detailed_balance(policy: Policy, batch: Trajectories) -> torch.Tensor:
    """mean over transitions s -> s' of (log F(s) + log P_F(s'|s) - log F(s') - log P_B(s|s'))^2,
    with F(s0) = Z and, for exit, F(sink) = R(x) and P_B = 1."""
    terms = trajectory_terms(policy, batch)
    residual = (terms.log_points[:, :-1] + terms.log_pf - terms.log_pb - terms.log_points[:, 1:])
    return residual[terms.valid].pow(2).mean()


def subtrajectory_balance(policy: Policy, batch: Trajectories, lam: float = 0.9) -> torch.Tensor:
    """For each trajectory, the lambda^(j-i)-weighted mean over all sub-trajectories i < j of
    (log F(s_i) + sum_{i<=t<j} (log P_F - log P_B) - log F(s_j))^2; then the mean over trajectories.
    lambda -> 0 weighs single transitions (detailed balance), large lambda whole trajectories."""
    terms = trajectory_terms(policy, batch)
    steps = terms.log_pf - terms.log_pb
    cumulative = torch.cat([torch.zeros_like(steps[:, :1]), steps.cumsum(dim=1)], dim=1)
    anchored = terms.log_points - cumulative
    residual = anchored[:, :, None] - anchored[:, None, :]
    k = torch.arange(anchored.shape[1], device=anchored.device)
    span = (k[None, :] - k[:, None]).to(steps.dtype)
    pairs = (span > 0)[None] & (k[None, None, :] <= terms.lengths[:, None, None])
    weights = torch.where(pairs, float(lam) ** span, torch.zeros((), dtype=steps.dtype, device=anchored.device))
    per_trajectory = (weights * residual.pow(2)).sum(dim=(1, 2)) / weights.sum(dim=(1, 2))
    return per_trajectory.mean()


@register
class TrajectoryBalance(Objective):
    name = "tb"
    summary = "trajectory balance (Malkin et al. 2022)"
    conditionable = True

    def loss(self, policy: Policy, batch: Trajectories) -> torch.Tensor:
        return trajectory_balance(policy, batch)


@register
class DetailedBalance(Objective):
    name = "db"
    summary = "detailed balance with a learned state flow (Bengio et al. 2023)"
    uses_state_flow = True
    conditionable = True

    def loss(self, policy: Policy, batch: Trajectories) -> torch.Tensor:
        return detailed_balance(policy, batch)


@register
class SubTrajectoryBalance(Objective):
    name = "subtb"
    summary = "sub-trajectory balance, lambda-weighted (Madan et al. 2023; option subtb_lambda)"
    uses_state_flow = True
    conditionable = True

    def loss(self, policy: Policy, batch: Trajectories) -> torch.Tensor:
        return subtrajectory_balance(policy, batch, lam=self.option("subtb_lambda", 0.9))
