"""The per-step log-terms that every balance objective is built from, computed with one
batched policy pass over all states of a trajectory batch."""

from __future__ import annotations

import dataclasses

import torch
from torch.nn import functional as F

from gflownets.policies.base import Policy
from gflownets.policies.distributions import move_log_probs
from gflownets.sampling.trajectories import Trajectories


@dataclasses.dataclass
class TrajectoryTerms:
    """For a batch of B trajectories padded to T steps (zeros past each length):

    - `log_pf[:, t]`: log P_F(a_t | s_t), the exit step included;
    - `log_pb[:, t]`: log P_B(a_t | s_{t+1}) for moves, 0 for the exit step;
    - `log_points[:, k]`, k = 0..T: log Z at k = 0, log F(s_k) for 1 <= k <= n, and log R(x)
      at k = n + 1. Exit is the transition s_n -> sink, so detailed balance, trajectory balance
      and sub-trajectory balance are all the one identity
      log_points[i] + sum_{i <= t < j} (log_pf - log_pb)[t] = log_points[j] on different pairs (i, j).
    """

    log_pf: torch.Tensor
    log_pb: torch.Tensor
    log_points: torch.Tensor
    valid: torch.Tensor
    lengths: torch.Tensor
    log_rewards: torch.Tensor


@dataclasses.dataclass
class StepTerms:
    """The same terms for the existing steps only, one entry per visited state s_t in flattened
    (trajectory-major) order: what trajectory balance needs, without the padded layout."""

    #: (N,) position of each step in the flattened (B * T) batch, and (N,) its trajectory
    flat: torch.Tensor
    trajectory: torch.Tensor
    #: (N,) log P_F(a_t | s_t)
    log_pf: torch.Tensor
    #: (N,) log P_B(a_{t-1} | s_t): the backward probability of the move *into* s_t (0 at s_0)
    log_pb_into: torch.Tensor
    #: (N,) log F(s_t)
    log_flow: torch.Tensor

    def per_trajectory(self, values: torch.Tensor, n: int) -> torch.Tensor:
        """(n,) sums of per-step `values` over each trajectory."""
        return values.new_zeros(n).index_add(0, self.trajectory, values)


def step_terms(policy: Policy, batch: Trajectories) -> StepTerms:
    env = policy.env
    width = batch.actions.shape[1]
    # positions of the existing steps in the flattened (n * width) batch: one index for every gather
    flat = batch.valid.view(-1).nonzero().squeeze(1)
    trajectory = flat.div(width, rounding_mode="floor")
    flat_states = batch.states.flatten(0, 1).index_select(0, flat)
    flat_actions = batch.actions.view(-1).index_select(0, flat)
    out = policy(flat_states)
    # the move into s_t is the action before it in the same row; at s_0 (t = 0) there is none:
    # the entry read there (clamped to a valid index) is zeroed
    previous = batch.actions.view(-1).index_select(0, (flat - 1).clamp(min=0)).clamp(0, env.n_actions - 2)
    log_pf, log_pb = move_log_probs(env, out.forward_logits, out.backward_logits, flat_states, flat_actions,
                                    previous, flat % width == 0)
    return StepTerms(flat, trajectory, log_pf, log_pb, out.log_flow)


def log_z_per_trajectory(policy: Policy, batch: Trajectories) -> torch.Tensor:
    """(B,) log Z of each trajectory: the learned scalar, or, on a conditional environment
    (each context its own s0), the policy's log Z(c) of the trajectory's context."""
    if policy.env.conditional:
        return policy.context_log_z(batch.states[:, 0])
    return policy.log_z.expand(len(batch))


def trajectory_terms(policy: Policy, batch: Trajectories) -> TrajectoryTerms:
    valid = batch.valid
    n, width = valid.shape
    steps = step_terms(policy, batch)
    log_pf = _unflatten(steps.log_pf, steps.flat, n, width)
    # log P_B of the move into s_{t+1} belongs to step t: shift left by one; the exit step gets 0
    log_pb = F.pad(_unflatten(steps.log_pb_into, steps.flat, n, width)[:, 1:], (0, 1))
    dtype = log_pf.dtype
    log_rewards = batch.log_rewards.to(dtype)
    flows = _unflatten(steps.log_flow, steps.flat, n, width)
    log_z = log_z_per_trajectory(policy, batch).to(dtype)[:, None]
    log_points = torch.cat([log_z, flows[:, 1:], flows.new_zeros(n, 1)], dim=1)
    log_points = log_points.scatter(1, batch.lengths[:, None], log_rewards[:, None])
    return TrajectoryTerms(log_pf, log_pb, log_points, valid, batch.lengths, log_rewards)


def _unflatten(values: torch.Tensor, flat: torch.Tensor, n: int, width: int) -> torch.Tensor:
    """(n, width) with `values` at the flat positions and zeros elsewhere (differentiable)."""
    return values.new_zeros(n * width).index_copy(0, flat, values).view(n, width)
