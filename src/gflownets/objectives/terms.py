"""The per-step log-terms that every balance objective is built from, computed with one
batched policy pass over all states of a trajectory batch."""

from __future__ import annotations

import dataclasses

import torch

from gflownets.policies.base import Policy
from gflownets.policies.distributions import masked_log_softmax
from gflownets.sampling.trajectories import PAD, Trajectories


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


def trajectory_terms(policy: Policy, batch: Trajectories) -> TrajectoryTerms:
    env = policy.env
    valid = batch.valid
    n, width = valid.shape
    flat_states = batch.states[valid]
    out = policy(flat_states)
    dtype = out.forward_logits.dtype

    flat_actions = batch.actions[valid]
    log_pf_all = masked_log_softmax(out.forward_logits, env.forward_mask(flat_states))
    log_pf = torch.zeros(n, width, dtype=dtype)
    log_pf[valid] = log_pf_all.gather(1, flat_actions[:, None]).squeeze(1)

    # The action that produced s_t is a_{t-1}; s_0 has none.
    previous = torch.cat([batch.actions.new_full((n, 1), PAD), batch.actions[:, :-1]], dim=1)[valid]
    log_pb_all = masked_log_softmax(out.backward_logits, env.backward_mask(flat_states))
    produced = previous >= 0
    log_pb_state = torch.where(produced, log_pb_all.gather(1, previous.clamp(min=0)[:, None]).squeeze(1),
                               torch.zeros((), dtype=dtype))
    log_pb = torch.zeros(n, width, dtype=dtype)
    log_pb[:, :-1] = _scatter_valid(log_pb_state, valid, dtype)[:, 1:]

    log_rewards = batch.log_rewards.to(dtype)
    flows = _scatter_valid(out.log_flow, valid, dtype)
    flows = torch.cat([flows, torch.zeros(n, 1, dtype=dtype)], dim=1)
    is_start = torch.zeros(width + 1, dtype=torch.bool)
    is_start[0] = True
    log_points = torch.where(is_start, policy.log_z.to(dtype), flows)
    log_points = log_points.scatter(1, batch.lengths[:, None], log_rewards[:, None])
    return TrajectoryTerms(log_pf, log_pb, log_points, valid, batch.lengths, log_rewards)


def _scatter_valid(values: torch.Tensor, valid: torch.Tensor, dtype) -> torch.Tensor:
    out = torch.zeros(valid.shape, dtype=dtype)
    out[valid] = values
    return out
