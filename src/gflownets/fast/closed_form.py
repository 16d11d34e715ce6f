"""Trajectory balance and its gradients in closed form, from what a compiled rollout kept.

The compiled rollout (`fast.rollout`) has already run the MLP on every state of its batch and,
in the same graph, differentiated each step's log P_F and log P_B with respect to the logits.
TB's derivative is d loss / d residual_b = 2 residual_b / n: it goes to log Z as it is and to
the network through the kept derivatives and the MLP's own backward pass (`fast.mlp`). The
result is autograd's gradient of the eager loss up to float rounding (the rows are summed in
another order); what is saved is the loss's second forward pass and autograd's bookkeeping.
"""

from __future__ import annotations

import dataclasses

import torch

from gflownets.fast import mlp
from gflownets.policies.mlp import MLPPolicy
from gflownets.sampling.trajectories import Trajectories


@dataclasses.dataclass
class KeptRollout:
    """What a rollout of n trajectories, padded to T steps, kept for closed-form TB, as T * n rows
    in step-major order (row t * n + b: step t of trajectory b):

    - `kept`: the MLP's activations (`fast.mlp.forward_keeping`);
    - `d_log_pf`, `d_log_pb`: the derivatives of log P_F(a_t | s_t) and log P_B(a_{t-1} | s_t)
      with respect to the forward and the backward logits of the same row (0 past the end);
    - `valid`: which rows are steps; `log_ratio_sums`: (n,) each trajectory's sum of
      log P_F - log P_B;
    - `exits` (a rollout asked for them): every row's log P_F(a_t | s_t), log P_B(a_{t-1} | s_t)
      and log P_F(exit | s_t), and the derivative of the last with respect to the forward logits.
    """

    kept: tuple[torch.Tensor, ...]
    d_log_pf: torch.Tensor
    d_log_pb: torch.Tensor
    valid: torch.Tensor
    log_ratio_sums: torch.Tensor
    exits: tuple[torch.Tensor, ...] | None = None


@torch.no_grad()
def trajectory_balance_gradients(policy: MLPPolicy, batch: Trajectories,
                                 kept: KeptRollout) -> tuple[torch.Tensor, dict[torch.nn.Parameter, torch.Tensor]]:
    """(TB loss, {parameter: gradient}) on a batch whose rollout, made with the policy's current
    weights, kept `kept`."""
    log_ratio = kept.log_ratio_sums
    residual = policy.log_z.detach() + log_ratio - batch.log_rewards.to(log_ratio.dtype)
    d_residual = residual * (2.0 / len(residual))
    rows = kept.valid.nonzero().squeeze(1)
    per_step = d_residual.index_select(0, rows.remainder(len(d_residual)))[:, None]
    d_forward = per_step * kept.d_log_pf.index_select(0, rows)
    d_backward = -per_step * kept.d_log_pb.index_select(0, rows)
    gradients = mlp.parameter_gradients(policy, kept.kept, rows, d_forward, d_backward)
    gradients[policy.log_z] = d_residual.sum()
    return residual.pow(2).mean(), gradients


@torch.no_grad()
def modified_detailed_balance_gradients(policy: MLPPolicy, batch: Trajectories,
                                        kept: KeptRollout) -> tuple[torch.Tensor, dict[torch.nn.Parameter, torch.Tensor]]:
    """(modified DB loss, {parameter: gradient}) without a target network, from a rollout that
    kept its exit terms. For each move s_t -> s_{t+1} (row r = t n + b and the next, r + n):

        residual = delta log R + log P_B(s_t | s_{t+1}) + log P_F(exit | s_t)
                   - log P_F(a_t | s_t) - log P_F(exit | s_{t+1}),

    the loss the mean squared residual; its derivative 2 residual / moves reaches row r's
    forward logits through d log P_F(exit | s_t) - d log P_F(a_t | s_t), row r + n's forward
    logits through -d log P_F(exit | s_{t+1}), and row r + n's backward logits through
    d log P_B. Equal to autograd's gradient of `objectives.modified_detailed_balance` up to
    float rounding."""
    env = policy.env
    log_pf, log_pb, log_exit, d_log_exit = kept.exits
    n = len(kept.log_ratio_sums)
    actions = batch.actions.t().reshape(-1)  # step-major, as the kept rows
    here = (kept.valid & (actions != env.exit_action)).nonzero().squeeze(1)
    there = here + n  # a move's next state is the same trajectory's next row: it exits later
    states = batch.states.transpose(0, 1).reshape(len(actions), *env.state_shape)
    delta = env.log_reward_change(states[here], actions[here], states[there]).to(log_pf.dtype)
    residual = delta + log_pb[there] + log_exit[here] - log_pf[here] - log_exit[there]
    d_residual = (residual * (2.0 / max(len(here), 1)))[:, None]
    d_forward = torch.zeros_like(kept.d_log_pf)
    d_forward.index_add_(0, here, d_residual * (d_log_exit[here] - kept.d_log_pf[here]))
    d_forward.index_add_(0, there, -d_residual * d_log_exit[there])
    d_backward = torch.zeros_like(kept.d_log_pb)
    d_backward.index_add_(0, there, d_residual * kept.d_log_pb[there])
    rows = kept.valid.nonzero().squeeze(1)
    gradients = mlp.parameter_gradients(policy, kept.kept, rows, d_forward[rows], d_backward[rows])
    loss = residual.pow(2).mean() if len(here) else residual.sum()
    return loss, gradients
